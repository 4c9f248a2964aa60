"""The `tasks` connection: every filter, cursor paging, and the board's fields as the task shows them."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningServer

CREATE_WORKSPACE = 'mutation { createWorkspace(input: {name: "Board"}) { id } }'
CREATE_AGENT = """mutation($ws: ID!, $name: String!) {
  createAgent(workspaceId: $ws, profile: {name: $name}) { id } }"""
ADD_MEMBER = """mutation($ws: ID!, $email: String!) {
  addMember(input: {workspaceId: $ws, email: $email}) { user { id } } }"""
CREATE_PROJECT = 'mutation($ws: ID!) { createProject(workspaceId: $ws, name: "Core") { id } }'
CREATE_TASK = """mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }"""
COMMENT = 'mutation($t: ID!) { postComment(input: {taskId: $t, body: "hi"}) { id } }'
STATUS = "mutation($t: ID!, $s: TaskStatus!) { setTaskStatus(taskId: $t, status: $s) { id } }"

NODE = """id number title status priority tags commentCount
  assignee { __typename ... on User { id name email } ... on Agent { id handle } }"""
PAGE = f"""query($ws: ID!, $f: TaskFilter, $n: Int, $after: String) {{
  tasks(workspaceId: $ws, filter: $f, first: $n, after: $after) {{
    totalCount edges {{ cursor node {{ {NODE} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
ONE = f"query($id: ID!) {{ task(id: $id) {{ {NODE} }} }}"


async def _workspace(server: RunningServer) -> tuple[str, str, dict[str, Any]]:
    token = await server.token_for("owner@example.com")
    ws = (await server.ok(CREATE_WORKSPACE, token=token))["createWorkspace"]["id"]
    person = (await server.ok(ADD_MEMBER, {"ws": ws, "email": "pat@example.com"}, token))[
        "addMember"
    ]["user"]["id"]
    agent = (await server.ok(CREATE_AGENT, {"ws": ws, "name": "Builder"}, token))["createAgent"][
        "id"
    ]
    project = (await server.ok(CREATE_PROJECT, {"ws": ws}, token))["createProject"]["id"]
    ids: dict[str, Any] = {"person": person, "agent": agent, "project": project}

    async def task(name: str, **fields: Any) -> str:
        data = await server.ok(
            CREATE_TASK, {"input": {"workspaceId": ws, "title": name, **fields}}, token
        )
        ids[name] = data["createTask"]["id"]
        return str(ids[name])

    await task("Fix login", priority="HIGH", tags=["zeta", "Alpha", "with, comma", "émoji ✓"])
    await task("Write docs", assigneeUserId=person, projectId=project)
    await task("Split board", assigneeAgentId=agent, tags=["backend"])
    await task("Child of login", parentId=ids["Fix login"], priority="HIGH")
    await task("Fix cursor", assigneeUserId=person, tags=["backend", "bug"])
    for _ in range(3):
        await server.ok(COMMENT, {"t": ids["Fix login"]}, token)
    await server.ok(COMMENT, {"t": ids["Split board"]}, token)
    await server.ok(STATUS, {"t": ids["Write docs"], "s": "DONE"}, token)
    return token, ws, ids


async def _titles(
    server: RunningServer, token: str, ws: str, f: dict[str, Any] | None
) -> list[str]:
    data = (await server.ok(PAGE, {"ws": ws, "f": f}, token))["tasks"]
    titles = [e["node"]["title"] for e in data["edges"]]
    assert data["totalCount"] == len(titles)
    return titles


async def test_every_filter_selects_its_tasks(server: RunningServer) -> None:
    token, ws, ids = await _workspace(server)
    cases: list[tuple[dict[str, Any] | None, list[str]]] = [
        (None, ["Fix login", "Write docs", "Split board", "Child of login", "Fix cursor"]),
        ({"status": ["TODO"]}, ["Fix login", "Split board", "Child of login", "Fix cursor"]),
        ({"status": ["DONE", "BLOCKED"]}, ["Write docs"]),
        ({"priority": ["HIGH"]}, ["Fix login", "Child of login"]),
        ({"assigneeUserId": ids["person"]}, ["Write docs", "Fix cursor"]),
        ({"assigneeAgentId": ids["agent"]}, ["Split board"]),
        ({"unassigned": True}, ["Fix login", "Child of login"]),
        ({"unassigned": False}, ["Fix login", "Write docs", "Split board", "Child of login", "Fix cursor"]),
        ({"projectId": ids["project"]}, ["Write docs"]),
        ({"parentId": ids["Fix login"]}, ["Child of login"]),
        ({"tag": "BackEnd"}, ["Split board", "Fix cursor"]),
        ({"search": "fix"}, ["Fix login", "Fix cursor"]),
        ({"search": "fix", "tag": "bug", "status": ["TODO"]}, ["Fix cursor"]),
        ({"goalId": ids["project"]}, []),
    ]  # fmt: skip
    for f, expected in cases:
        assert await _titles(server, token, ws, f) == expected, f


async def test_board_fields_match_the_task_itself(server: RunningServer) -> None:
    token, ws, ids = await _workspace(server)
    data = (await server.ok(PAGE, {"ws": ws}, token))["tasks"]
    by_title = {e["node"]["title"]: e["node"] for e in data["edges"]}
    # In the database's tag order (the same as the task's own, checked below).
    assert sorted(by_title["Fix login"]["tags"]) == ["alpha", "with, comma", "zeta", "émoji ✓"]
    assert by_title["Fix login"]["commentCount"] == 3
    assert by_title["Fix login"]["assignee"] is None
    assert by_title["Write docs"]["assignee"] == {
        "__typename": "User",
        "id": ids["person"],
        "name": "pat",
        "email": "pat@example.com",
    }
    assert by_title["Split board"]["assignee"] == {
        "__typename": "Agent",
        "id": ids["agent"],
        "handle": "builder",
    }
    assert by_title["Split board"]["commentCount"] == 1
    assert by_title["Write docs"]["tags"] == [] and by_title["Write docs"]["commentCount"] == 0
    # The page reads these in its own statement; `task` reads them through the DataLoaders.
    for node in by_title.values():
        assert (await server.ok(ONE, {"id": node["id"]}, token))["task"] == node


async def test_cursor_pages_walk_the_column_once(server: RunningServer) -> None:
    token, ws, _ = await _workspace(server)
    seen: list[str] = []
    after = None
    while True:
        variables = {"ws": ws, "f": {"status": ["TODO"]}, "n": 2, "after": after}
        data = (await server.ok(PAGE, variables, token))["tasks"]
        assert data["totalCount"] == 4
        seen += [e["node"]["title"] for e in data["edges"]]
        assert data["pageInfo"]["endCursor"] == (
            data["edges"][-1]["cursor"] if data["edges"] else None
        )
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == ["Fix login", "Split board", "Child of login", "Fix cursor"]
    empty = (await server.ok(PAGE, {"ws": ws, "n": 0}, token))["tasks"]
    assert empty["edges"] == [] and empty["pageInfo"]["hasNextPage"] is True


async def test_outsiders_get_not_found_whatever_the_page_holds(server: RunningServer) -> None:
    token, ws, _ = await _workspace(server)
    outsider = await server.token_for("mallory@example.com")
    for f in (None, {"status": ["CANCELLED"]}):
        assert await server.error_code(PAGE, {"ws": ws, "f": f}, outsider) == "NOT_FOUND"
    # A member's empty column is an empty page, not an error.
    assert await _titles(server, token, ws, {"status": ["CANCELLED"]}) == []
