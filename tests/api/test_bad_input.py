"""Bad input never hurts: each kind gets a GraphQL-shaped error with a stable `extensions.code`,
changes nothing, and the server answers the next request (issue 2, item 7).

Every case runs against a seeded workspace. After each one the whole database (every row of
every table, except a token's last-used time) must equal what it was before the first case, and
a normal board query must still answer; after the whole barrage /healthz is ok and twenty
concurrent board queries all answer. Failures are collected so one run shows every case that
misbehaves, not only the first. The WebSocket test covers connection_init with a bad token
(closed with 4403) and bad subscriptions on a connection that keeps working.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from taskmachine.models import Base
from tests.conftest import RunningServer

# Columns that any authenticated request updates by design, even one that is refused.
VOLATILE = frozenset({("api_tokens", "last_used_at")})
# A request that takes longer than this has hung: a bug of its own.
TIMEOUT = 10.0
WS_PROTOCOL = Subprotocol("graphql-transport-ws")

BOARD = """query($ws: ID!) { tasks(workspaceId: $ws, filter: {status: [TODO]}, first: 50) {
  edges { node { id number title status priority assignee { ... on User { name } ... on Agent { name } }
  commentCount tags } } pageInfo { endCursor hasNextPage } } }"""
WIDE_TASK = (
    "id number title description status priority summary createdAt updatedAt tags commentCount"
)


@dataclass(frozen=True)
class World:
    """A seeded workspace; tokens are personal API tokens."""

    owner: str
    viewer: str
    outsider: str
    workspace: str
    agent: str
    team: str
    project: str
    goal: str
    task: str
    comment: str
    chat: str

    def ids(self) -> dict[str, Any]:
        # Passed with every case; GraphQL ignores values for variables a document does not declare.
        return {
            "ws": self.workspace,
            "agent": self.agent,
            "team": self.team,
            "project": self.project,
            "goal": self.goal,
            "task": self.task,
            "comment": self.comment,
            "chat": self.chat,
        }


@pytest.fixture
async def world(server: RunningServer) -> World:
    owner = await server.token_for("owner@example.com")

    async def run(query: str, **variables: Any) -> Any:
        data = await server.ok(query, variables, owner)
        return next(iter(data.values()))

    ws = (await run('mutation { createWorkspace(input: {name: "Acme"}) { id } }'))["id"]
    agent = await run(
        'mutation($ws: ID!) { createAgent(workspaceId: $ws, profile: {name: "Builder"}) { id } }',
        ws=ws,
    )
    team = await run(
        """mutation($ws: ID!, $a: ID!) { createTeam(workspaceId: $ws,
           team: {name: "Core", memberAgentIds: [$a]}) { id } }""",
        ws=ws,
        a=agent["id"],
    )
    project = await run(
        'mutation($ws: ID!) { createProject(workspaceId: $ws, name: "Site") { id } }', ws=ws
    )
    goal = await run(
        """mutation($ws: ID!, $p: ID!) { createGoal(input: {workspaceId: $ws, title: "Launch",
           projectId: $p}) { id } }""",
        ws=ws,
        p=project["id"],
    )
    task = await run(
        """mutation($ws: ID!, $a: ID!) { createTask(input: {workspaceId: $ws, title: "First",
           tags: ["seed"], assigneeAgentId: $a}) { id } }""",
        ws=ws,
        a=agent["id"],
    )
    comment = await run(
        'mutation($t: ID!) { postComment(input: {taskId: $t, body: "Hello"}) { id } }',
        t=task["id"],
    )
    chat = await run(
        "mutation($ws: ID!, $a: ID!) { createChat(workspaceId: $ws, agentId: $a) { id } }",
        ws=ws,
        a=agent["id"],
    )
    await run(
        """mutation($ws: ID!) { addMember(input: {workspaceId: $ws, email: "viewer@example.com",
           role: VIEWER}) { id } }""",
        ws=ws,
    )
    return World(
        owner=owner,
        viewer=await server.token_for("viewer@example.com"),
        outsider=await server.token_for("outsider@example.com"),
        workspace=ws,
        agent=agent["id"],
        team=team["id"],
        project=project["id"],
        goal=goal["id"],
        task=task["id"],
        comment=comment["id"],
        chat=chat["id"],
    )


# --- the database, before and after ---------------------------------------------------------

Snapshot = dict[str, list[tuple[str, ...]]]


async def snapshot(server: RunningServer) -> Snapshot:
    """Every row of every table, as sortable text."""
    tables: Snapshot = {}
    async with server.state.session_factory() as session:
        connection = await session.connection()
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
            rows = (await connection.execute(sa.select(*columns))).all()
            tables[table.name] = sorted(tuple(repr(v) for v in row) for row in rows)
    return tables


def describe_change(before: Snapshot, after: Snapshot) -> str:
    changed = [
        f"{name}: {len(before[name])} rows -> {len(after[name])} rows"
        + ("" if len(before[name]) != len(after[name]) else " (contents differ)")
        for name in before
        if before[name] != after[name]
    ]
    return "; ".join(changed)


# --- cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A GraphQL request that must fail with `code` (and name `field` when given)."""

    label: str
    query: str
    variables: dict[str, Any] | None = None
    code: str = "BAD_USER_INPUT"
    field: str | None = None
    who: str = "owner"  # owner | viewer | outsider | anonymous | forged
    says: str | None = None  # a word the message must contain (which limit refused it)


