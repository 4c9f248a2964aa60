"""Workspace isolation: what belongs to workspace B stays in B.

Alice owns workspace A and bob owns workspace B; each holds one of everything (down to a
machine with its runtime, approval and tokens, a run on it, and its transcript). As alice, every
root query, mutation and subscription is called with B's ids in every id argument, and with
A's workspace holding B's referenced ids (A's task with B's project, B's agent tagged in A's
comment, …). Each answers NOT_FOUND (or the documented code), no B data appears in any answer
(every field is asked for, three objects deep), and every row of B is the same afterwards,
value for value. A's machine (its access token) and A's agent (its run token) are then held to
the same boundary.

A twin of each probe, with A's ids in place of B's, must then succeed: it proves that the
refusal comes from the workspace boundary and not from a broken probe. A static test fails when
a root field, or an id argument of one, is added to the schema without a probe here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cache
from typing import Any

import pytest
import sqlalchemy as sa
from gql import GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from graphql import (
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
    is_leaf_type,
    is_required_argument,
    parse,
    validate,
)
from graphql import build_schema as parse_sdl

from taskmachine import models as m
from taskmachine.auth import tokens
from taskmachine.auth.principal import Principal
from taskmachine.dispatcher.broker_admin import BrokerAdmin
from taskmachine.dispatcher.link import BrokerLink
from taskmachine.domain import agents, chats, comments, people, projects, runs, tasks, workspaces
from taskmachine.schema.pagination import encode_cursor
from taskmachine.schema.root import build_schema
from taskmachine.schema.state import AppState
from taskmachine.server import ServerOptions
from taskmachine.settings import Settings
from tests.api.gqlclient import ws_session
from tests.conftest import RunningServer, start_server, stop_server

ALICE, CAROL = "alice@alpha.example", "carol@alpha.example"
BOB, DAVE = "bob@bravo.example", "dave@bravo.example"
NEWCOMER = "newcomer@elsewhere.example"
# Every text of B carries this marker, so any B text in an answer is caught.
B_MARK = "zq-bravo-secret"


# -- what a probe refers to --------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A row of workspace A or B, resolved to its id (or slug, or cursor) when the probe runs."""

    side: str
    name: str
    cursor: bool = False


def a(name: str) -> Ref:
    return Ref("A", name)


def b(name: str) -> Ref:
    return Ref("B", name)


def cursor(ref: Ref) -> Ref:
    return replace(ref, cursor=True)


Check = Callable[[Any], None]


def empty(value: Any) -> None:
    assert value["edges"] == [] and value["totalCount"] == 0, value


@dataclass(frozen=True)
class Probe:
    field: str
    args: dict[str, Any]
    code: str | None = "NOT_FOUND"  # None: must succeed (and show nothing of B)
    check: Check | None = None
    # What the probe answers with A's ids in place of B's: "ok", an error code, or None to skip.
    twin: str | None = "ok"
    # Who calls: alice, or A's machine with its access token.
    caller: str = "alice"


Q, M, S = "query", "mutation", "subscription"

