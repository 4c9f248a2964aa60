"""The role table: owner, admin, member and viewer each hold exactly their permission keys.

Every mutation that needs a key is called by every role, through the API, against the same
workspace: an allowed call succeeds; a refused one answers FORBIDDEN and changes no row of the
database. Around the table: what a viewer may read, the last owner, owner grants, outsiders,
anonymous callers and revoked tokens.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

import pytest
import sqlalchemy as sa
from graphql import build_schema as parse_sdl

from taskmachine import models as m
from taskmachine.auth import permissions
from taskmachine.auth.permissions import ALL_KEYS, ROLE_PERMISSIONS, has_permission
from taskmachine.auth.principal import Principal
from taskmachine.domain import agents, chats, comments, people, projects, tasks, workspaces
from taskmachine.domain import machines as machine_domain
from taskmachine.models import Role
from taskmachine.schema.root import build_schema
from taskmachine.settings import Settings
from tests.api.test_isolation import broker_backed
from tests.conftest import RunningServer

ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER)


def email(role: Role) -> str:
    return f"{role.value}@crew.example"


# -- one workspace, a member of each role ------------------------------------------------------


@dataclass
class Crew:
    ws: str
    tokens: dict[Role, str] = field(default_factory=dict)
    users: dict[Role, str] = field(default_factory=dict)
    memberships: dict[Role, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    # Rows that one call of one role uses up (a member to remove, a machine to remove, …).
    targets: dict[Role, dict[str, str]] = field(default_factory=dict)


ADD_MEMBER = """mutation($ws: ID!, $email: String!, $role: Role!) {
  addMember(input: {workspaceId: $ws, email: $email, role: $role}) { id role user { id } } }"""


async def assemble(server: RunningServer) -> Crew:
    owner_token = await server.token_for(email(Role.OWNER))
    async with server.state.session_factory() as s:
        owner = await people.get_or_create_user(s, email(Role.OWNER))
        ws = await workspaces.create_workspace(s, Principal(user_id=owner.id), "Crew", None)
        await s.commit()
    crew = Crew(ws=str(ws.id))
    crew.tokens[Role.OWNER] = owner_token
    crew.users[Role.OWNER] = str(owner.id)
    # The others join the way people join: an owner adds them through the API.
    for role in ROLES[1:]:
        added = (
            await server.ok(
                ADD_MEMBER, {"ws": crew.ws, "email": email(role), "role": role.name}, owner_token
            )
        )["addMember"]
        assert added["role"] == role.name
        crew.memberships[role] = added["id"]
        crew.users[role] = added["user"]["id"]
        crew.tokens[role] = await server.token_for(email(role))
    async with server.state.session_factory() as s:
        me = Principal(user_id=owner.id)
        crew.memberships[Role.OWNER] = str(
            await s.scalar(sa.select(m.Membership.id).where(m.Membership.user_id == owner.id))
        )
        agent = await agents.create_agent(s, me, ws.id, agents.AgentChanges(name="Crew agent"))
        team = await agents.create_team(s, me, ws.id, agents.TeamChanges(name="Crew team"))
        project = await projects.create_project(s, me, ws.id, "Crew project", "")
        goal = await projects.create_goal(s, me, ws.id, "Crew goal", "", None, None)
        task = await tasks.create_task(s, me, ws.id, tasks.NewTask(title="Crew task"))
        comment = await comments.post_comment(s, me, task.id, "Crew comment")
        chat = await chats.create_chat(s, me, ws.id, agent.id, "")
        await chats.post_message(s, me, chat.id, "Hello")
        machine = await _machine(s, ws.id, "crew box")
        runtime = m.Runtime(machine_id=machine.id, name="claude", provider="anthropic")
        s.add(runtime)
        run = m.Run(
            workspace_id=ws.id,
            agent_id=agent.id,
            task_id=task.id,
            trigger_kind=m.TriggerKind.MANUAL,
            status=m.RunStatus.SUCCEEDED,
        )
        s.add(run)
        await s.flush()
        s.add(m.TranscriptChunk(run_id=run.id, attempt=1, seq=0, events=[]))
        crew.refs = {
            "agent": str(agent.id),
            "team": str(team.id),
            "project": str(project.id),
            "goal": str(goal.id),
            "task": str(task.id),
            "comment": str(comment.id),
            "chat": str(chat.id),
            "machine": str(machine.id),
            "runtime": str(runtime.id),
            "run": str(run.id),
        }
        for role in ROLES:
            user_id = uuid.UUID(crew.users[role])
            item = m.InboxItem(
                workspace_id=ws.id, user_id=user_id, kind=m.InboxKind.MENTION, title="Look"
            )
            spare = [
                await workspaces.add_member(
                    s, me, ws.id, f"{role.value}-{n}@spare.example", Role.MEMBER
                )
                for n in (1, 2)
            ]
            queued = m.Run(workspace_id=ws.id, agent_id=agent.id, trigger_kind=m.TriggerKind.MANUAL)
            # Each question is its own comment, as when an agent asks (answering one resolves
            # the other recipients' items for that comment).
            asked = {}
            for kind in (m.InboxKind.QUESTION, m.InboxKind.APPROVAL):
                question = await comments.post_comment(
                    s, me, task.id, f"{kind.value} for {role.value}"
                )
                asked[kind] = m.InboxItem(
                    workspace_id=ws.id,
                    user_id=user_id,
                    kind=kind,
                    title="Asked",
                    task_id=task.id,
                    agent_id=agent.id,
                    data={"commentId": str(question.id)},
                )
            s.add_all([item, queued, *asked.values()])
            await s.flush()
            crew.targets[role] = {
                "question": str(asked[m.InboxKind.QUESTION].id),
                "approval": str(asked[m.InboxKind.APPROVAL].id),
                "inbox": str(item.id),
                "run": str(queued.id),
                "demote": str(spare[0].id),
                "remove": str(spare[1].id),
            }
        await s.commit()
    return crew


async def _machine(s: Any, workspace_id: uuid.UUID, name: str) -> m.Machine:
    machine = m.Machine(name=name, cli_version="1.0.0")
    s.add(machine)
    await s.flush()
    s.add(m.MachineWorkspace(machine_id=machine.id, workspace_id=workspace_id))
    return machine


async def arm_the_fleet(server: RunningServer, crew: Crew) -> None:
    """What the machine mutations need: broker users and queues, a setup request and a machine
    to remove for each role."""
    broker = server.state.services["broker"]
    await broker.create_machine(crew.refs["machine"], secrets.token_urlsafe())
    async with server.state.session_factory() as s:
        for role in ROLES:
            pending = await machine_domain.request_approval(
                s, server.state.hasher, server.state.settings, f"{role.value} box", "", "", ""
            )
            doomed = await _machine(s, uuid.UUID(crew.ws), f"{role.value} doomed box")
            await broker.create_machine(str(doomed.id), secrets.token_urlsafe())
            crew.targets[role] |= {"code": pending.user_code, "machine": str(doomed.id)}
        await s.commit()


@pytest.fixture
async def fleet_server(broker_settings: Settings) -> AsyncIterator[RunningServer]:
    """Approving and updating machines need the broker."""
    async with broker_backed(broker_settings) as running:
        yield running


@pytest.fixture
async def crew(server: RunningServer) -> Crew:
    return await assemble(server)


# -- "nothing changed" -------------------------------------------------------------------------

Snapshot = dict[str, list[tuple[Any, ...]]]


async def snapshot(server: RunningServer) -> Snapshot:
    """Every row of every table (a token's last use aside: presenting a token records it)."""
    async with server.state.session_factory() as s:
        result: Snapshot = {}
        for table in m.Base.metadata.sorted_tables:
            columns = [c for c in table.c if (table.name, c.name) != ("api_tokens", "last_used_at")]
            rows = (await s.execute(sa.select(*columns))).all()
            result[table.name] = sorted((tuple(r) for r in rows), key=repr)
        return result


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


async def refused(
    server: RunningServer, code: str, query: str, variables: dict[str, Any], token: str | None
) -> None:
    """The call answers `code` and leaves every row as it was."""
    before = await snapshot(server)
    body = await server.graphql(query, variables, token)
    assert codes(body) and set(codes(body)) == {code}, f"expected {code}: {body}"
    assert body.get("data") is None, body
    assert not changes(before, await snapshot(server)), f"{query} changed rows"


# -- the table of mutations and the key each needs ---------------------------------------------

Vars = Callable[[Crew, Role], dict[str, Any]]


@dataclass(frozen=True)
class Action:
    field: str
    key: str
    query: str
    variables: Vars


STATUS = {
    Role.OWNER: "IN_PROGRESS",
    Role.ADMIN: "BLOCKED",
    Role.MEMBER: "IN_REVIEW",
    Role.VIEWER: "DONE",
}
PRIORITY = {Role.OWNER: "LOW", Role.ADMIN: "MEDIUM", Role.MEMBER: "HIGH", Role.VIEWER: "URGENT"}


def named(prefix: str) -> Vars:
    return lambda c, r: {"ws": c.ws, "name": f"{prefix} by {r.value}"}


def ref(row: str, **extra: Any) -> Vars:
    return lambda c, r: {"id": c.refs[row], **{k: f"{v} by {r.value}" for k, v in extra.items()}}


def target(name: str) -> Vars:
    return lambda c, r: {"id": c.targets[r][name]}


ACTIONS = [
    Action(
        "renameWorkspace",
        "workspace.manage",
        "mutation($ws: ID!, $name: String!) { renameWorkspace(id: $ws, name: $name) { id } }",
        named("Crew"),
    ),
    Action(
        "addMember",
        "member.manage",
        "mutation($ws: ID!, $name: String!) { addMember(input: {workspaceId: $ws, email: $name}) { id } }",
        lambda c, r: {"ws": c.ws, "name": f"joiner-{r.value}@crew.example"},
    ),
    Action(
        "setMemberRole",
        "member.manage",
        "mutation($id: ID!) { setMemberRole(input: {membershipId: $id, role: VIEWER}) { id } }",
        target("demote"),
    ),
    Action(
        "removeMember",
        "member.manage",
        "mutation($id: ID!) { removeMember(membershipId: $id) }",
        target("remove"),
    ),
    Action(
        "createAgent",
        "agent.manage",
        "mutation($ws: ID!, $name: String!) { createAgent(workspaceId: $ws, profile: {name: $name}) { id } }",
        named("Agent"),
    ),
    Action(
        "updateAgent",
        "agent.manage",
        "mutation($id: ID!, $text: String!) { updateAgent(id: $id, profile: {summary: $text}) { id } }",
        ref("agent", text="Summary"),
    ),
    Action(
        "createTeam",
        "team.manage",
        "mutation($ws: ID!, $name: String!) { createTeam(workspaceId: $ws, team: {name: $name}) { id } }",
        named("Team"),
    ),
    Action(
        "updateTeam",
        "team.manage",
        "mutation($id: ID!, $name: String!) { updateTeam(id: $id, team: {name: $name}) { id } }",
        ref("team", name="Team"),
    ),
    Action(
        "createTask",
        "task.create",
        "mutation($ws: ID!, $name: String!) { createTask(input: {workspaceId: $ws, title: $name}) { id } }",
        named("Task"),
    ),
    Action(
        "updateTask",
        "task.edit",
        "mutation($id: ID!, $name: String!) { updateTask(input: {taskId: $id, title: $name}) { id } }",
        ref("task", name="Task"),
    ),
    Action(
        "assignTask",
        "task.assign",
        "mutation($id: ID!, $user: ID!) { assignTask(input: {taskId: $id, userId: $user}) { id } }",
        lambda c, r: {"id": c.refs["task"], "user": c.users[r]},
    ),
    Action(
        "setTaskStatus",
        "task.edit",
        "mutation($id: ID!, $s: TaskStatus!) { setTaskStatus(taskId: $id, status: $s) { id } }",
        lambda c, r: {"id": c.refs["task"], "s": STATUS[r]},
    ),
    Action(
        "setTaskPriority",
        "task.edit",
        "mutation($id: ID!, $p: TaskPriority!) { setTaskPriority(taskId: $id, priority: $p) { id } }",
        lambda c, r: {"id": c.refs["task"], "p": PRIORITY[r]},
    ),
    Action(
        "createProject",
        "project.manage",
        "mutation($ws: ID!, $name: String!) { createProject(workspaceId: $ws, name: $name) { id } }",
        named("Project"),
    ),
    Action(
        "updateProject",
        "project.manage",
        "mutation($id: ID!, $name: String!) { updateProject(id: $id, name: $name) { id } }",
        ref("project", name="Project"),
    ),
    Action(
        "createGoal",
        "goal.manage",
        "mutation($ws: ID!, $name: String!) { createGoal(input: {workspaceId: $ws, title: $name}) { id } }",
        named("Goal"),
    ),
    Action(
        "updateGoal",
        "goal.manage",
        "mutation($id: ID!, $name: String!) { updateGoal(id: $id, title: $name) { id } }",
        ref("goal", name="Goal"),
    ),
    Action(
        "postComment",
        "comment.post",
        "mutation($id: ID!, $text: String!) { postComment(input: {taskId: $id, body: $text}) { id } }",
        ref("task", text="Comment"),
    ),
    Action(
        "react",
        "comment.react",
        'mutation($id: ID!) { react(commentId: $id, emoji: "👍") { id } }',
        ref("comment"),
    ),
    Action(
        "createChat",
        "chat.use",
        "mutation($ws: ID!, $agent: ID!) { createChat(workspaceId: $ws, agentId: $agent) { id } }",
        lambda c, r: {"ws": c.ws, "agent": c.refs["agent"]},
    ),
    Action(
        "sendChatMessage",
        "chat.use",
        "mutation($id: ID!, $text: String!) { sendChatMessage(chatId: $id, body: $text) { id } }",
        ref("chat", text="Hello"),
    ),
    Action(
        "updateInboxItem",
        "inbox.act",
        "mutation($id: ID!) { updateInboxItem(id: $id, read: true) { id } }",
        target("inbox"),
    ),
    Action(
        "approveMachine",
        "machine.manage",
        "mutation($code: String!, $ws: ID!) { approveMachine(code: $code, workspaceIds: [$ws]) { status } }",
        lambda c, r: {"code": c.targets[r]["code"], "ws": c.ws},
    ),
    Action(
        "setRuntimeEnabled",
        "runtime.manage",
        "mutation($id: ID!, $on: Boolean!) { setRuntimeEnabled(runtimeId: $id, enabled: $on) { id } }",
        lambda c, r: {"id": c.refs["runtime"], "on": r is not Role.ADMIN},
    ),
    Action(
        "requestMachineUpdate",
        "machine.manage",
        "mutation($id: ID!) { requestMachineUpdate(machineId: $id) { id } }",
        ref("machine"),
    ),
    Action(
        "removeMachine",
        "machine.manage",
        "mutation($id: ID!) { removeMachine(machineId: $id) }",
        target("machine"),
    ),
    Action(
        "cancelRun",
        "run.control",
        "mutation($id: ID!) { cancelRun(id: $id) { status } }",
        target("run"),
    ),
    Action(
        "retryRun", "run.control", "mutation($id: ID!) { retryRun(id: $id) { status } }", ref("run")
    ),
    Action(
        "setTaskSummary",
        "task.edit",
        "mutation($id: ID!, $text: String!) { setTaskSummary(taskId: $id, summary: $text) { id } }",
        ref("task", text="Summary"),
    ),
    Action(
        "blockTask",
        "task.edit",
        "mutation($id: ID!, $text: String!) { blockTask(taskId: $id, reason: $text) { id } }",
        ref("task", text="Waiting on a reply"),
    ),
    Action(
        "recordNoAction",
        "comment.post",
        "mutation($id: ID!, $text: String!) { recordNoAction(taskId: $id, reason: $text) { id } }",
        ref("task", text="Nothing to do"),
    ),
    Action(
        "askQuestion",
        "comment.post",
        "mutation($id: ID!, $text: String!) { askQuestion(input: {taskId: $id, question: $text}) { id } }",
        ref("task", text="Which branch?"),
    ),
    Action(
        "requestApproval",
        "comment.post",
        "mutation($id: ID!, $text: String!) { requestApproval(input: {taskId: $id, request: $text}) { id } }",
        ref("task", text="May I deploy?"),
    ),
    Action(
        "answerInboxItem",
        "inbox.act",
        'mutation($id: ID!) { answerInboxItem(id: $id, answer: "main") { id } }',
        target("question"),
    ),
    Action(
        "decideApproval",
        "inbox.act",
        "mutation($id: ID!) { decideApproval(id: $id, approve: true) { id } }",
        target("approval"),
    ),
]

# Mutations that act for the caller alone, or for a machine: no workspace key.
PERSONAL = {
    "requestMagicLink",
    "createApiToken",
    "revokeApiToken",
    "updateProfile",
    "createWorkspace",
    # Setting up a machine: the request, its poll and token refresh come from the CLI itself;
    # anyone signed in who holds the code shown by `tama setup` may turn a request down.
    "requestMachineApproval",
    "pollMachineApproval",
    "refreshMachineToken",
    "denyMachine",
    # Only a machine's own token claims a run (dispatched to that machine).
    "claimRun",
}
# Keys that no mutation checks yet.
KEYS_WITHOUT_MUTATION: set[str] = set()


@cache
def mutation_fields() -> set[str]:
    mutation = parse_sdl(build_schema(Settings()).as_str()).mutation_type
    assert mutation is not None
    return set(mutation.fields)


def test_every_mutation_is_in_the_table() -> None:
    listed = {a.field for a in ACTIONS}
    assert len(listed) == len(ACTIONS), "a mutation is listed twice"
    assert not listed & PERSONAL
    missing = mutation_fields() - listed - PERSONAL
    assert not missing, f"add these mutations to ACTIONS (with their key) or PERSONAL: {missing}"
    assert not (listed | PERSONAL) - mutation_fields(), "the table lists mutations that are gone"
    used = {a.key for a in ACTIONS}
    assert used <= ALL_KEYS
    assert ALL_KEYS - used == KEYS_WITHOUT_MUTATION


def test_the_documented_table_is_the_code() -> None:
    """The table in taskmachine/auth/permissions.py's docstring says what ROLE_PERMISSIONS does."""
    assert permissions.__doc__
    documented: set[str] = set()
    for line in permissions.__doc__.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or "." not in cells[0]:
            continue
        key, marks = cells[0], cells[1:]
        documented.add(key)
        for role, mark in zip(ROLES, marks, strict=True):
            assert (mark == "x") == (key in ROLE_PERMISSIONS[role]), f"{key} for {role.value}"
    assert documented == ALL_KEYS


async def test_each_role_can_do_exactly_what_its_keys_allow(fleet_server: RunningServer) -> None:
    server = fleet_server
    crew = await assemble(server)
    await arm_the_fleet(server, crew)
    failures: list[str] = []
    for role in ROLES:
        for action in ACTIONS:
            variables = action.variables(crew, role)
            allowed = has_permission(role, action.key)
            before = None if allowed else await snapshot(server)
            body = await server.graphql(action.query, variables, crew.tokens[role])
            label = f"{role.value} {action.field} ({action.key})"
            if allowed:
                if body.get("errors") or not body.get("data", {}).get(action.field):
                    failures.append(f"{label} should succeed: {body}")
                continue
            if set(codes(body)) != {"FORBIDDEN"}:
                failures.append(f"{label} should be FORBIDDEN: {body}")
            assert before is not None
            changed = changes(before, await snapshot(server))
            if changed:
                failures.append(f"{label} was refused but changed {changed}")
    assert not failures, "\n".join(failures)


# -- around the table --------------------------------------------------------------------------

VIEW = """query($ws: ID!) { workspace(id: $ws) { viewerRole viewerPermissions }
  workspaces { id viewerRole viewerPermissions } permissionKeys }"""


async def test_viewer_permissions_follow_the_table(server: RunningServer, crew: Crew) -> None:
    for role in ROLES:
        data = await server.ok(VIEW, {"ws": crew.ws}, crew.tokens[role])
        expected = sorted(ROLE_PERMISSIONS[role])
        assert data["workspace"] == {"viewerRole": role.name, "viewerPermissions": expected}
        assert data["workspaces"] == [
            {"id": crew.ws, "viewerRole": role.name, "viewerPermissions": expected}
        ]
        assert data["permissionKeys"] == sorted(ALL_KEYS)


READ_ALL = """query($ws: ID!, $task: ID!, $agent: ID!, $team: ID!, $project: ID!, $goal: ID!,
    $chat: ID!, $run: ID!, $machine: ID!) {
  workspace(id: $ws) { name } members(workspaceId: $ws) { totalCount }
  agents(workspaceId: $ws) { totalCount } agent(id: $agent) { name }
  teams(workspaceId: $ws) { totalCount } team(id: $team) { name }
  tasks(workspaceId: $ws) { totalCount } task(id: $task) { title } taskByNumber(workspaceId: $ws, number: 1) { title }
  projects(workspaceId: $ws) { totalCount } project(id: $project) { name }
  goals(workspaceId: $ws) { totalCount } goal(id: $goal) { title }
  comments(taskId: $task) { totalCount } timeline(taskId: $task) { totalCount }
  chats(workspaceId: $ws) { totalCount } chat(id: $chat) { title } chatMessages(chatId: $chat) { totalCount }
  inbox(workspaceId: $ws) { totalCount }
  runs(workspaceId: $ws) { totalCount } run(id: $run) { status } transcript(runId: $run) { totalCount }
  machines(workspaceId: $ws) { totalCount } machine(id: $machine) { name } runtimes(workspaceId: $ws) { name }
}"""


async def test_a_viewer_reads_everything_and_writes_nothing(
    server: RunningServer, crew: Crew
) -> None:
    token = crew.tokens[Role.VIEWER]
    variables = {
        "ws": crew.ws,
        **{
            k: crew.refs[k]
            for k in ("task", "agent", "team", "project", "goal", "chat", "run", "machine")
        },
    }
    data = await server.ok(READ_ALL, variables, token)
    assert data["workspace"] == {"name": "Crew"} and data["task"] == {"title": "Crew task"}
    assert data["members"]["totalCount"] == 4 + 2 * len(ROLES)
    empty = [name for name, value in data.items() if value in ({"totalCount": 0}, [], None)]
    assert not empty, f"a viewer should see these: {empty}"
    # The matrix covers every write; one here, so this test tells the whole story.
    await refused(
        server,
        "FORBIDDEN",
        'mutation($ws: ID!) { createTask(input: {workspaceId: $ws, title: "Nope"}) { id } }',
        {"ws": crew.ws},
        token,
    )


SET_ROLE = "mutation($id: ID!, $role: Role!) { setMemberRole(input: {membershipId: $id, role: $role}) { id role } }"
REMOVE = "mutation($id: ID!) { removeMember(membershipId: $id) }"


async def test_the_last_owner_can_be_neither_demoted_nor_removed(
    server: RunningServer, crew: Crew
) -> None:
    owner, mine = crew.tokens[Role.OWNER], crew.memberships[Role.OWNER]
    for role in ("ADMIN", "MEMBER", "VIEWER"):
        await refused(server, "CONFLICT", SET_ROLE, {"id": mine, "role": role}, owner)
    await refused(server, "CONFLICT", REMOVE, {"id": mine}, owner)
    # With a second owner, the first may step down; then the second is the last one.
    second = crew.memberships[Role.ADMIN]
    assert (await server.ok(SET_ROLE, {"id": second, "role": "OWNER"}, owner))["setMemberRole"][
        "role"
    ] == "OWNER"
    assert (await server.ok(SET_ROLE, {"id": mine, "role": "ADMIN"}, owner))["setMemberRole"][
        "role"
    ] == "ADMIN"
    now_owner = crew.tokens[Role.ADMIN]
    await refused(server, "CONFLICT", SET_ROLE, {"id": second, "role": "MEMBER"}, now_owner)
    await refused(server, "CONFLICT", REMOVE, {"id": second}, now_owner)
    await refused(server, "FORBIDDEN", REMOVE, {"id": second}, owner)  # an admin now


async def test_an_admin_cannot_make_or_unmake_owners(server: RunningServer, crew: Crew) -> None:
    admin = crew.tokens[Role.ADMIN]
    await refused(
        server,
        "FORBIDDEN",
        ADD_MEMBER,
        {"ws": crew.ws, "email": "boss@crew.example", "role": "OWNER"},
        admin,
    )
    await refused(
        server, "FORBIDDEN", SET_ROLE, {"id": crew.memberships[Role.MEMBER], "role": "OWNER"}, admin
    )
    await refused(
        server, "FORBIDDEN", SET_ROLE, {"id": crew.memberships[Role.ADMIN], "role": "OWNER"}, admin
    )
    await refused(
        server, "FORBIDDEN", SET_ROLE, {"id": crew.memberships[Role.OWNER], "role": "ADMIN"}, admin
    )
    await refused(server, "FORBIDDEN", REMOVE, {"id": crew.memberships[Role.OWNER]}, admin)
    # What an admin may not do, an owner may.
    added = await server.ok(
        ADD_MEMBER,
        {"ws": crew.ws, "email": "boss@crew.example", "role": "OWNER"},
        crew.tokens[Role.OWNER],
    )
    assert added["addMember"]["role"] == "OWNER"


async def test_an_outsider_finds_nothing(server: RunningServer, crew: Crew) -> None:
    outsider = await server.token_for("outsider@elsewhere.example")
    for query, variables in [
        ("query($id: ID!) { workspace(id: $id) { name } }", {"id": crew.ws}),
        ("query($id: ID!) { tasks(workspaceId: $id) { totalCount } }", {"id": crew.ws}),
        ("query($id: ID!) { task(id: $id) { title } }", {"id": crew.refs["task"]}),
        (
            'mutation($id: ID!) { createTask(input: {workspaceId: $id, title: "x"}) { id } }',
            {"id": crew.ws},
        ),
        ('mutation($id: ID!) { renameWorkspace(id: $id, name: "Mine") { id } }', {"id": crew.ws}),
        (ADD_MEMBER, {"ws": crew.ws, "email": "outsider@elsewhere.example", "role": "OWNER"}),
    ]:
        await refused(server, "NOT_FOUND", query, variables, outsider)
    assert (await server.ok("{ workspaces { id } }", None, outsider))["workspaces"] == []


async def test_an_anonymous_caller_is_unauthenticated(server: RunningServer, crew: Crew) -> None:
    for query, variables in [
        ("{ me { id } }", {}),
        ("{ workspaces { id } }", {}),
        ("{ apiTokens { id } }", {}),
        ("query($id: ID!) { workspace(id: $id) { name } }", {"id": crew.ws}),
        ("query($id: ID!) { tasks(workspaceId: $id) { totalCount } }", {"id": crew.ws}),
        (
            'mutation($id: ID!) { createTask(input: {workspaceId: $id, title: "x"}) { id } }',
            {"id": crew.ws},
        ),
        ('mutation { createWorkspace(input: {name: "Anon"}) { id } }', {}),
        ('mutation { createApiToken(input: {name: "anon"}) { token } }', {}),
    ]:
        await refused(server, "UNAUTHENTICATED", query, variables, None)
    # Signing in starts anonymously, and stays open.
    assert (await server.ok('mutation { requestMagicLink(email: "x@crew.example") }'))[
        "requestMagicLink"
    ] is True


async def test_a_revoked_or_expired_token_is_unauthenticated(
    server: RunningServer, crew: Crew
) -> None:
    main = crew.tokens[Role.MEMBER]
    created = (
        await server.ok(
            'mutation { createApiToken(input: {name: "laptop"}) { token apiToken { id } } }',
            None,
            main,
        )
    )["createApiToken"]
    second, second_id = created["token"], created["apiToken"]["id"]
    me = "{ me { email } }"
    assert (await server.ok(me, None, second))["me"] == {"email": email(Role.MEMBER)}
    revoked = await server.ok(
        "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }", {"id": second_id}, main
    )
    assert revoked["revokeApiToken"]["revokedAt"] is not None
    task = 'mutation($id: ID!) { createTask(input: {workspaceId: $id, title: "x"}) { id } }'
    await refused(server, "UNAUTHENTICATED", me, {}, second)
    await refused(server, "UNAUTHENTICATED", task, {"id": crew.ws}, second)
    # Another person cannot revoke this one's token: for them it does not exist.
    await refused(
        server,
        "NOT_FOUND",
        "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
        {"id": second_id},
        crew.tokens[Role.OWNER],
    )
    async with server.state.session_factory() as s:
        await s.execute(
            sa.update(m.ApiToken)
            .where(m.ApiToken.user_id == uuid.UUID(crew.users[Role.VIEWER]))
            .values(expires_at=m.utcnow() - timedelta(seconds=1))
        )
        await s.commit()
    await refused(server, "UNAUTHENTICATED", me, {}, crew.tokens[Role.VIEWER])
    await refused(server, "UNAUTHENTICATED", me, {}, "tm_pat_" + secrets.token_urlsafe(32))
    # The member's own first token still works.
    assert (await server.ok(me, None, main))["me"] == {"email": email(Role.MEMBER)}