@dataclass(frozen=True)
class Accepted:
    """A request at a limit's edge that must still succeed (and change nothing)."""

    label: str
    query: str
    variables: dict[str, Any] | None = None


@dataclass(frozen=True)
class Raw:
    """A request judged before GraphQL runs: the HTTP status and a GraphQL-shaped error body
    with `code` (an empty code: accepted, with data)."""

    label: str
    status: int
    code: str
    content: bytes | Callable[[], AsyncIterator[bytes]] = b""
    content_type: str | None = "application/json"
    method: str = "POST"
    params: dict[str, str] | None = None


Item = Case | Accepted | Raw


def _new_id() -> str:
    return str(uuid.uuid4())


def _create_project(w: World, pad: int) -> bytes:
    """A createProject mutation that would succeed, padded by an unused variable to `pad` bytes."""
    payload: dict[str, Any] = {
        "query": 'mutation($ws: ID!) { createProject(workspaceId: $ws, name: "Sneaked in") { id } }',
        "variables": {"ws": w.workspace, "pad": ""},
    }
    payload["variables"]["pad"] = "x" * (pad - len(json.dumps(payload)))
    body = json.dumps(payload).encode()
    assert len(body) == pad
    return body


def transport_cases(w: World, max_body: int) -> list[Item]:
    mutation = json.dumps(
        {
            "query": 'mutation($ws: ID!) { createProject(workspaceId: $ws, name: "X") { id } }',
            "variables": {"ws": w.workspace},
        }
    ).encode()
    oversized = _create_project(w, max_body + 1)

    def chunked() -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(oversized), 65_536):
                yield oversized[start : start + 65_536]

        return chunks()

    exact: dict[str, Any] = {"query": "{ __typename }", "variables": {"pad": ""}}
    exact["variables"]["pad"] = "x" * (max_body - len(json.dumps(exact)))
    bad = "BAD_REQUEST"
    # fmt: off
    return [
        Raw("malformed JSON", 400, bad, mutation[:-3]),
        Raw("bytes that are not UTF-8", 400, bad, b'{"query": "\xff\xfe"}'),
        Raw("JSON null", 400, bad, b"null"),
        Raw("a JSON number", 400, bad, b"42"),
        Raw("a JSON string", 400, bad, json.dumps(mutation.decode()).encode()),
        Raw("an empty body", 400, bad, b""),
        # A cross-site form can send these without a preflight: they must never run a mutation.
        Raw("text/plain body", 400, bad, mutation, "text/plain"),
        Raw("form body", 400, bad, b"query=mutation+%7B+updateProfile%28name%3A+%22x%22%29+%7B+id+%7D+%7D", "application/x-www-form-urlencoded"),
        Raw("no content type", 400, bad, mutation, None),
        Raw("missing query", 400, bad, b'{"variables": {}}'),
        Raw("query is not a string", 400, bad, b'{"query": 5}'),
        Raw("variables not an object", 400, bad, json.dumps({"query": "{ __typename }", "variables": [1]}).encode()),
        Raw("a batch", 400, bad, b"[" + mutation + b"]"),
        Raw("mutation over GET", 400, bad, method="GET", params={"query": 'mutation { updateProfile(name: "Changed") { id } }'}),
        Raw("GET with variables that are not JSON", 400, bad, method="GET", params={"query": "{ __typename }", "variables": "{nope"}),
        Raw("body over the limit (Content-Length)", 413, "PAYLOAD_TOO_LARGE", oversized),
        Raw("body over the limit (chunked)", 413, "PAYLOAD_TOO_LARGE", chunked),
        Raw("a body of exactly the limit", 200, "", json.dumps(exact).encode()),
    ]
    # fmt: on


