"""`tama tasks …` inside a run: every update is a real record the owner can read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agentcli.conftest import AgentRun

TASK = "query($t: ID!) { task(id: $t) { status summary } }"
TIMELINE = "query($t: ID!) { timeline(taskId: $t, first: 100) { edges { node { kind data actor { __typename } } } } }"
COMMENTS = """query($t: ID!, $th: ID) { comments(taskId: $t, threadId: $th, first: 100) {
  edges { node { id body parentId author { __typename ... on Agent { id } } } } } }"""
INBOX = "query($w: ID!) { inbox(workspaceId: $w) { edges { node { kind title body task { id } agent { id } } } } }"


async def timeline(run: AgentRun) -> list[dict[str, Any]]:
    data = await run.owner(TIMELINE, {"t": run.task_id})
    return [e["node"] for e in data["timeline"]["edges"]]


async def comments(run: AgentRun, thread: str | None = None) -> list[dict[str, Any]]:
    data = await run.owner(COMMENTS, {"t": run.task_id, "th": thread})
    return [e["node"] for e in data["comments"]["edges"]]


async def test_comment_and_reply_land_on_the_task_as_the_agent(agent_run: AgentRun) -> None:
    posted = await agent_run.tama("tasks", "comment", "Looking into the **login** bug.", "--json")
    assert posted.code == 0, posted.stderr
    comment = posted.json()
    assert (
        comment["body"] == "Looking into the **login** bug."
        and comment["taskId"] == agent_run.task_id
    )
    assert comment["author"] == {
        "__typename": "Agent",
        "id": agent_run.fleet.agent_id,
        "name": "Coder",
        "handle": "coder",
    }

    reply = await agent_run.tama(
        "tasks", "reply", comment["id"], "-", stdin="Found it: a stale cookie.\n"
    )
    assert reply.code == 0, reply.stderr
    assert reply.stdout.startswith(f"Replied in thread {comment['id']}")

    roots = await comments(agent_run)
    assert [(c["id"], c["author"]["id"]) for c in roots] == [
        (comment["id"], agent_run.fleet.agent_id)
    ]
    replies = await comments(agent_run, comment["id"])
    assert [(r["body"], r["parentId"]) for r in replies] == [
        ("Found it: a stale cookie.", comment["id"])
    ]
    kinds = [e["kind"] for e in await timeline(agent_run)]
    assert kinds.count("COMMENTED") == 2

    # `tasks show` lists the thread with the id to reply to; --thread shows the replies.
    shown = await agent_run.tama("tasks", "show")
    assert shown.code == 0, shown.stderr
    assert "Task #1: Fix the login bug" in shown.stdout and "status: TODO" in shown.stdout
    assert f"[{comment['id']}] Coder (@coder)" in shown.stdout and "(1 replies)" in shown.stdout
    thread = await agent_run.tama("tasks", "show", "--thread", comment["id"], "--json")
    assert [r["body"] for r in thread.json()["replies"]] == ["Found it: a stale cookie."]


async def test_status_summary_and_skip_are_recorded(agent_run: AgentRun, tmp_path: Path) -> None:
    status = await agent_run.tama("tasks", "status", "in-progress")
    assert (status.code, status.stdout.strip()) == (0, "Task #1 is now IN_PROGRESS."), status.stderr
    as_json = await agent_run.tama("tasks", "status", "In_Review", "--json")
    assert as_json.code == 0 and as_json.json()["status"] == "IN_REVIEW"
    assert set(as_json.json()) >= {"id", "number", "title", "status", "priority", "summary"}

    notes = tmp_path / "summary.md"
    notes.write_text("Fixed the cookie expiry.\n\nVerify: log in twice.", encoding="utf-8")
    summary = await agent_run.tama("tasks", "summary", "--file", str(notes), "--json")
    assert summary.code == 0, summary.stderr
    assert summary.json()["summary"] == "Fixed the cookie expiry.\n\nVerify: log in twice."

    skip = await agent_run.tama("tasks", "skip", "Nothing left to do: already fixed upstream.")
    assert skip.code == 0, skip.stderr
    assert "no action taken" in skip.stdout

    task = (await agent_run.owner(TASK, {"t": agent_run.task_id}))["task"]
    assert task == {
        "status": "IN_REVIEW",
        "summary": "Fixed the cookie expiry.\n\nVerify: log in twice.",
    }
    events = [
        e for e in await timeline(agent_run) if e["kind"] in ("STATUS_CHANGED", "SUMMARY", "NOOP")
    ]
    assert [(e["kind"], e["actor"]["__typename"]) for e in events] == [
        ("STATUS_CHANGED", "Agent"),
        ("STATUS_CHANGED", "Agent"),
        ("SUMMARY", "Agent"),
        ("NOOP", "Agent"),
    ]
    assert events[0]["data"] == {"from": "todo", "to": "in_progress"}
    assert events[3]["data"]["reason"] == "Nothing left to do: already fixed upstream."


async def test_block_sets_blocked_posts_the_reason_and_tells_the_owner(agent_run: AgentRun) -> None:
    blocked = await agent_run.tama(
        "tasks", "block", "Waiting for the staging database password.", "--json"
    )
    assert blocked.code == 0, blocked.stderr
    assert blocked.json()["status"] == "BLOCKED"
    task = (await agent_run.owner(TASK, {"t": agent_run.task_id}))["task"]
    assert task["status"] == "BLOCKED"
    assert any(
        "Waiting for the staging database password." in c["body"] for c in await comments(agent_run)
    )
    items = (await agent_run.owner(INBOX, {"w": agent_run.fleet.who.workspace_id}))["inbox"][
        "edges"
    ]
    blocks = [i["node"] for i in items if i["node"]["kind"] == "BLOCKED"]
    assert len(blocks) == 1 and blocks[0]["task"]["id"] == agent_run.task_id
    assert blocks[0]["agent"]["id"] == agent_run.fleet.agent_id


async def test_a_task_is_named_by_number_too(agent_run: AgentRun) -> None:
    shown = await agent_run.tama("tasks", "show", "#1", "--json")
    assert shown.code == 0, shown.stderr
    assert shown.json()["task"]["id"] == agent_run.task_id and shown.json()["comments"] == []
    posted = await agent_run.tama(
        "tasks", "comment", "--task", "1", "- By number; -t and --file stay text."
    )
    assert posted.code == 0, posted.stderr
    assert [c["body"] for c in await comments(agent_run)] == [
        "- By number; -t and --file stay text."
    ]
    with_timeline = await agent_run.tama("tasks", "show", "--timeline", "--json")
    kinds = [e["kind"] for e in with_timeline.json()["timeline"]]
    assert kinds[:3] == ["CREATED", "ASSIGNED", "RUN"] and kinds[-1] == "COMMENTED"
