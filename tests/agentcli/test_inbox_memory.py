"""Questions and approval requests reach the owner's inbox; memory persists on the agent."""

from __future__ import annotations

from pathlib import Path

from tests.agentcli.conftest import AgentRun

INBOX = """query($w: ID!) { inbox(workspaceId: $w) { edges { node {
  id kind status title body task { id } agent { id } } } } }"""
AGENT = "query($a: ID!) { agent(id: $a) { memory } }"


async def test_question_and_approval_land_in_the_owners_inbox(agent_run: AgentRun) -> None:
    asked = await agent_run.tama(
        "questions", "ask", "Should the fix also cover SSO logins?", "--json"
    )
    assert asked.code == 0, asked.stderr
    items = asked.json()["inboxItems"]
    assert [(i["kind"], i["status"], i["task"]["id"]) for i in items] == [
        ("QUESTION", "OPEN", agent_run.task_id)
    ]
    assert "Should the fix also cover SSO logins?" in items[0]["body"]

    requested = await agent_run.tama(
        "approvals", "request", "-", stdin="May I drop the legacy sessions table?"
    )
    assert requested.code == 0, requested.stderr
    assert requested.stdout.startswith("Requested approval from 1 person in their inbox")

    inbox = (await agent_run.owner(INBOX, {"w": agent_run.fleet.who.workspace_id}))["inbox"][
        "edges"
    ]
    mine = {i["node"]["kind"]: i["node"] for i in inbox}
    assert set(mine) == {"QUESTION", "APPROVAL"}
    assert mine["QUESTION"]["id"] == items[0]["id"]
    assert "May I drop the legacy sessions table?" in mine["APPROVAL"]["body"]
    assert all(
        n["agent"]["id"] == agent_run.fleet.agent_id and n["task"]["id"] == agent_run.task_id
        for n in mine.values()
    )


async def test_memory_write_show_and_append(agent_run: AgentRun, tmp_path: Path) -> None:
    empty = await agent_run.tama("memory", "show")
    assert (empty.code, empty.stdout.strip()) == (0, "(memory is empty)")

    notes = tmp_path / "memory.md"
    notes.write_text("- The repo uses pnpm.\n", encoding="utf-8")
    written = await agent_run.tama("memory", "write", "--file", str(notes), "--json")
    assert written.code == 0, written.stderr
    assert written.json()["memory"].startswith("- The repo uses pnpm.")
    appended = await agent_run.tama("memory", "write", "--append", "- Tests need PostgreSQL.")
    assert appended.code == 0, appended.stderr

    stored = (await agent_run.owner(AGENT, {"a": agent_run.fleet.agent_id}))["agent"]["memory"]
    assert stored == "- The repo uses pnpm.\n- Tests need PostgreSQL."
    shown = await agent_run.tama("memory", "show", "--json")
    assert shown.json() == {
        "agent": {"id": agent_run.fleet.agent_id, "name": "Coder", "handle": "coder"},
        "memory": stored,
    }
    replaced = await agent_run.tama("memory", "write", "Start over.")
    assert replaced.code == 0
    assert (await agent_run.tama("memory", "show")).stdout.strip() == "Start over."