def document_cases(w: World, depth: int, aliases: int, tokens: int) -> list[Item]:
    def nested(levels: int) -> str:
        inner = "id"
        for _ in range(levels):
            inner = f"parent {{ {inner} }}"
        return inner

    # Depth counts from the root field: tasks(0) edges(1) node(2) parent(3)...
    deep_board = '{ tasks(workspaceId: "%s") { edges { node { %s } } } }'
    project = 'p%d: createProject(workspaceId: $ws, name: "Alias %d") { id }'
    costly = " ".join(
        f"a{i}: tasks(workspaceId: $ws, first: 200) {{ edges {{ node {{ {WIDE_TASK} }} }} }}"
        for i in range(20)
    )
    costly_by_variable = " ".join(
        f"a{i}: tasks(workspaceId: $ws, first: $n) {{ edges {{ node {{ {WIDE_TASK} }} }} }}"
        for i in range(20)
    )
    deep_mutation = (
        'mutation($ws: ID!) { createTask(input: {workspaceId: $ws, title: "Deep"}) { %s } }'
    )
    many_projects = " ".join(project % (i, i) for i in range(aliases + 1))
    long_selection = " ".join(["id"] * tokens)
    query, query_n, mutation, plain = (
        "query($ws: ID!) { %s }",
        "query($ws: ID!, $n: Int) { %s }",
        "mutation($ws: ID!) { %s }",
        "{ %s }",
    )
    long_project = 'mutation($ws: ID!) { createProject(workspaceId: $ws, name: "Long") { %s } }'
    gvf = "GRAPHQL_VALIDATION_FAILED"
    # fmt: off
    return [
        Case("syntax error", 'mutation { createProject(workspaceId: "x", name: ', code=gvf, says="Syntax Error"),
        Case("unknown field", "{ nope }", code=gvf),
        Case("unused variable", "query($x: ID) { me { id } }", {"x": "1"}, code=gvf),
        Case("undefined variable", "query { task(id: $x) { id } }", code=gvf),
        Case("variable in the wrong position", "query($x: Int) { task(id: $x) { id } }", code=gvf),
        # Each limit refuses the document before anything runs: the mutations create nothing.
        Case("query too deep", deep_board % (w.workspace, nested(depth - 2)), code=gvf, says="depth"),
        Case("mutation too deep", deep_mutation % nested(depth), code=gvf, says="depth"),
        Case("too many aliases", mutation % many_projects, code=gvf, says="aliases"),
        Case("too many tokens", long_project % long_selection, code=gvf, says="tokens"),
        Case("too costly", query % costly, code=gvf, says="costs"),
        Case("too costly when first is a variable", query_n % costly_by_variable, {"n": 1}, code=gvf, says="costs"),
        # ...and legitimate documents at the edge of each limit still run.
        Accepted("depth at the limit", deep_board % (w.workspace, nested(depth - 3))),
        Accepted("aliases at the limit", plain % " ".join(f"a{i}: __typename" for i in range(aliases))),
        Accepted("a board page", BOARD),
    ]
    # fmt: on