PROBES: dict[str, list[Probe]] = {
    Q: [
        Probe("me", {}, None, lambda v: _eq(v["email"], ALICE)),
        # Only a run's own token has a run context.
        Probe("runContext", {}, "FORBIDDEN", twin="FORBIDDEN"),
        Probe("workspaces", {}, None, lambda v: _eq(len(v), 1)),
        Probe("workspace", {"id": b("ws")}),
        Probe("members", {"workspaceId": b("ws")}),
        Probe("apiTokens", {}, None, lambda v: _eq(len(v), 2)),
        Probe("permissionKeys", {}, None),
        Probe("agents", {"workspaceId": b("ws")}),
        Probe("agent", {"id": b("agent")}),
        Probe("teams", {"workspaceId": b("ws")}),
        Probe("team", {"id": b("team")}),
        Probe("tasks", {"workspaceId": b("ws")}),
        Probe(
            "tasks", {"workspaceId": a("ws"), "filter": {"assigneeUserId": b("owner")}}, None, empty
        ),
        Probe(
            "tasks",
            {"workspaceId": a("ws"), "filter": {"assigneeAgentId": b("agent")}},
            None,
            empty,
        ),
        Probe(
            "tasks", {"workspaceId": a("ws"), "filter": {"projectId": b("project")}}, None, empty
        ),
        Probe("tasks", {"workspaceId": a("ws"), "filter": {"goalId": b("goal")}}, None, empty),
        Probe("tasks", {"workspaceId": a("ws"), "filter": {"parentId": b("task")}}, None, empty),
        Probe("tasks", {"workspaceId": a("ws"), "after": cursor(b("task"))}, None),
        Probe("task", {"id": b("task")}),
        Probe("task", {"id": b("subtask")}),
        Probe("taskByNumber", {"workspaceId": b("ws"), "number": 1}),
        Probe("projects", {"workspaceId": b("ws"), "includeArchived": True}),
        Probe("project", {"id": b("project")}),
        Probe("goals", {"workspaceId": b("ws")}),
        Probe("goals", {"workspaceId": a("ws"), "projectId": b("project")}, None, empty),
        Probe("goal", {"id": b("goal")}),
        Probe("comments", {"taskId": b("task")}),
        Probe("comments", {"taskId": b("task"), "threadId": a("comment")}),
        Probe("comments", {"taskId": a("task"), "threadId": b("comment")}, None, empty),
        Probe("timeline", {"taskId": b("task")}),
        Probe("chats", {"workspaceId": b("ws")}),
        Probe("chats", {"workspaceId": a("ws"), "agentId": b("agent")}, None, empty),
        Probe("chat", {"id": b("chat")}),
        Probe("chatMessages", {"chatId": b("chat")}),
        Probe("inbox", {"workspaceId": b("ws")}),
        # Alice was once a member of B and still has an inbox item there: it must not show.
        Probe("inbox", {}, None, lambda v: _eq(v["totalCount"], 1)),
        Probe("runs", {"workspaceId": b("ws")}),
        Probe("runs", {"workspaceId": a("ws"), "filter": {"taskId": b("task")}}, None, empty),
        Probe("runs", {"workspaceId": a("ws"), "filter": {"chatId": b("chat")}}, None, empty),
        Probe("runs", {"workspaceId": a("ws"), "filter": {"agentId": b("agent")}}, None, empty),
        Probe("run", {"id": b("run")}),
        Probe("transcript", {"runId": b("run")}),
        Probe("machines", {"workspaceId": b("ws")}),
        Probe("machine", {"id": b("machine")}),
        # A machine serving A and B shows alice only A's side of it.
        Probe("machines", {"workspaceId": a("ws")}, None, lambda v: _eq(v["totalCount"], 2)),
        Probe("machine", {"id": a("shared")}, None),
        Probe("runtimes", {"workspaceId": b("ws")}),
        Probe("thisMachine", {}, "FORBIDDEN"),  # a person's token is not a machine's
        Probe("machineApproval", {"code": b("approved_code")}),
    ],
    M: [
        # Always true, so that addresses cannot be probed.
        Probe("requestMagicLink", {"email": BOB}, None, lambda v: _eq(v, True)),
        Probe("createApiToken", {"input": {"name": "probe"}}, None),
        Probe("revokeApiToken", {"id": b("api_token")}),
        Probe("updateProfile", {"name": "Alice A."}, None),
        Probe("createWorkspace", {"input": {"name": "Alpha two"}}, None),
        # Slugs are global: taking B's is a documented CONFLICT, and it discloses only the slug.
        Probe(
            "createWorkspace",
            {"input": {"name": "x", "slug": b("slug")}},
            "CONFLICT",
            twin="CONFLICT",
        ),
        Probe("renameWorkspace", {"id": b("ws"), "name": "Renamed"}),
        Probe("addMember", {"input": {"workspaceId": b("ws"), "email": NEWCOMER}}),
        Probe(
            "addMember",
            {"input": {"workspaceId": b("ws"), "email": ALICE, "role": "OWNER"}},
            twin="CONFLICT",  # alice already belongs to A
        ),
        Probe("setMemberRole", {"input": {"membershipId": b("membership"), "role": "VIEWER"}}),
        Probe("removeMember", {"membershipId": b("membership")}),
        Probe("createAgent", {"workspaceId": b("ws"), "profile": {"name": "Probe one"}}),
        Probe(
            "createAgent",
            {
                "workspaceId": a("ws"),
                "profile": {"name": "Probe two", "defaultRuntimeId": b("runtime")},
            },
        ),
        Probe("updateAgent", {"id": b("agent"), "profile": {"memory": "overwritten"}}),
        Probe("updateAgent", {"id": a("agent"), "profile": {"defaultRuntimeId": b("runtime")}}),
        Probe("createTeam", {"workspaceId": b("ws"), "team": {"name": "Probe team one"}}),
        Probe(
            "createTeam",
            {"workspaceId": a("ws"), "team": {"name": "Probe team two", "leadAgentId": b("agent")}},
        ),
        Probe(
            "createTeam",
            {
                "workspaceId": a("ws"),
                "team": {"name": "Probe team three", "memberAgentIds": [a("agent"), b("agent")]},
            },
        ),
        Probe("updateTeam", {"id": b("team"), "team": {"name": "Renamed"}}),
        Probe("updateTeam", {"id": a("team"), "team": {"leadAgentId": b("agent")}}),
        Probe("updateTeam", {"id": a("team"), "team": {"memberAgentIds": [b("agent")]}}),
        Probe("createTask", {"input": {"workspaceId": b("ws"), "title": "Probe"}}),
        Probe(
            "createTask",
            {"input": {"workspaceId": a("ws"), "title": "Probe", "projectId": b("project")}},
        ),
        Probe(
            "createTask", {"input": {"workspaceId": a("ws"), "title": "Probe", "goalId": b("goal")}}
        ),
        Probe(
            "createTask",
            {"input": {"workspaceId": a("ws"), "title": "Probe", "parentId": b("task")}},
        ),
        Probe(
            "createTask",
            {"input": {"workspaceId": a("ws"), "title": "Probe", "assigneeUserId": b("owner")}},
        ),
        Probe(
            "createTask",
            {"input": {"workspaceId": a("ws"), "title": "Probe", "assigneeAgentId": b("agent")}},
        ),
        Probe("updateTask", {"input": {"taskId": b("task"), "title": "Renamed"}}),
        Probe("updateTask", {"input": {"taskId": a("task"), "projectId": b("project")}}),
        Probe("updateTask", {"input": {"taskId": a("task"), "goalId": b("goal")}}),
        Probe("assignTask", {"input": {"taskId": b("task")}}),
        Probe("assignTask", {"input": {"taskId": a("task"), "userId": b("owner")}}),
        Probe("assignTask", {"input": {"taskId": a("task"), "agentId": b("agent")}}),
        Probe("setTaskStatus", {"taskId": b("task"), "status": "DONE"}),
        Probe("setTaskPriority", {"taskId": b("task"), "priority": "URGENT"}),
        Probe("createProject", {"workspaceId": b("ws"), "name": "Probe"}),
        Probe("updateProject", {"id": b("project"), "archived": True}),
        Probe("createGoal", {"input": {"workspaceId": b("ws"), "title": "Probe"}}),
        Probe(
            "createGoal",
            {"input": {"workspaceId": a("ws"), "title": "Probe", "projectId": b("project")}},
        ),
        Probe(
            "createGoal",
            {"input": {"workspaceId": a("ws"), "title": "Probe", "leadAgentId": b("agent")}},
        ),
        Probe("updateGoal", {"id": b("goal"), "status": "ABANDONED"}),
        Probe("postComment", {"input": {"taskId": b("task"), "body": "probe"}}),
        Probe(
            "postComment",
            {"input": {"taskId": a("task"), "body": "probe", "parentId": b("comment")}},
        ),
        Probe(
            "postComment", {"input": {"taskId": a("task"), "body": "probe", "parentId": b("reply")}}
        ),
        Probe(
            "postComment",
            {"input": {"taskId": a("task"), "body": "probe", "agentIds": [b("agent")]}},
        ),
        Probe(
            "postComment", {"input": {"taskId": a("task"), "body": "probe", "teamIds": [b("team")]}}
        ),
        Probe("react", {"commentId": b("comment"), "emoji": "👍"}),
        Probe("react", {"commentId": b("comment"), "emoji": "🎉", "on": False}),
        Probe("createChat", {"workspaceId": b("ws"), "agentId": b("agent")}),
        Probe("createChat", {"workspaceId": a("ws"), "agentId": b("agent")}),
        Probe("createChat", {"workspaceId": b("ws"), "agentId": a("agent")}),
        Probe("sendChatMessage", {"chatId": b("chat"), "body": "probe"}),
        Probe("updateInboxItem", {"id": b("inbox"), "read": True, "resolved": True}),
        Probe("updateInboxItem", {"id": b("alice_inbox"), "read": True}, twin=None),
        Probe("requestMachineApproval", {"input": {"name": "probe box"}}, None),
        # Whoever holds a poll token is the machine; after the hand-off it yields nothing more.
        Probe(
            "pollMachineApproval",
            {"pollToken": b("poll_token")},
            None,
            lambda v: _eq(
                v, {"__typename": "MachineApprovalPoll", "status": "APPROVED", "credentials": None}
            ),
        ),
        Probe(
            "refreshMachineToken",
            {"refreshToken": b("access_token")},
            "UNAUTHENTICATED",
            twin="UNAUTHENTICATED",
        ),
        Probe("approveMachine", {"code": a("pending_code"), "workspaceIds": [b("ws")]}),
        # All or nothing: A's half of the approval does not happen either.
        Probe(
            "approveMachine",
            {"code": a("pending_code"), "workspaceIds": [a("ws"), b("ws")]},
            twin=None,
        ),
        Probe(
            "approveMachine",
            {"code": b("approved_code"), "workspaceIds": [a("ws")]},
            twin="CONFLICT",
        ),
        Probe("denyMachine", {"code": b("approved_code")}, twin="CONFLICT"),
        Probe("setRuntimeEnabled", {"runtimeId": b("runtime"), "enabled": False}),
        Probe("requestMachineUpdate", {"machineId": b("machine")}),
        Probe("claimRun", {"runId": b("run"), "attempt": 1}, "FORBIDDEN", twin="FORBIDDEN"),
        # A's machine cannot take B's run; its twin takes A's own.
        Probe(
            "claimRun",
            {"runId": b("run"), "attempt": 1},
            None,
            lambda v: _eq(v["accepted"], False),
            caller="machine",
        ),
        Probe("cancelRun", {"id": b("run")}),
        Probe("retryRun", {"id": b("done_run")}),
        Probe("setTaskSummary", {"taskId": b("task"), "summary": "probe"}),
        Probe("blockTask", {"taskId": b("task"), "reason": "probe"}),
        Probe("recordNoAction", {"taskId": b("task"), "reason": "probe"}),
        Probe("askQuestion", {"input": {"taskId": b("task"), "question": "probe?"}}),
        Probe("requestApproval", {"input": {"taskId": b("task"), "request": "probe"}}),
        # A's own inbox item is a mention: it takes no answer.
        Probe("answerInboxItem", {"id": b("inbox"), "answer": "probe"}, twin="BAD_USER_INPUT"),
        Probe("decideApproval", {"id": b("inbox"), "approve": True}, twin="BAD_USER_INPUT"),
        # Last: its twin removes A's machine, which earlier twins use.
        Probe("removeMachine", {"machineId": b("machine")}),
    ],
    # A subscription that starts would wait for events, so twins are not run for these.
    S: [
        Probe("boardChanged", {"workspaceId": b("ws")}, twin=None),
        Probe("taskTimeline", {"taskId": b("task")}, twin=None),
        Probe("runTranscript", {"runId": b("run")}, twin=None),
        Probe("runChanged", {"runId": b("run")}, twin=None),
        Probe("chatMessages", {"chatId": b("chat")}, twin=None),
        Probe("machinesChanged", {"workspaceId": b("ws")}, twin=None),
    ],
}


