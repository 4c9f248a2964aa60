"""`tama chat reply` in a chat run: the agent's answer is a message in its chat."""

from __future__ import annotations

from tests.agentcli.conftest import AgentRun

MESSAGES = """query($c: ID!) { chatMessages(chatId: $c) { edges { node {
  body runId author { __typename ... on Agent { id } } } } } }"""


async def test_chat_reply_posts_in_the_runs_chat(chat_run: AgentRun) -> None:
    chat_id = chat_run.task_id
    sent = await chat_run.tama("chat", "reply", "- It logs you out after **one** minute.", "--json")
    assert sent.code == 0, sent.stderr
    assert sent.json()["chatId"] == chat_id and sent.json()["runId"] == chat_run.job["run_id"]
    text = await chat_run.tama("chat", "reply", "--chat", chat_id, "-", stdin="Want me to fix it?")
    assert text.code == 0 and text.stdout.startswith("Sent to the chat (message ")

    messages = [
        e["node"] for e in (await chat_run.owner(MESSAGES, {"c": chat_id}))["chatMessages"]["edges"]
    ]
    assert [(m["body"], m["author"]["__typename"]) for m in messages] == [
        ("What does the login bug look like?", "User"),
        ("- It logs you out after **one** minute.", "Agent"),
        ("Want me to fix it?", "Agent"),
    ]
    assert messages[1]["author"]["id"] == chat_run.fleet.agent_id

    # A chat run has no task of its own: task commands ask for one.
    no_task = await chat_run.tama("tasks", "comment", "hello")
    assert no_task.code == 2
    assert "this run is not about a task: name one with --task TASK" in no_task.stderr
    memory = await chat_run.tama("memory", "show", "--json")
    assert memory.code == 0 and memory.json()["agent"]["id"] == chat_run.fleet.agent_id