def argument_cases(w: World) -> list[Item]:
    gvf = "GRAPHQL_VALIDATION_FAILED"
    tasks = "query($ws: ID!) { tasks(workspaceId: $ws, %s) { edges { node { id } } } }"
    tasks_var = "query($ws: ID!, $v: %s) { tasks(workspaceId: $ws, %s) { edges { node { id } } } }"
    create_task = (
        'mutation($ws: ID!) { createTask(input: {workspaceId: $ws, title: "T", %s}) { id } }'
    )
    create_agent = (
        'mutation($ws: ID!) { createAgent(workspaceId: $ws, profile: {name: "Bot", %s}) { id } }'
    )
    update_agent = "mutation($agent: ID!) { updateAgent(id: $agent, profile: {%s}) { id } }"
    react = 'mutation($comment: ID!) { react(commentId: $comment, emoji: "%s") { id } }'
    react_var = (
        "mutation($comment: ID!, $v: String!) { react(commentId: $comment, emoji: $v) { id } }"
    )
    token = 'mutation { createApiToken(input: {name: "ci", expiresInDays: %d}) { token } }'
    input_var = "mutation($v: CreateTaskInput!) { createTask(input: $v) { id } }"
    tag_agents = 'mutation($task: ID!, $v: [ID!]) { postComment(input: {taskId: $task, body: "Hi", agentIds: $v}) { id } }'
    # fmt: off
    return [
        # Pages and cursors.
        Case("first above the page limit", tasks % "first: 201", field="first"),
        Case("first negative", tasks % "first: -1", field="first"),
        Case("first too large by variable", tasks_var % ("Int", "first: $v"), {"v": 10_000}, field="first"),
        Case("first beyond 32 bits", tasks % "first: 99999999999", code=gvf),
        Case("members first above the limit", "query($ws: ID!) { members(workspaceId: $ws, first: 500) { totalCount } }", field="first"),
        Case("comments first negative", "query($task: ID!) { comments(taskId: $task, first: -5) { totalCount } }", field="first"),
        Case("cursor that is not base64", tasks % 'after: "!!!"', field="after"),
        Case("cursor of the wrong length", tasks % 'after: "abc"', field="after"),
        Case("cursor with a NUL", tasks_var % ("String", "after: $v"), {"v": "\x00"}, field="after"),
        # Enums: a literal is a malformed document, a variable is bad input.
        Case("enum literal", tasks % "filter: {status: [NOPE]}", code=gvf),
        Case("enum by variable", tasks_var % ("[TaskStatus!]", "filter: {status: $v}"), {"v": ["NOPE"]}),
        Case("enum by variable, wrong case", tasks_var % ("[TaskStatus!]", "filter: {status: $v}"), {"v": ["todo"]}),
        Case("status literal in a mutation", "mutation($task: ID!) { setTaskStatus(taskId: $task, status: FINISHED) { id } }", code=gvf),
        Case("priority by variable", "mutation($task: ID!, $v: TaskPriority!) { setTaskPriority(taskId: $task, priority: $v) { id } }", {"v": "SUPER"}),
        Case("role by variable", 'mutation($ws: ID!, $v: Role!) { addMember(input: {workspaceId: $ws, email: "new@example.com", role: $v}) { id } }', {"v": "GOD"}),
        Case("autonomy literal", create_agent % "autonomy: EXTREME", code=gvf),
        # Ids.
        Case("id that is not a UUID", '{ task(id: "not-a-uuid") { id } }', field="id"),
        Case("workspace id that is not a UUID", '{ tasks(workspaceId: "42") { totalCount } }', field="workspaceId"),
        Case("mutation id that is not a UUID", 'mutation { createTask(input: {workspaceId: "nope", title: "T"}) { id } }', field="workspaceId"),
        Case("assignee id that is not a UUID", 'mutation($task: ID!) { assignTask(input: {taskId: $task, agentId: "nope"}) { id } }', field="agentId"),
        Case("tagged agent id that is not a UUID", tag_agents, {"v": ["nope"]}, field="agentIds"),
        Case("filter id that is not a UUID", tasks % 'filter: {assigneeUserId: "x"}', field="assigneeUserId"),
        Case("team member id that is not a UUID", 'mutation($team: ID!) { updateTeam(id: $team, team: {memberAgentIds: ["x"]}) { id } }', field="memberAgentIds"),
        Case("run id that is not a UUID", 'mutation { cancelRun(id: "run-1") { id } }', field="id"),
        Case("an id of nothing", "query($v: ID!) { task(id: $v) { id } }", {"v": _new_id()}, code="NOT_FOUND"),
        Case("a run that does not exist", "mutation($v: ID!) { retryRun(id: $v) { id } }", {"v": _new_id()}, code="NOT_FOUND"),
        Case("an assignee that does not exist", "mutation($task: ID!, $v: ID!) { assignTask(input: {taskId: $task, agentId: $v}) { id } }", {"v": _new_id()}, code="NOT_FOUND", field="agentId"),
        Case("a person and an agent at once", "mutation($task: ID!, $agent: ID!, $v: ID!) { assignTask(input: {taskId: $task, agentId: $agent, userId: $v}) { id } }", {"v": _new_id()}, field="agentId"),
        # Numbers out of range.
        Case("concurrency limit 0", create_agent % "concurrencyLimit: 0", field="concurrencyLimit"),
        Case("concurrency limit 65", create_agent % "concurrencyLimit: 65", field="concurrencyLimit"),
        Case("concurrency limit negative on update", update_agent % "concurrencyLimit: -3", field="concurrencyLimit"),
        Case("concurrency limit beyond 32 bits", "mutation($agent: ID!, $v: Int) { updateAgent(id: $agent, profile: {concurrencyLimit: $v}) { id } }", {"v": 2**31}),
        Case("token lifetime 0 days", token % 0, field="expiresInDays"),
        Case("token lifetime 3651 days", token % 3651, field="expiresInDays"),
        # Emoji.
        Case("emoji not offered", react % "💩", field="emoji"),
        Case("emoji empty", react % "", field="emoji"),
        Case("two emoji", react % "👍👍", field="emoji"),
        Case("emoji as a word", react % "thumbsup", field="emoji"),
        Case("emoji with a NUL", react_var, {"v": "👍\x00"}, field="emoji"),
        # Input objects.
        Case("unknown input field, literal", create_task % "bogus: 1", code=gvf),
        Case("unknown input field, variable", input_var, {"v": {"workspaceId": w.workspace, "title": "T", "bogus": 1}}),
        Case("required input field missing, literal", "mutation($ws: ID!) { createTask(input: {workspaceId: $ws}) { id } }", code=gvf),
        Case("required input field missing, variable", input_var, {"v": {"workspaceId": w.workspace}}),
        Case("wrong type, literal", "mutation($ws: ID!) { createTask(input: {workspaceId: $ws, title: 5}) { id } }", code=gvf),
        Case("null for a required string", "mutation($v: String!) { updateProfile(name: $v) { id } }", {"v": None}),
        Case("too many tags", 'mutation($ws: ID!, $v: [String!]) { createTask(input: {workspaceId: $ws, title: "T", tags: $v}) { id } }', {"v": [f"t{i}" for i in range(21)]}, field="tags"),
        Case("too many tagged agents", tag_agents, {"v": [_new_id() for _ in range(21)]}, field="agentIds"),
        Case("an agent as owner", create_agent % "role: OWNER", field="role"),
        # Filters reach SQL, and PostgreSQL refuses a NUL outright.
        Case("search with a NUL", tasks_var % ("String", "filter: {search: $v}"), {"v": "a\x00b"}, field="search"),
        Case("tag filter with a NUL", tasks_var % ("String", "filter: {tag: $v}"), {"v": "a\x00b"}, field="tag"),
        Case("agent search with a NUL", "query($ws: ID!, $v: String) { agents(workspaceId: $ws, filter: {search: $v}) { totalCount } }", {"v": "a\x00b"}, field="search"),
        # Who is asking.
        Case("no credentials", 'mutation { createWorkspace(input: {name: "Anon"}) { id } }', code="UNAUTHENTICATED", who="anonymous"),
        Case("forged credentials", 'mutation { createWorkspace(input: {name: "Forged"}) { id } }', code="UNAUTHENTICATED", who="forged"),
        Case("a viewer creating a task", create_task % "priority: HIGH", code="FORBIDDEN", who="viewer"),
        Case("an outsider reading a task", "query($task: ID!) { task(id: $task) { id } }", code="NOT_FOUND", who="outsider"),
        Case("an outsider editing a task", 'mutation($task: ID!) { updateTask(input: {taskId: $task, title: "Mine"}) { id } }', code="NOT_FOUND", who="outsider"),
    ]
    # fmt: on