def _eq(actual: Any, expected: Any) -> None:
    assert actual == expected, f"{actual!r} != {expected!r}"


# -- the schema, read the way a client reads it ------------------------------------------------


@cache
def sdl() -> GraphQLSchema:
    return parse_sdl(build_schema(Settings()).as_str())


def root_fields(kind: str) -> dict[str, GraphQLField]:
    root = {Q: sdl().query_type, M: sdl().mutation_type, S: sdl().subscription_type}[kind]
    return dict(root.fields) if root else {}


def id_paths(definition: GraphQLField) -> set[str]:
    """Every argument (or input field, dotted) that takes an ID or a list of IDs."""
    found: set[str] = set()

    def walk(path: str, type_: Any) -> None:
        named = get_named_type(type_)
        if named.name == "ID":
            found.add(path)
        elif isinstance(named, GraphQLInputObjectType):
            for name, inner in named.fields.items():
                walk(f"{path}.{name}", inner.type)

    for name, arg in definition.args.items():
        walk(name, arg.type)
    return found


def b_paths(args: dict[str, Any], prefix: str = "") -> set[str]:
    """The argument paths a probe fills with one of B's ids."""
    found: set[str] = set()
    for name, value in args.items():
        path = prefix + name
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, Ref) and v.side == "B" and not v.cursor for v in values):
            found.add(path)
        if isinstance(value, dict):
            found |= b_paths(value, path + ".")
    return found


