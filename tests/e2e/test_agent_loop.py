"""An assignment leads the real agent CLI to run `tama tasks status`, `comment` and `summary`;
those records appear on the task's timeline; a reply in the thread resumes the same session; a
forgotten summary brings exactly one follow-up; the transcript streams over a subscription."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.gqlclient import Subscription, ws_session
from tests.e2e.conftest import System
from tests.machines.support import eventually
from tests.mockmodel.server import Answer, ShellCall

TIMELINE = """query($t: ID!) { timeline(taskId: $t, first: 200) { edges { node { kind data
  actor { __typename ... on Agent { name } } comment { id body } } } } }"""
RUNS = """query($w: ID!, $t: ID!) { runs(workspaceId: $w, filter: {taskId: $t}) { edges { node {
  id status triggerKind sessionId compiledPrompt input failureCode error } } } }"""


async def _timeline(system: System, task_id: str) -> list[dict[str, Any]]:
    data = await system.ok(TIMELINE, {"t": task_id})
    return [e["node"] for e in data["timeline"]["edges"]]


async def _runs(system: System, task_id: str) -> list[dict[str, Any]]:
    data = await system.ok(RUNS, {"w": system.who.workspace_id, "t": task_id})
    return [e["node"] for e in data["runs"]["edges"]]


async def _all_finished(system: System, task_id: str, count: int) -> list[dict[str, Any]]:
    async def done() -> Any:
        runs = await _runs(system, task_id)
        finished = [r for r in runs if r["status"] in ("SUCCEEDED", "FAILED", "CANCELLED")]
        return runs if len(finished) >= count and len(runs) == len(finished) else None

    return list(await eventually(done, within=90, every=0.2))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("runtime", ["claude", "codex"])
async def test_assignment_runs_the_real_cli_which_acts_through_tama(
    system: System, runtime: str
) -> None:
    agent_id = await system.agent(runtime)
    task = await system.ok(
        'mutation($w: ID!) { createTask(input: {workspaceId: $w, title: "Fix the totals", description: "They are off by one."}) { id } }',
        {"w": system.who.workspace_id},
    )
    task_id = task["createTask"]["id"]
    system.model.script(
        ShellCall("tama tasks status in_progress"),
        ShellCall('tama tasks comment "Found it: an off-by-one in the rounding."'),
        ShellCall('tama tasks summary "Fixed the rounding; totals now match the invoices."'),
        ShellCall("tama tasks status done"),
        Answer("Done."),
    )
    async with ws_session(system.server.ws_url, system.who.token) as session:
        await system.ok(
            "mutation($t: ID!, $a: ID!) { assignTask(input: {taskId: $t, agentId: $a}) { id } }",
            {"t": task_id, "a": agent_id},
        )
        run_id = (await _runs(system, task_id))[0]["id"]
        transcript = Subscription(
            session,
            "subscription($r: ID!) { runTranscript(runId: $r) { seq events } }",
            {"r": run_id},
        )
        chunk = (await transcript.next(wait=60))["runTranscript"]
        assert chunk["events"], "the transcript streams while the run works"
        await transcript.close()
        (run,) = await _all_finished(system, task_id, 1)
    assert run["status"] == "SUCCEEDED", run
    assert run["sessionId"], "the CLI's session id came back"
    timeline = await _timeline(system, task_id)
    by_agent = [
        e
        for e in timeline
        if e["actor"] == {"__typename": "Agent", "name": "Coder"} and e["kind"] != "RUN"
    ]
    kinds = [e["kind"] for e in by_agent]
    assert kinds == ["STATUS_CHANGED", "COMMENTED", "SUMMARY", "STATUS_CHANGED"], kinds
    assert by_agent[0]["data"] == {"from": "todo", "to": "in_progress"}
    assert by_agent[1]["comment"]["body"] == "Found it: an off-by-one in the rounding."
    assert by_agent[2]["data"]["summary"] == "Fixed the rounding; totals now match the invoices."
    data = await system.ok("query($t: ID!) { task(id: $t) { status summary } }", {"t": task_id})
    assert data["task"] == {
        "status": "DONE",
        "summary": "Fixed the rounding; totals now match the invoices.",
    }
    assert not any(e["kind"] == "NOOP" for e in timeline)

    # A person replies in the agent's thread: the same agent runs again, resuming its session
    # with only the new context and input.
    comment_id = by_agent[1]["comment"]["id"]
    system.model.script(
        ShellCall(f'tama tasks reply {comment_id} "Yes, the tests cover it."'), Answer("Replied.")
    )
    await system.ok(
        "mutation($i: PostCommentInput!) { postComment(input: $i) { id } }",
        {"i": {"taskId": task_id, "body": "Did you add a test?", "parentId": comment_id}},
    )
    runs = await _all_finished(system, task_id, 2)
    follow_up = runs[0]
    assert follow_up["triggerKind"] == "COMMENT" and follow_up["status"] == "SUCCEEDED", follow_up
    assert (
        "## Identity" not in follow_up["compiledPrompt"]
        and "## Request" in follow_up["compiledPrompt"]
    )
    assert "Did you add a test?" in follow_up["compiledPrompt"]
    assert follow_up["sessionId"] == run["sessionId"] or (
        runtime == "codex" and follow_up["sessionId"]
    )
    # The model saw the earlier turn's history in the resumed request.
    assert system.model.main_requests[-1].mentions("Found it: an off-by-one in the rounding.")
    replies = await system.ok(
        "query($t: ID!, $c: ID!) { comments(taskId: $t, threadId: $c) { edges { node { body author { ... on Agent { name } } } } } }",
        {"t": task_id, "c": comment_id},
    )
    bodies = [e["node"]["body"] for e in replies["comments"]["edges"]]
    assert bodies == ["Did you add a test?", "Yes, the tests cover it."]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_forgotten_summary_brings_exactly_one_follow_up(system: System) -> None:
    agent_id = await system.agent("claude")
    task = await system.ok(
        'mutation($w: ID!) { createTask(input: {workspaceId: $w, title: "Tidy up"}) { id } }',
        {"w": system.who.workspace_id},
    )
    task_id = task["createTask"]["id"]
    system.model.script(
        ShellCall("tama tasks status done"),
        Answer("All tidy."),
        # The follow-up's only job: the summary.
        ShellCall('tama tasks summary "Removed dead code in the parser."'),
        Answer("Summary written."),
    )
    await system.ok(
        "mutation($t: ID!, $a: ID!) { assignTask(input: {taskId: $t, agentId: $a}) { id } }",
        {"t": task_id, "a": agent_id},
    )
    runs = await _all_finished(system, task_id, 2)
    assert [r["triggerKind"] for r in runs] == ["SUMMARY", "ASSIGNMENT"]
    assert all(r["status"] == "SUCCEEDED" for r in runs)
    assert "completion summary" in runs[0]["input"]
    data = await system.ok("query($t: ID!) { task(id: $t) { summary } }", {"t": task_id})
    assert data["task"]["summary"] == "Removed dead code in the parser."
    # Exactly one: nothing more follows.
    import asyncio

    await asyncio.sleep(2)
    assert len(await _runs(system, task_id)) == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_turn_that_changes_nothing_is_recorded_as_a_no_op(system: System) -> None:
    agent_id = await system.agent("claude")
    task = await system.ok(
        'mutation($w: ID!) { createTask(input: {workspaceId: $w, title: "Look at this"}) { id } }',
        {"w": system.who.workspace_id},
    )
    task_id = task["createTask"]["id"]
    system.model.script(Answer("I looked, nothing to say."))
    await system.ok(
        "mutation($t: ID!, $a: ID!) { assignTask(input: {taskId: $t, agentId: $a}) { id } }",
        {"t": task_id, "a": agent_id},
    )
    (run,) = await _all_finished(system, task_id, 1)
    assert run["status"] == "SUCCEEDED"
    noop = [e for e in await _timeline(system, task_id) if e["kind"] == "NOOP"]
    assert len(noop) == 1 and noop[0]["data"]["recorded_by"] == "loop"