# fmt: off
# Every mutation input that takes text: (document with $v, field the error names,
# longest accepted length, required).
TEXT_INPUTS: list[tuple[str, str, int, bool]] = [
    ("mutation($v: String!) { updateProfile(name: $v) { id } }", "name", 120, True),
    ("mutation($v: String!) { createApiToken(input: {name: $v}) { token } }", "name", 120, True),
    ("mutation($v: String!) { createWorkspace(input: {name: $v}) { id } }", "name", 120, True),
    ("mutation($ws: ID!, $v: String!) { renameWorkspace(id: $ws, name: $v) { id } }", "name", 120, True),
    ("mutation($ws: ID!, $v: String!) { createAgent(workspaceId: $ws, profile: {name: $v}) { id } }", "name", 120, True),
    ("mutation($agent: ID!, $v: String!) { updateAgent(id: $agent, profile: {name: $v}) { id } }", "name", 120, True),
    ('mutation($ws: ID!, $v: String!) { createAgent(workspaceId: $ws, profile: {name: "Bot", summary: $v}) { id } }', "summary", 2000, False),
    ('mutation($ws: ID!, $v: String!) { createAgent(workspaceId: $ws, profile: {name: "Bot", instructions: $v}) { id } }', "instructions", 50_000, False),
    ("mutation($agent: ID!, $v: String!) { updateAgent(id: $agent, profile: {model: $v}) { id } }", "model", 120, False),
    ("mutation($agent: ID!, $v: String!) { updateAgent(id: $agent, profile: {reasoningLevel: $v}) { id } }", "reasoningLevel", 32, False),
    ("mutation($agent: ID!, $v: String!) { updateAgent(id: $agent, profile: {memory: $v}) { id } }", "memory", 20_000, False),
    ("mutation($ws: ID!, $v: String!) { createTeam(workspaceId: $ws, team: {name: $v}) { id } }", "name", 120, True),
    ("mutation($team: ID!, $v: String!) { updateTeam(id: $team, team: {name: $v}) { id } }", "name", 120, True),
    ("mutation($ws: ID!, $v: String!) { createTask(input: {workspaceId: $ws, title: $v}) { id } }", "title", 300, True),
    ('mutation($ws: ID!, $v: String!) { createTask(input: {workspaceId: $ws, title: "T", description: $v}) { id } }', "description", 100_000, False),
    ('mutation($ws: ID!, $v: String!) { createTask(input: {workspaceId: $ws, title: "T", tags: [$v]}) { id } }', "tags", 48, True),
    ("mutation($task: ID!, $v: String!) { updateTask(input: {taskId: $task, title: $v}) { id } }", "title", 300, True),
    ("mutation($task: ID!, $v: String!) { updateTask(input: {taskId: $task, description: $v}) { id } }", "description", 100_000, False),
    ("mutation($task: ID!, $v: String!) { updateTask(input: {taskId: $task, tags: [$v]}) { id } }", "tags", 48, True),
    ("mutation($ws: ID!, $v: String!) { createProject(workspaceId: $ws, name: $v) { id } }", "name", 200, True),
    ('mutation($ws: ID!, $v: String!) { createProject(workspaceId: $ws, name: "P", description: $v) { id } }', "description", 20_000, False),
    ("mutation($project: ID!, $v: String!) { updateProject(id: $project, name: $v) { id } }", "name", 200, True),
    ("mutation($project: ID!, $v: String!) { updateProject(id: $project, description: $v) { id } }", "description", 20_000, False),
    ("mutation($ws: ID!, $v: String!) { createGoal(input: {workspaceId: $ws, title: $v}) { id } }", "title", 200, True),
    ('mutation($ws: ID!, $v: String!) { createGoal(input: {workspaceId: $ws, title: "G", description: $v}) { id } }', "description", 20_000, False),
    ("mutation($goal: ID!, $v: String!) { updateGoal(id: $goal, title: $v) { id } }", "title", 200, True),
    ("mutation($task: ID!, $v: String!) { postComment(input: {taskId: $task, body: $v}) { id } }", "body", 50_000, True),
    ("mutation($ws: ID!, $agent: ID!, $v: String!) { createChat(workspaceId: $ws, agentId: $agent, title: $v) { id } }", "title", 200, False),
    ("mutation($chat: ID!, $v: String!) { sendChatMessage(chatId: $chat, body: $v) { id } }", "body", 50_000, True),
]