def has_b(value: Any) -> bool:
    if isinstance(value, Ref):
        return value.side == "B"
    if isinstance(value, list):
        return any(has_b(v) for v in value)
    if isinstance(value, dict):
        return any(has_b(v) for v in value.values())
    return False


def selection(type_: Any, depth: int) -> str:
    """Every field a caller could ask for, `depth` objects deep: a leak cannot hide unasked."""
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    if isinstance(named, GraphQLUnionType):
        members = " ".join(f"... on {t.name} {selection(t, depth)}" for t in named.types)
        return "{ __typename " + members + " }"
    assert isinstance(named, GraphQLObjectType)
    # Connections and edges are wrappers: they do not spend depth.
    inner_depth = depth if named.name.endswith(("Connection", "Edge")) else depth - 1
    parts = ["__typename"]
    for name, definition in named.fields.items():
        if any(is_required_argument(arg) for arg in definition.args.values()):
            continue
        if is_leaf_type(get_named_type(definition.type)):
            parts.append(name)
        elif inner_depth >= 0:
            parts.append(f"{name} {selection(definition.type, inner_depth)}")
    return "{ " + " ".join(parts) + " }"


def document(kind: str, name: str, args: dict[str, Any], *, wide: bool = True) -> str:
    """The probe as a client sends it: everything `wide`ly, else the field's own values (a
    refusal carries no data, and a narrow document is three times cheaper to serve)."""
    definition = root_fields(kind)[name]
    params = ", ".join(f"${arg}: {definition.args[arg].type}" for arg in args)
    call = ", ".join(f"{arg}: ${arg}" for arg in args)
    head = f"{kind}({params})" if params else kind
    invoke = f"{name}({call})" if call else name
    return f"{head} {{ {invoke} {selection(definition.type, 3 if wide else 0)} }}"


