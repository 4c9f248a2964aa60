"""Every trigger goes the same way: acting agent, runtime, compiled prompt, recorded run."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningServer
from tests.dispatch.support import Fleet, assign, new_task, ready_fleet

RUNS = """query($w: ID!) { runs(workspaceId: $w) { edges { node {
  id triggerKind input compiledPrompt status agent { name } task { id } chatId runtime { name } } } } }"""
SECTIONS = [
    "# You are",
    "## Identity",
    "## How to act: the tama CLI",
    "## Your memory",
    "## Relevant knowledge",
    "## Context",
    "## Request",
]


async def _runs(server: RunningServer, fleet: Fleet) -> list[dict[str, Any]]:
    data = await server.ok(RUNS, {"w": fleet.who.workspace_id}, fleet.who.token)
    return [e["node"] for e in data["runs"]["edges"]]


def _in_order(prompt: str, sections: list[str]) -> bool:
    positions = [prompt.find(s) for s in sections]
    return all(p >= 0 for p in positions) and positions == sorted(positions)


async def _profile(server: RunningServer, fleet: Fleet) -> None:
    await server.ok(
        'mutation($a: ID!) { updateAgent(id: $a, profile: {summary: "A careful coder.", instructions: "Always write tests.", memory: "The repo uses pytest."}) { id } }',
        {"a": fleet.agent_id},
        fleet.who.token,
    )


async def test_assignment_records_input_and_full_prompt(machine_server: RunningServer) -> None:
    fleet = await ready_fleet(machine_server)
    await _profile(machine_server, fleet)
    project = await machine_server.ok(
        'mutation($w: ID!) { createProject(workspaceId: $w, name: "Billing", description: "Invoices are in cents.") { id } }',
        {"w": fleet.who.workspace_id},
        fleet.who.token,
    )
    task = await machine_server.ok(
        'mutation($w: ID!, $p: ID!) { createTask(input: {workspaceId: $w, title: "Round totals", description: "Totals are off by one.", projectId: $p}) { id number } }',
        {"w": fleet.who.workspace_id, "p": project["createProject"]["id"]},
        fleet.who.token,
    )
    await assign(machine_server, fleet, task["createTask"]["id"])
    (run,) = await _runs(machine_server, fleet)
    assert run["triggerKind"] == "ASSIGNMENT" and run["runtime"] == {"name": "claude"}
    assert run["input"].startswith("You have been assigned this task and now own it.")
    assert "Totals are off by one." in run["input"]
    prompt = run["compiledPrompt"]
    assert _in_order(prompt, SECTIONS)
    assert "A careful coder." in prompt and "Always write tests." in prompt
    assert "The repo uses pytest." in prompt and "tama memory write" in prompt
    assert "Invoices are in cents." in prompt  # knowledge: the task's project
    assert f"task_id: {task['createTask']['id']}" in prompt and "task_number: 1" in prompt
    assert prompt.rstrip().endswith(run["input"].rstrip())
    await fleet.daemon.__aexit__()


async def test_comment_triggers(machine_server: RunningServer) -> None:
    fleet = await ready_fleet(machine_server)
    task_id = await new_task(machine_server, fleet)
    post = "mutation($i: PostCommentInput!) { postComment(input: $i) { id } }"
    # A human comment that tags an agent runs it in that thread.
    root = (
        await machine_server.ok(
            post,
            {
                "i": {
                    "taskId": task_id,
                    "body": "@coder can you look?",
                    "agentIds": [fleet.agent_id],
                }
            },
            fleet.who.token,
        )
    )["postComment"]["id"]
    (run,) = await _runs(machine_server, fleet)
    assert run["triggerKind"] == "COMMENT" and "> @coder can you look?" in run["input"]
    assert f"thread_id: {root}" in run["compiledPrompt"] and _in_order(
        run["compiledPrompt"], SECTIONS
    )
    # Later replies in the thread need no tag. Whatever the timing, the thread holds one turn
    # on the machine and at most one waiting, and every reply reaches exactly one of them.
    await machine_server.ok(
        post,
        {"i": {"taskId": task_id, "body": "also check the tests", "parentId": root}},
        fleet.who.token,
    )
    await machine_server.ok(
        post, {"i": {"taskId": task_id, "body": "and the docs", "parentId": root}}, fleet.who.token
    )
    runs = await _runs(machine_server, fleet)
    assert len(runs) == 2 and sum(r["status"] == "QUEUED" for r in runs) <= 1
    for text in ("can you look?", "also check the tests", "and the docs"):
        assert sum(text in r["input"] for r in runs) == 1, text
    assert "and the docs" in runs[0]["input"] and runs[0]["status"] == "QUEUED"  # newest waits
    # A root comment with no tag on a task assigned to nobody runs nobody.
    other = await new_task(machine_server, fleet, "other")
    await machine_server.ok(post, {"i": {"taskId": other, "body": "just a note"}}, fleet.who.token)
    assert len(await _runs(machine_server, fleet)) == 2
    await fleet.daemon.__aexit__()


async def test_team_tag_routes_to_the_lead_and_root_comment_runs_the_assignee(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server)
    lead = (
        await machine_server.ok(
            'mutation($w: ID!) { createAgent(workspaceId: $w, profile: {name: "Lead"}) { id } }',
            {"w": fleet.who.workspace_id},
            fleet.who.token,
        )
    )["createAgent"]["id"]
    team = (
        await machine_server.ok(
            'mutation($w: ID!, $l: ID!) { createTeam(workspaceId: $w, team: {name: "Core", leadAgentId: $l}) { id } }',
            {"w": fleet.who.workspace_id, "l": lead},
            fleet.who.token,
        )
    )["createTeam"]["id"]
    task_id = await new_task(machine_server, fleet)
    post = "mutation($i: PostCommentInput!) { postComment(input: $i) { id } }"
    await machine_server.ok(
        post,
        {"i": {"taskId": task_id, "body": "team, who takes this?", "teamIds": [team]}},
        fleet.who.token,
    )
    (run,) = await _runs(machine_server, fleet)
    assert run["agent"] == {"name": "Lead"} and run["triggerKind"] == "COMMENT"
    assigned = await new_task(machine_server, fleet, "assigned")
    await assign(machine_server, fleet, assigned)
    await machine_server.ok(
        post, {"i": {"taskId": assigned, "body": "please also update the docs"}}, fleet.who.token
    )
    coder_runs = [r for r in await _runs(machine_server, fleet) if r["agent"]["name"] == "Coder"]
    # The root comment runs the assignee: it joins the assignment's turn if that still waits,
    # or queues as its one follow-up if the turn is already on the machine.
    assert 1 <= len(coder_runs) <= 2 and sum(r["status"] == "QUEUED" for r in coder_runs) <= 1
    assert sum("please also update the docs" in r["input"] for r in coder_runs) == 1
    await fleet.daemon.__aexit__()


async def test_reactions_steer_the_author_only(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server)
    task_id = await new_task(machine_server, fleet)
    # An agent's comment (made here through its run token) triggers no one by itself.
    await assign(machine_server, fleet, task_id)
    from tests.dispatch.support import JobInbox, claim

    inbox = await JobInbox(fleet).open()
    job, message = await inbox.next()
    assert await claim(machine_server, fleet, job)
    await message.ack()
    token = job["run_token"]
    proposal = (
        await machine_server.ok(
            "mutation($i: PostCommentInput!) { postComment(input: $i) { id } }",
            {"i": {"taskId": task_id, "body": "I propose to rewrite the parser."}},
            token,
        )
    )["postComment"]["id"]
    assert len(await _runs(machine_server, fleet)) == 1
    # The agent reacting to its own comment does nothing.
    await machine_server.ok(
        'mutation($c: ID!) { react(commentId: $c, emoji: "👍") { id } }', {"c": proposal}, token
    )
    assert len(await _runs(machine_server, fleet)) == 1
    # A person's 👍 runs the author (as a follow-up, since its run is still active).
    await machine_server.ok(
        'mutation($c: ID!) { react(commentId: $c, emoji: "👍") { id } }',
        {"c": proposal},
        fleet.who.token,
    )
    runs = await _runs(machine_server, fleet)
    assert len(runs) == 2
    reaction = next(r for r in runs if r["triggerKind"] == "REACTION")
    assert "reacted 👍" in reaction["input"] and "proceed" in reaction["input"]
    assert "I propose to rewrite the parser." in reaction["input"]
    assert f"comment_id: {proposal}" in reaction["compiledPrompt"]
    assert reaction["compiledPrompt"].rstrip().endswith(reaction["input"].rstrip())
    # No session to resume yet (the first turn has not finished): the full prompt.
    assert _in_order(reaction["compiledPrompt"], SECTIONS)
    await fleet.daemon.__aexit__()


async def test_chat_message_runs_the_chats_agent_one_turn_at_a_time(
    machine_server: RunningServer,
) -> None:
    fleet = await ready_fleet(machine_server)
    chat = (
        await machine_server.ok(
            'mutation($w: ID!, $a: ID!) { createChat(workspaceId: $w, agentId: $a, title: "Ideas") { id } }',
            {"w": fleet.who.workspace_id, "a": fleet.agent_id},
            fleet.who.token,
        )
    )["createChat"]["id"]
    send = "mutation($c: ID!, $b: String!) { sendChatMessage(chatId: $c, body: $b) { id } }"
    await machine_server.ok(send, {"c": chat, "b": "What should we build next?"}, fleet.who.token)
    await machine_server.ok(send, {"c": chat, "b": "Think about billing."}, fleet.who.token)
    runs = await _runs(machine_server, fleet)
    # One turn at a time: the second message joins the first turn if it still waits, or waits
    # as the next turn if the first is already on the machine.
    assert 1 <= len(runs) <= 2 and sum(r["status"] == "QUEUED" for r in runs) <= 1
    for text in ("What should we build next?", "Think about billing."):
        assert sum(text in r["input"] for r in runs) == 1
    run = runs[-1]
    assert run["triggerKind"] == "CHAT" and run["chatId"] == chat and run["task"] is None
    assert f"chat_id: {chat}" in run["compiledPrompt"] and _in_order(
        run["compiledPrompt"], SECTIONS
    )
    await fleet.daemon.__aexit__()
