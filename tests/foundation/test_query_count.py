"""DataLoaders keep a board's SQL statement count constant, whatever its size."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from taskmachine import models as m
from tests.conftest import RunningServer

BOARD = """query($w: ID!, $n: Int!) { tasks(workspaceId: $w, first: $n) {
  totalCount
  edges { node {
    id number title status priority tags commentCount
    assignee { __typename ... on User { name email } ... on Agent { name handle } }
    createdBy { ... on User { name } }
    project { name }
  } }
  pageInfo { hasNextPage endCursor }
} }"""


async def _populate(server: RunningServer, tasks: int) -> tuple[str, str]:
    token = await server.token_for(f"owner{tasks}@example.com")
    ws_id = (
        await server.ok('mutation { createWorkspace(input: {name: "Big"}) { id } }', token=token)
    )["createWorkspace"]["id"]
    import uuid

    wid = uuid.UUID(ws_id)
    async with server.state.session_factory() as session:
        users = [m.User(email=f"u{i}-{tasks}@example.com", name=f"User {i}") for i in range(5)]
        agents = [
            m.Agent(workspace_id=wid, name=f"Agent {i}", handle=f"agent-{i}") for i in range(5)
        ]
        project = m.Project(workspace_id=wid, name="Core")
        session.add_all([*users, *agents, project])
        await session.flush()
        session.add_all(
            m.Membership(workspace_id=wid, user_id=u.id, role=m.Role.MEMBER) for u in users
        )
        rows = []
        for i in range(tasks):
            task = m.Task(
                workspace_id=wid,
                number=i + 1,
                title=f"Task {i}",
                project_id=project.id,
                assignee_user_id=users[i % 5].id if i % 2 else None,
                assignee_agent_id=None if i % 2 else agents[i % 5].id,
                created_by_user_id=users[0].id,
            )
            rows.append(task)
        session.add_all(rows)
        await session.flush()
        for i, task in enumerate(rows):
            session.add(m.TaskTag(task_id=task.id, tag=f"t{i % 3}"))
            for c in range(i % 3):
                session.add(
                    m.Comment(
                        workspace_id=wid, task_id=task.id, author_user_id=users[0].id, body=f"c{c}"
                    )
                )
        await session.commit()
    return token, ws_id


async def _count_statements(
    server: RunningServer, token: str, ws_id: str, n: int
) -> tuple[int, dict[str, Any]]:
    engine = server.state.services["engine"].sync_engine
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        data = await server.ok(BOARD, {"w": ws_id, "n": n}, token)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # Authentication (token lookup and last-used stamp) is per request, not per row.
    return len([s for s in statements if "api_tokens" not in s]), data


async def test_board_of_200_tasks_costs_a_small_constant(server: RunningServer) -> None:
    small_token, small_ws = await _populate(server, 20)
    big_token, big_ws = await _populate(server, 200)
    small, _ = await _count_statements(server, small_token, small_ws, 20)
    big, data = await _count_statements(server, big_token, big_ws, 200)
    edges = data["tasks"]["edges"]
    assert len(edges) == 200 and data["tasks"]["totalCount"] == 200
    assert {e["node"]["assignee"]["__typename"] for e in edges} == {"User", "Agent"}
    assert sum(e["node"]["commentCount"] for e in edges) == sum(i % 3 for i in range(200))
    assert all(len(e["node"]["tags"]) == 1 for e in edges)
    assert big == small, f"statement count grows with the board: {small} for 20, {big} for 200"
    assert big <= 12, f"{big} statements for one board"