# -- the coverage test: adding a root field or an id argument without a probe fails -----------


def test_every_root_field_and_id_argument_is_probed() -> None:
    missing: list[str] = []
    for kind, probes in PROBES.items():
        fields = root_fields(kind)
        unknown = {p.field for p in probes} - set(fields)
        assert not unknown, f"probes for {kind} fields the schema lacks: {unknown}"
        for name, definition in fields.items():
            mine = [p for p in probes if p.field == name]
            if not mine:
                missing.append(f"{kind} {name}: no probe")
                continue
            probed = set().union(*(b_paths(p.args) for p in mine))
            missing += [
                f"{kind} {name}({path}): no probe with B's id"
                for path in sorted(id_paths(definition) - probed)
            ]
    assert not missing, "add isolation probes for:\n" + "\n".join(missing)


def test_generated_documents_are_valid() -> None:
    for kind, probes in PROBES.items():
        for probe in probes:
            for wide in (True, False):
                text = document(kind, probe.field, probe.args, wide=wide)
                errors = validate(sdl(), parse(text))
                assert not errors, (text, errors)


# -- two populated workspaces ------------------------------------------------------------------


@dataclass
class World:
    token: str
    refs: dict[str, str] = field(default_factory=dict)


async def populate(server: RunningServer, owner_email: str, member_email: str, mark: str) -> World:
    """One of everything, made the way the domain makes it; runs and machines inserted directly."""
    world = World(token=await server.token_for(owner_email))
    async with server.state.session_factory() as s:
        owner = await people.get_or_create_user(s, owner_email)
        me = Principal(user_id=owner.id, via="token")
        ws = await workspaces.create_workspace(s, me, f"{mark} works", None)
        membership = await workspaces.add_member(s, me, ws.id, member_email, m.Role.MEMBER)
        machine = m.Machine(
            name=f"{mark} laptop",
            hostname=f"{mark}.local",
            os="linux",
            owner_user_id=owner.id,
            cli_version="1.0.0",
            execution_root=f"/home/{mark}/work",
            capacity=4,
        )
        s.add(machine)
        await s.flush()
        s.add(m.MachineWorkspace(machine_id=machine.id, workspace_id=ws.id))
        await server.state.services["broker"].create_machine(
            str(machine.id), secrets.token_urlsafe()
        )
        secret = {
            "poll": tokens.new_secret(tokens.APPROVAL_POLL_PREFIX),
            "access": tokens.new_secret(tokens.MACHINE_ACCESS_PREFIX),
            "refresh": tokens.new_secret(tokens.MACHINE_REFRESH_PREFIX),
        }
        codes = {status: secrets.token_hex(4).upper() for status in ("approved", "pending")}
        for status, code in codes.items():
            s.add(
                m.MachineApproval(
                    poll_token_hash=server.state.hasher.hash(secret["poll"] + status),
                    user_code=code,
                    name=f"{mark} laptop",
                    hostname=f"{mark}.local",
                    status=m.ApprovalStatus(status),
                    expires_at=m.utcnow() + timedelta(minutes=10),
                    machine_id=machine.id if status == "approved" else None,
                    decided_by_user_id=owner.id if status == "approved" else None,
                    handoff={"delivered_at": mark} if status == "approved" else None,
                )
            )
        for kind in ("access", "refresh"):
            s.add(
                m.MachineToken(
                    machine_id=machine.id,
                    kind=kind,
                    token_hash=server.state.hasher.hash(secret[kind]),
                    expires_at=m.utcnow() + timedelta(hours=1),
                )
            )
        runtime = m.Runtime(
            machine_id=machine.id,
            name="claude",
            provider="anthropic",
            path=f"/opt/{mark}/claude",
            version="2.1.329",
            capabilities={"models": [f"{mark}-model"]},
            enabled=True,
        )
        s.add(runtime)
        await s.flush()
        agent = await agents.create_agent(
            s,
            me,
            ws.id,
            agents.AgentChanges(
                name=f"{mark} agent",
                summary=mark,
                instructions=mark,
                memory=mark,
                default_runtime_id=runtime.id,
            ),
        )
        team = await agents.create_team(
            s,
            me,
            ws.id,
            agents.TeamChanges(
                name=f"{mark} team", lead_agent_id=agent.id, member_agent_ids=[agent.id]
            ),
        )
        project = await projects.create_project(s, me, ws.id, f"{mark} project", mark)
        goal = await projects.create_goal(s, me, ws.id, f"{mark} goal", mark, project.id, agent.id)
        task = await tasks.create_task(
            s,
            me,
            ws.id,
            tasks.NewTask(
                title=f"{mark} task",
                description=mark,
                project_id=project.id,
                goal_id=goal.id,
                tags=[mark],
            ),
        )
        await tasks.assign_task(s, me, task.id, None, agent.id)
        subtask = await tasks.create_task(
            s, me, ws.id, tasks.NewTask(title=f"{mark} subtask", parent_id=task.id)
        )
        comment = await comments.post_comment(
            s, me, task.id, f"{mark} comment", None, [agent.id], [team.id]
        )
        reply = await comments.post_comment(s, me, task.id, f"{mark} reply", comment.id)
        await comments.react(s, me, comment.id, "🎉", True)
        chat = await chats.create_chat(s, me, ws.id, agent.id, f"{mark} chat")
        message = await chats.post_message(s, me, chat.id, f"{mark} message")
        run = m.Run(
            workspace_id=ws.id,
            agent_id=agent.id,
            task_id=task.id,
            trigger_kind=m.TriggerKind.ASSIGNMENT,
            input=mark,
            compiled_prompt=mark,
            runtime_id=runtime.id,
            machine_id=machine.id,
            status=m.RunStatus.DISPATCHED,
            session_id=mark,
            token_nonce=secrets.token_hex(8),
        )
        done = m.Run(
            workspace_id=ws.id,
            agent_id=agent.id,
            task_id=task.id,
            trigger_kind=m.TriggerKind.MANUAL,
            input=mark,
            machine_id=machine.id,
            status=m.RunStatus.SUCCEEDED,
        )
        s.add_all([run, done])
        await s.flush()
        s.add(m.RunTransition(run_id=run.id, attempt=1, to_status=m.RunStatus.QUEUED, reason=mark))
        s.add(
            m.TranscriptChunk(
                run_id=run.id, attempt=1, seq=0, events=[{"type": "text", "text": mark}]
            )
        )
        inbox = m.InboxItem(
            workspace_id=ws.id,
            user_id=owner.id,
            kind=m.InboxKind.MENTION,
            title=mark,
            body=mark,
            task_id=task.id,
            run_id=run.id,
            agent_id=agent.id,
            machine_id=machine.id,
            data={"mark": mark},
        )
        s.add(inbox)
        spare, _ = await people.create_api_token(
            s, server.state.hasher, owner.id, f"{mark} spare", None
        )
        await s.flush()
        world.refs = {
            "ws": str(ws.id),
            "slug": ws.slug,
            "owner": str(owner.id),
            "member_user": str(membership.user_id),
            "membership": str(membership.id),
            "machine": str(machine.id),
            "runtime": str(runtime.id),
            "agent": str(agent.id),
            "team": str(team.id),
            "project": str(project.id),
            "goal": str(goal.id),
            "task": str(task.id),
            "subtask": str(subtask.id),
            "comment": str(comment.id),
            "reply": str(reply.id),
            "chat": str(chat.id),
            "message": str(message.id),
            "run": str(run.id),
            "done_run": str(done.id),
            # The agent's token while its run is on the machine.
            "run_token": runs.run_token(server.state.hasher, run),
            "inbox": str(inbox.id),
            "api_token": str(spare.id),
            "approved_code": codes["approved"],
            "pending_code": codes["pending"],
            "poll_token": secret["poll"] + "approved",
            "access_token": secret["access"],
        }
        await s.commit()
    return world


