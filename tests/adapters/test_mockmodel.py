"""The mock model server itself, over real HTTP: scripting, side requests, errors, recording."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.mockmodel.server import (
    EXHAUSTED_ANSWER,
    INPUT_TOKENS,
    SIDE_ANSWER,
    Answer,
    Fail,
    MockModelServer,
    ShellCall,
)

CLAUDE_MAIN = {"model": "m", "stream": True, "tools": [{"name": "Bash"}], "messages": []}
CODEX_MAIN = {
    "model": "gpt-5.5",
    "stream": True,
    "tools": [{"type": "function", "name": "exec_command"}],
}


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_anthropic_turns_side_requests_and_exhaustion(mock_model: MockModelServer) -> None:
    mock_model.script(ShellCall("ls"), Answer("done"))
    async with httpx.AsyncClient(base_url=mock_model.url) as client:
        # A side request (no tools, not streamed) does not take a scripted turn.
        side = await client.post("/v1/messages?beta=true", json={"model": "haiku", "messages": []})
        assert side.json()["content"] == [{"type": "text", "text": SIDE_ANSWER}]
        count = await client.post("/v1/messages/count_tokens", json={"messages": []})
        assert count.json() == {"input_tokens": INPUT_TOKENS}

        first = sse_events((await client.post("/v1/messages", json=CLAUDE_MAIN)).text)
        names = [name for name, _ in first]
        assert names[0] == "message_start" and names[-1] == "message_stop"
        block = first[1][1]["content_block"]
        assert block["type"] == "tool_use" and block["name"] == "Bash"
        assert json.loads(first[2][1]["delta"]["partial_json"])["command"] == "ls"
        assert first[-2][1]["delta"]["stop_reason"] == "tool_use"

        second = sse_events((await client.post("/v1/messages", json=CLAUDE_MAIN)).text)
        assert second[2][1]["delta"] == {"type": "text_delta", "text": "done"}

        extra = sse_events((await client.post("/v1/messages", json=CLAUDE_MAIN)).text)
        assert extra[2][1]["delta"]["text"] == EXHAUSTED_ANSWER

    assert [r.scripted for r in mock_model.requests] == [False, False, True, True, True]
    assert len(mock_model.main_requests) == 3


async def test_openai_tool_call_and_answer(mock_model: MockModelServer) -> None:
    mock_model.script(ShellCall("echo hi"), Answer("bye"))
    async with httpx.AsyncClient(base_url=mock_model.openai_base_url) as client:
        call = sse_events((await client.post("/responses", json=CODEX_MAIN)).text)
        answer = sse_events((await client.post("/responses", json=CODEX_MAIN)).text)
    assert call[-1][0] == "response.completed"
    [item] = call[-1][1]["response"]["output"]
    assert item["type"] == "function_call" and json.loads(item["arguments"]) == {"cmd": "echo hi"}
    usage = answer[-1][1]["response"]["usage"]
    assert usage["input_tokens"] == INPUT_TOKENS
    assert answer[-1][1]["response"]["output"][0]["content"][0]["text"] == "bye"


async def test_openai_code_mode_wraps_the_command(mock_model: MockModelServer) -> None:
    mock_model.script(ShellCall("echo hi"))
    body = {
        "model": "gpt-6.1-sol",
        "stream": True,
        "input": [
            {
                "type": "additional_tools",
                "tools": [
                    {
                        "type": "namespace",
                        "name": "functions",
                        "tools": [{"type": "custom", "name": "exec"}],
                    }
                ],
            }
        ],
    }
    async with httpx.AsyncClient(base_url=mock_model.openai_base_url) as client:
        events = sse_events((await client.post("/responses", json=body)).text)
    [item] = events[-1][1]["response"]["output"]
    assert item["type"] == "custom_tool_call" and item["name"] == "exec"
    assert 'tools.exec_command({cmd: "echo hi"})' in item["input"]


async def test_failures_hit_every_request_until_used_up(mock_model: MockModelServer) -> None:
    mock_model.script(Fail(429, times=2), Answer("recovered"))
    async with httpx.AsyncClient(base_url=mock_model.url) as client:
        side = await client.post("/v1/messages", json={"messages": []})
        main = await client.post("/v1/messages", json=CLAUDE_MAIN)
        ok = await client.post("/v1/messages", json=CLAUDE_MAIN)
    assert side.status_code == main.status_code == 429
    assert main.json()["error"]["type"] == "rate_limit_error"
    assert ok.status_code == 200 and "recovered" in ok.text
    assert [r.status for r in mock_model.requests] == [429, 429, 200]


async def test_openai_error_bodies(mock_model: MockModelServer) -> None:
    mock_model.script(Fail(404, times=1), Fail(429, code="rate_limit_exceeded", times=1))
    async with httpx.AsyncClient(base_url=mock_model.openai_base_url) as client:
        missing = await client.post("/responses", json=CODEX_MAIN)
        limited = await client.post("/responses", json=CODEX_MAIN)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == (
        "The model `gpt-5.5` does not exist or you do not have access to it."
    )
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


async def test_bad_bodies_and_unknown_routes(mock_model: MockModelServer) -> None:
    async with httpx.AsyncClient(base_url=mock_model.url) as client:
        bad = await client.post("/v1/messages", content=b"{not json")
        unknown = await client.get("/v1/elsewhere")
    assert bad.status_code == 400
    assert unknown.status_code == 404
    assert mock_model.requests[-1].path == "/v1/elsewhere"