# Handles and slugs: (document with $v, field).
HANDLE_INPUTS: list[tuple[str, str]] = [
    ('mutation($v: String!) { createWorkspace(input: {name: "W", slug: $v}) { id } }', "slug"),
    ('mutation($ws: ID!, $v: String!) { createAgent(workspaceId: $ws, profile: {name: "Bot", handle: $v}) { id } }', "handle"),
    ("mutation($agent: ID!, $v: String!) { updateAgent(id: $agent, profile: {handle: $v}) { id } }", "handle"),
    ('mutation($ws: ID!, $v: String!) { createTeam(workspaceId: $ws, team: {name: "T", handle: $v}) { id } }', "handle"),
    ("mutation($team: ID!, $v: String!) { updateTeam(id: $team, team: {handle: $v}) { id } }", "handle"),
]
BAD_HANDLES = ["has space", "-dash-first", "x" * 65, "a\x00b", "émile", "a.b"]

# Email addresses: (document with $v, who calls it).
EMAIL_INPUTS: list[tuple[str, str]] = [
    ("mutation($v: String!) { requestMagicLink(email: $v) }", "anonymous"),
    ("mutation($ws: ID!, $v: String!) { addMember(input: {workspaceId: $ws, email: $v}) { id } }", "owner"),
]
BAD_EMAILS = [
    "", "nope", "a@b", "a b@example.com", "a@@example.com", "a\x00b@example.com",
    "a\tb@example.com", "a\ud800@example.com", "x" * 250 + "@example.com",
]
# fmt: on


def _root(document: str) -> str:
    return document.split("{", 1)[1].split("(", 1)[0].strip()


def text_cases(w: World) -> list[Item]:
    cases: list[Item] = []
    for document, field, longest, required in TEXT_INPUTS:
        root = _root(document)
        values = {
            "over-long": "x" * (longest + 1),
            "NUL": "a\x00b",
            "unpaired surrogate": "a\ud800b",
        }
        if required:
            values = {"empty": "", "blank": " \n\t ", **values}
        cases += [
            Case(f"{root} {field} {kind}", document, {"v": value}, field=field)
            for kind, value in values.items()
        ]
    for document, field in HANDLE_INPUTS:
        cases += [
            Case(f"{_root(document)} {field} {value[:12]!r}", document, {"v": value}, field=field)
            for value in BAD_HANDLES
        ]
    for document, who in EMAIL_INPUTS:
        cases += [
            Case(
                f"{_root(document)} email {value[:16]!r}",
                document,
                {"v": value},
                field="email",
                who=who,
            )
            for value in BAD_EMAILS
        ]
    return cases


# --- running a barrage --------------------------------------------------------------------