async def leave_alice_an_inbox_item_in_b(server: RunningServer, alpha: World, bravo: World) -> None:
    """Alice was a member of B, got mentioned there, and was removed: the item stays hers."""
    async with server.state.session_factory() as s:
        bob = Principal(user_id=uuid.UUID(bravo.refs["owner"]), via="token")
        ws_id = uuid.UUID(bravo.refs["ws"])
        membership = await workspaces.add_member(s, bob, ws_id, ALICE, m.Role.MEMBER)
        item = m.InboxItem(
            workspace_id=ws_id,
            user_id=uuid.UUID(alpha.refs["owner"]),
            kind=m.InboxKind.MENTION,
            title=f"{B_MARK} mention",
            task_id=uuid.UUID(bravo.refs["task"]),
            agent_id=uuid.UUID(bravo.refs["agent"]),
        )
        s.add(item)
        await s.flush()
        await workspaces.remove_member(s, bob, membership.id)
        bravo.refs["alice_inbox"] = str(item.id)
        await s.commit()


async def share_a_machine(server: RunningServer, alpha: World, bravo: World) -> None:
    """A machine approved into both workspaces, by someone who manages machines in both."""
    async with server.state.session_factory() as s:
        machine = m.Machine(name="shared box", hostname="shared.local", cli_version="1.0.0")
        s.add(machine)
        await s.flush()
        for world in (alpha, bravo):
            s.add(
                m.MachineWorkspace(machine_id=machine.id, workspace_id=uuid.UUID(world.refs["ws"]))
            )
        alpha.refs["shared"] = str(machine.id)
        await s.commit()


