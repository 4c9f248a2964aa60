"""An integration signs in with a token, builds a workspace, and watches a task change live."""

from __future__ import annotations

import asyncio

from tests.api.gqlclient import Subscription, execute, http_session, ws_session
from tests.conftest import RunningServer

CREATE_WORKSPACE = (
    "mutation($name: String!) { createWorkspace(input: {name: $name}) { id slug viewerRole } }"
)
CREATE_AGENT = """mutation($ws: ID!) { createAgent(workspaceId: $ws, profile: {name: "Builder Bot"}) {
  id handle concurrencyLimit } }"""
CREATE_TASK = """mutation($ws: ID!, $title: String!) {
  createTask(input: {workspaceId: $ws, title: $title, priority: HIGH, tags: ["backend"]}) {
    id number status priority tags } }"""
BOARD = """subscription($ws: ID!) { boardChanged(workspaceId: $ws) {
  kind task { id title status assignee { __typename ... on Agent { handle } } } } }"""
TIMELINE = """subscription($task: ID!) { taskTimeline(taskId: $task) { kind data actor {
  ... on User { email } } } }"""


async def test_token_workspace_agent_task_and_live_subscription(server: RunningServer) -> None:
    token = await server.token_for("ada@example.com")
    # The Python client, signed in with the token, builds the workspace.
    async with http_session(f"{server.url}/graphql", token) as client:
        ws = (await execute(client, CREATE_WORKSPACE, {"name": "Acme"}))["createWorkspace"]
        assert ws["viewerRole"] == "OWNER" and ws["slug"] == "acme"
        agent = (await execute(client, CREATE_AGENT, {"ws": ws["id"]}))["createAgent"]
        assert agent["handle"] == "builder-bot" and agent["concurrencyLimit"] == 1
        task = (await execute(client, CREATE_TASK, {"ws": ws["id"], "title": "Ship it"}))[
            "createTask"
        ]
    assert task["number"] == 1 and task["status"] == "TODO" and task["tags"] == ["backend"]

    async with ws_session(server.ws_url, token) as session:
        board = Subscription(session, BOARD, {"ws": ws["id"]})
        timeline = Subscription(session, TIMELINE, {"task": task["id"]})
        await asyncio.sleep(0.2)  # let both subscriptions register
        await server.ok(
            "mutation($t: ID!, $a: ID!) { assignTask(input: {taskId: $t, agentId: $a}) { id } }",
            {"t": task["id"], "a": agent["id"]},
            token,
        )
        await server.ok(
            "mutation($t: ID!) { setTaskStatus(taskId: $t, status: IN_PROGRESS) { id } }",
            {"t": task["id"]},
            token,
        )
        first = (await board.next())["boardChanged"]
        assert first["kind"] == "ASSIGNED"
        # Assigning an agent queues its run; that is on the board too.
        assert (await board.next())["boardChanged"]["kind"] == "RUN"
        assert first["task"]["assignee"] == {"__typename": "Agent", "handle": "builder-bot"}
        second = (await board.next())["boardChanged"]
        assert second["kind"] == "STATUS_CHANGED" and second["task"]["status"] == "IN_PROGRESS"
        entries = [(await timeline.next())["taskTimeline"] for _ in range(3)]
        assert [e["kind"] for e in entries] == ["ASSIGNED", "RUN", "STATUS_CHANGED"]
        assert entries[2]["data"] == {"from": "todo", "to": "in_progress"}
        assert entries[2]["actor"] == {"email": "ada@example.com"}
        await board.close()
        await timeline.close()


async def test_failed_mutation_publishes_nothing_and_changes_nothing(server: RunningServer) -> None:
    token = await server.token_for("bob@example.com")
    ws = (await server.ok(CREATE_WORKSPACE, {"name": "Quiet"}, token))["createWorkspace"]
    task = (await server.ok(CREATE_TASK, {"ws": ws["id"], "title": "Stay"}, token))["createTask"]
    async with ws_session(server.ws_url, token) as session:
        board = Subscription(session, BOARD, {"ws": ws["id"]})
        await asyncio.sleep(0.2)
        # Two root fields in one request: the second fails, so the first is rolled back too.
        body = await server.graphql(
            """mutation($t: ID!) {
                a: setTaskStatus(taskId: $t, status: DONE) { id }
                b: updateTask(input: {taskId: $t, title: ""}) { id }
            }""",
            {"t": task["id"]},
            token,
        )
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "title"}
        try:
            event = await board.next(wait=0.5)
        except TimeoutError:
            event = None
        assert event is None
        await board.close()
    data = await server.ok(
        "query($t: ID!) { task(id: $t) { status title } }", {"t": task["id"]}, token
    )
    assert data["task"] == {"status": "TODO", "title": "Stay"}