class Barrage:
    """Sends cases one by one; after each, the database is unchanged and the board answers."""

    def __init__(self, server: RunningServer, world: World) -> None:
        self.server = server
        self.world = world
        self.failures: list[str] = []
        self.baseline: Snapshot = {}
        self.count = 0

    async def start(self) -> None:
        self.baseline = await snapshot(self.server)

    def _headers(self, who: str) -> dict[str, str]:
        tokens = {
            "owner": self.world.owner,
            "viewer": self.world.viewer,
            "outsider": self.world.outsider,
            "forged": "tm_pat_" + "A" * 43,
        }
        return {"authorization": f"Bearer {tokens[who]}"} if who in tokens else {}

    async def run(self, group: str, items: list[Item]) -> None:
        for item in items:
            self.count += 1
            label = f"[{group}] {item.label}"
            try:
                problem = await asyncio.wait_for(self._send(item), TIMEOUT)
            except TimeoutError:
                problem = f"no answer within {TIMEOUT} s"
            if problem:
                self.failures.append(f"{label}: {problem}")
            after = await snapshot(self.server)
            if after != self.baseline:
                self.failures.append(
                    f"{label}: database changed: {describe_change(self.baseline, after)}"
                )
                self.baseline = after  # report each change once
            if not await self._board_answers():
                self.failures.append(f"{label}: the board query failed right after")

    async def _send(self, item: Item) -> str | None:
        http = self.server.http
        if isinstance(item, Raw):
            content = item.content() if callable(item.content) else item.content
            headers = {"content-type": item.content_type} if item.content_type else {}
            headers.update(self._headers("owner"))
            response = await http.request(
                item.method, "/graphql", content=content, params=item.params, headers=headers
            )
            if response.status_code != item.status:
                return f"status {response.status_code}, wanted {item.status}: {response.text[:200]}"
            if not item.code:  # accepted
                return None if _json(response).get("data") else f"no data: {response.text[:200]}"
            return _error_problem(_json(response), item.code, None)
        payload = {"query": item.query, "variables": {**self.world.ids(), **(item.variables or {})}}
        who = item.who if isinstance(item, Case) else "owner"
        response = await http.post(
            "/graphql",
            # ensure_ascii keeps an unpaired surrogate as a \\u escape, as a JSON client sends it.
            content=json.dumps(payload).encode(),
            headers={"content-type": "application/json", **self._headers(who)},
        )
        body = _json(response)
        if isinstance(item, Accepted):
            if response.status_code != 200 or body.get("errors"):
                return f"refused: {response.status_code} {json.dumps(body)[:300]}"
            return None
        if body.get("data") is not None:
            return f"data came back: {json.dumps(body)[:300]}"
        problem = _error_problem(body, item.code, item.field)
        if problem is None and item.says and item.says not in body["errors"][0]["message"]:
            problem = f"refused, but not for {item.says!r}: {body['errors'][0]['message']}"
        return problem

    async def _board_answers(self) -> bool:
        body = await self.server.graphql(BOARD, {"ws": self.world.workspace}, self.world.owner)
        edges = (body.get("data") or {}).get("tasks", {}).get("edges", [])
        return not body.get("errors") and [e["node"]["id"] for e in edges] == [self.world.task]

    def verdict(self) -> None:
        assert not self.failures, (
            f"{len(self.failures)} of {self.count} cases failed:\n" + "\n".join(self.failures)
        )