class BrokerLinkOnly:
    """The server's real broker link, and none of the dispatcher's background loops: while
    rows are compared, nothing but the caller may change them."""

    def __init__(self) -> None:
        self.link: BrokerLink | None = None

    async def start(self, state: AppState) -> None:
        settings = state.settings
        self.link = BrokerLink(settings.amqp_url, BrokerAdmin.from_settings(settings))
        await self.link.start()
        state.services["broker"] = self.link

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()


@contextlib.asynccontextmanager
async def broker_backed(settings: Settings) -> AsyncIterator[RunningServer]:
    """A server that can approve, update and cancel on machines (they need the broker)."""
    running = await start_server(
        settings, ServerOptions(migrate_on_start=False, components=[BrokerLinkOnly()])
    )
    try:
        yield running
    finally:
        # Machine users are global to the broker; the queues go with the test's vhost.
        async with running.state.session_factory() as s:
            machine_ids = (await s.scalars(sa.select(m.Machine.id))).all()
        async with BrokerAdmin.from_settings(settings) as admin:
            for machine_id in machine_ids:
                await admin.remove_machine_user(str(machine_id))
        await stop_server(running)


@pytest.fixture
async def fleet_server(broker_settings: Settings) -> AsyncIterator[RunningServer]:
    async with broker_backed(broker_settings) as running:
        yield running


# -- B's rows, before and after ----------------------------------------------------------------

Rows = dict[str, list[tuple[Any, ...]]]
# Where each table keeps its own id (None for link tables, which have none).
ID_COLUMN = {
    t.name: (list(t.c.keys()).index("id") if "id" in t.c else None)
    for t in m.Base.metadata.sorted_tables
}


async def all_rows(server: RunningServer) -> Rows:
    async with server.state.session_factory() as s:
        return {
            table.name: [tuple(r) for r in (await s.execute(sa.select(table))).all()]
            for table in m.Base.metadata.sorted_tables
        }


def _mentions(row: tuple[Any, ...], ids: Iterable[str]) -> bool:
    text = " ".join(str(v) for v in row)
    return any(i in text for i in ids)


def rows_of(everything: Rows, ids: set[str]) -> Rows:
    """Rows that name any of these ids, in any column (JSON included), in a stable order."""
    return {
        name: sorted((r for r in rows if _mentions(r, ids)), key=repr)
        for name, rows in everything.items()
    }


def closure(everything: Rows, seeds: set[str]) -> set[str]:
    """B's ids: the seeds, then every row that names one of them, until nothing new appears."""
    ids = set(seeds)
    while True:
        found = {
            str(row[index])
            for name, rows in rows_of(everything, ids).items()
            if (index := ID_COLUMN[name]) is not None
            for row in rows
        }
        if found <= ids:
            return ids
        ids |= found


# -- the test ----------------------------------------------------------------------------------


def resolve(value: Any, worlds: dict[str, World]) -> Any:
    if isinstance(value, Ref):
        raw = worlds[value.side].refs[value.name]
        return encode_cursor(uuid.UUID(raw)) if value.cursor else raw
    if isinstance(value, list):
        return [resolve(v, worlds) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, worlds) for k, v in value.items()}
    return value


def swap_to_a(value: Any) -> Any:
    if isinstance(value, Ref):
        return replace(value, side="A")
    if isinstance(value, list):
        return [swap_to_a(v) for v in value]
    if isinstance(value, dict):
        return {k: swap_to_a(v) for k, v in value.items()}
    return value


# Any of these refuses a caller; "any" accepts whatever answer leaks nothing.
REFUSED = "NOT_FOUND|FORBIDDEN|UNAUTHENTICATED"


class Judge:
    """Collects every failure, so one run shows them all."""

    def __init__(self, b_data: set[str]) -> None:
        self.b_data = b_data
        self.failures: list[str] = []

    def judge(
        self,
        kind: str,
        probe: Probe,
        variables: dict[str, Any],
        body: dict[str, Any],
        expect: str | None,
    ) -> None:
        label = f"{kind} {probe.field}({json.dumps(variables, ensure_ascii=False)})"
        text = json.dumps(body, ensure_ascii=False)
        sent = json.dumps(variables, ensure_ascii=False)
        # What the caller sent is not a leak when it is echoed; anything else of B is.
        leaked = sorted(s for s in self.b_data if s in text and s not in sent)
        if leaked:
            self.failures.append(f"{label} leaked B data {leaked[:3]}: {text[:600]}")
        errors = body.get("errors") or []
        if expect == "any":
            return
        if expect is None or expect == "ok":
            if errors:
                self.failures.append(f"{label} failed: {errors}")
                return
            if expect is None and probe.check is not None:
                try:
                    probe.check(body["data"][probe.field])
                except AssertionError as exc:
                    self.failures.append(f"{label} answered wrongly: {exc}")
            return
        codes = [e.get("extensions", {}).get("code") for e in errors]
        if not codes or any(c not in expect.split("|") for c in codes):
            self.failures.append(f"{label} expected {expect}, got {codes or body}")


async def subscribe_once(session: Any, text: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The first answer of a subscription; a refused one ends with errors straight away."""
    request = GraphQLRequest(gql(text), variable_values=variables)

    async def first() -> dict[str, Any]:
        async for result in session.subscribe(request):
            return {"data": result}
        return {"data": None}

    try:
        return await asyncio.wait_for(first(), timeout=3)
    except TransportQueryError as exc:
        return {"data": exc.data, "errors": exc.errors}
    except TimeoutError:
        return {"data": "the subscription started and is waiting for B's events"}


def _is_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def test_alice_cannot_see_or_touch_workspace_b(fleet_server: RunningServer) -> None:
    server = fleet_server
    alpha = await populate(server, ALICE, CAROL, "alpha-mark")
    bravo = await populate(server, BOB, DAVE, B_MARK)
    await leave_alice_an_inbox_item_in_b(server, alpha, bravo)
    await share_a_machine(server, alpha, bravo)
    worlds = {"A": alpha, "B": bravo}

    before_all = await all_rows(server)
    b_ids = closure(before_all, {v for v in bravo.refs.values() if _is_id(v)})
    before = rows_of(before_all, b_ids)
    assert sum(len(rows) for rows in before.values()) > 30, "B was not populated"
    b_secrets = {v for v in bravo.refs.values() if not _is_id(v)} | {B_MARK, BOB, DAVE}
    judge = Judge(b_ids | {encode_cursor(uuid.UUID(i)) for i in b_ids} | b_secrets)

    callers = {"alice": alpha.token, "machine": alpha.refs["access_token"]}

    for kind in (Q, M):
        for probe in PROBES[kind]:
            variables = resolve(probe.args, worlds)
            body = await server.graphql(
                document(kind, probe.field, probe.args, wide=probe.code is None),
                variables,
                callers[probe.caller],
            )
            judge.judge(kind, probe, variables, body, probe.code)
    async with ws_session(server.ws_url, alpha.token) as session:
        for probe in PROBES[S]:
            variables = resolve(probe.args, worlds)
            body = await subscribe_once(session, document(S, probe.field, probe.args), variables)
            judge.judge(S, probe, variables, body, probe.code)

    # A's agent, inside its run, is held to the same boundary. What refuses it may differ (an
    # agent has no inbox, cannot approve machines…), but it must be refused.
    agent = alpha.refs["run_token"]
    seen = await server.ok(
        "query($id: ID!) { task(id: $id) { id } }", {"id": alpha.refs["task"]}, agent
    )
    assert seen["task"]["id"] == alpha.refs["task"], "the agent's run token does not work"
    for kind in (Q, M):
        for probe in PROBES[kind]:
            if not has_b(probe.args):
                continue
            variables = resolve(probe.args, worlds)
            body = await server.graphql(
                document(kind, probe.field, probe.args, wide=probe.code is None),
                variables,
                agent,
            )
            judge.judge(
                f"{kind} (as A's agent)", probe, variables, body, REFUSED if probe.code else "any"
            )

    # The twins run in A, after every B probe: they prove the probes were well formed.
    for kind in (Q, M):
        for probe in PROBES[kind]:
            if probe.twin is None or not has_b(probe.args):
                continue
            args = swap_to_a(probe.args)
            variables = resolve(args, worlds)
            body = await server.graphql(
                document(kind, probe.field, args, wide=False), variables, callers[probe.caller]
            )
            judge.judge(f"{kind} (twin in A)", probe, variables, body, probe.twin)

    after = rows_of(await all_rows(server), b_ids)
    for name in before:
        if before[name] != after[name]:
            judge.failures.append(
                f"B's rows in {name} changed:\n  before {before[name]}\n  after  {after[name]}"
            )
    assert not judge.failures, "\n".join(judge.failures)