def _json(response: httpx.Response) -> dict[str, Any]:
    """The body as JSON; anything else (a bare 500, HTML) is a failure of its own."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {"not JSON": response.text[:200]}


def _error_problem(body: Any, code: str, field: str | None) -> str | None:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return f"no error: {json.dumps(body)[:300]}"
    first = errors[0]
    extensions = first.get("extensions") or {}
    if extensions.get("code") != code:
        return f"code {extensions.get('code')!r}, wanted {code!r}: {first.get('message')}"
    if field is not None and extensions.get("field") != field:
        return f"field {extensions.get('field')!r}, wanted {field!r}: {first.get('message')}"
    if not isinstance(first.get("message"), str) or not first["message"]:
        return "an error without a message"
    uncoded = [e for e in errors if not (e.get("extensions") or {}).get("code")]
    if uncoded:
        return f"errors without a code: {uncoded}"
    return None


async def assert_still_serving(server: RunningServer, world: World) -> None:
    health = await server.http.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    # Nothing leaked (sessions, connections, locks): many normal queries at once all answer.
    bodies = await asyncio.wait_for(
        asyncio.gather(
            *(server.graphql(BOARD, {"ws": world.workspace}, world.owner) for _ in range(20))
        ),
        TIMEOUT,
    )
    for body in bodies:
        assert not body.get("errors"), body
        assert world.task in [e["node"]["id"] for e in body["data"]["tasks"]["edges"]]


def _groups(server: RunningServer, world: World) -> dict[str, list[Item]]:
    s = server.settings
    return {
        "transport": transport_cases(world, s.max_body_bytes),
        "document": document_cases(
            world, s.max_query_depth, s.max_query_aliases, s.max_query_tokens
        ),
        "arguments": argument_cases(world),
        "text": text_cases(world),
    }


# --- tests --------------------------------------------------------------------------------


async def test_after_the_whole_barrage_the_server_is_healthy(
    server: RunningServer, world: World
) -> None:
    barrage = Barrage(server, world)
    await barrage.start()
    for group, items in _groups(server, world).items():
        await barrage.run(group, items)
    barrage.verdict()
    assert barrage.count > 250
    await assert_still_serving(server, world)


# --- WebSocket ----------------------------------------------------------------------------


async def _init(url: str, payload: dict[str, Any]) -> ClientConnection:
    socket = await connect(url, subprotocols=[WS_PROTOCOL])
    await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
    return socket


async def _receive(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
    return message


async def _subscribe(
    socket: ClientConnection, op: str, query: str, variables: dict[str, Any]
) -> None:
    await socket.send(
        json.dumps(
            {"type": "subscribe", "id": op, "payload": {"query": query, "variables": variables}}
        )
    )


async def _closed_with(socket: ClientConnection) -> int | None:
    try:
        while True:
            await asyncio.wait_for(socket.recv(), TIMEOUT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


BOARD_SUB = "subscription($ws: ID!) { boardChanged(workspaceId: $ws) { kind task { title } } }"
TIMELINE_SUB = "subscription($t: ID!) { taskTimeline(taskId: $t) { kind } }"


async def test_websocket_refuses_bad_tokens_and_survives_bad_subscriptions(
    server: RunningServer, world: World
) -> None:
    # A forged token, or one that is not a token at all: the connection is closed with 4403.
    for forged in ("tm_pat_" + "A" * 43, "garbage"):
        socket = await _init(server.ws_url, {"authorization": f"Bearer {forged}"})
        assert await _closed_with(socket) == 4403, forged

    before = await snapshot(server)
    hub = server.state.hub
    socket = await _init(server.ws_url, {"authorization": f"Bearer {world.owner}"})
    try:
        assert (await _receive(socket))["type"] == "connection_ack"
        await _subscribe(socket, "bad-id", TIMELINE_SUB, {"t": "not-a-uuid"})
        await _subscribe(socket, "missing", TIMELINE_SUB, {"t": _new_id()})
        await _subscribe(socket, "no-such-field", "subscription { nope }", {})
        await _subscribe(socket, "bad-variable", BOARD_SUB, {"ws": {"an": "object"}})
        replies: dict[str, list[dict[str, Any]]] = {}
        while sum(1 for r in replies.values() for m in r if m["type"] in ("complete", "error")) < 4:
            message = await _receive(socket)
            replies.setdefault(message["id"], []).append(message)

        def first_error(op: str) -> dict[str, Any]:
            message = replies[op][0]
            errors = (
                message["payload"]["errors"] if message["type"] == "next" else message["payload"]
            )
            return dict(errors[0]["extensions"])

        assert first_error("bad-id") == {"code": "BAD_USER_INPUT", "field": "taskId"}
        assert first_error("missing")["code"] == "NOT_FOUND"
        assert first_error("no-such-field")["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert first_error("bad-variable")["code"] == "BAD_USER_INPUT"
        assert hub.subscriber_count == 0
        assert await snapshot(server) == before

        # The same connection still works: a good subscription sees a change made over HTTP.
        await _subscribe(socket, "board", BOARD_SUB, {"ws": world.workspace})
        for _ in range(200):
            if hub.subscriber_count == 1:
                break
            await asyncio.sleep(0.01)
        assert hub.subscriber_count == 1
        await server.ok(
            'mutation($ws: ID!) { createTask(input: {workspaceId: $ws, title: "Live"}) { id } }',
            {"ws": world.workspace},
            world.owner,
        )
        event = await _receive(socket)
        assert event["id"] == "board" and event["type"] == "next", event
        assert event["payload"]["data"]["boardChanged"] == {
            "kind": "CREATED",
            "task": {"title": "Live"},
        }
        await socket.send(json.dumps({"type": "ping"}))
        assert (await _receive(socket))["type"] == "pong"
        # A message that is not JSON ends the connection (4400); the server carries on.
        await socket.send("not json")
        assert await _closed_with(socket) == 4400
    finally:
        await socket.close()

    # Without credentials the connection opens, but a subscription answers UNAUTHENTICATED.
    socket = await _init(server.ws_url, {})
    try:
        assert (await _receive(socket))["type"] == "connection_ack"
        await _subscribe(socket, "anon", BOARD_SUB, {"ws": world.workspace})
        message = await _receive(socket)
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        await socket.close()
    await assert_still_serving(server, world)
