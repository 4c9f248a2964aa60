"""A scriptable mock model server for driving the real `claude` and `codex` CLIs offline.

It speaks just enough of two provider APIs:

- Anthropic Messages (`POST /v1/messages`, SSE or plain JSON, plus `count_tokens`) for Claude Code;
- OpenAI Responses (`POST /v1/responses`, SSE ending in `response.completed`) for Codex.

A test queues turns with `script(...)`: each model request that carries the agent's tools (a
"main" request) takes the next turn, either a shell tool call or a final text answer. Side
requests (Claude's title or summary calls, which carry no tools) get a short canned answer and
leave the script alone; a main request finding the script empty gets EXHAUSTED_ANSWER. A `Fail`
turn answers every request, main or side, with an HTTP error until used up.
Every request is recorded so tests can assert what the CLI sent (for example, that a resumed
session replayed the earlier turn's history).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Api = Literal["anthropic", "openai"]

# Fixed token counts so tests can assert the usage a CLI reports.
INPUT_TOKENS = 120
CACHED_INPUT_TOKENS = 40
OUTPUT_TOKENS = 30
REASONING_TOKENS = 7

SIDE_ANSWER = "Mock side answer"
# What a main request gets when the script has no turn left (so a test sees it went too far).
EXHAUSTED_ANSWER = "Mock model: no scripted turn left"


@dataclass(frozen=True)
class ShellCall:
    """The model asks to run one shell command (Claude's `Bash`, Codex's `exec_command`)."""

    command: str


@dataclass(frozen=True)
class Answer:
    """The model's final text for the turn."""

    text: str


@dataclass
class Fail:
    """Answer requests with an HTTP error; `times=None` keeps failing until the script changes."""

    status: int
    message: str = ""
    times: int | None = None
    # Overrides the provider's error code/type (e.g. "rate_limit_exceeded" for an OpenAI 429).
    code: str | None = None


Turn = ShellCall | Answer | Fail


@dataclass
class RecordedRequest:
    api: Api
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # The turn this request was answered with (None for side requests).
    turn: Turn | None = None
    status: int = 200

    @property
    def scripted(self) -> bool:
        """It carried the agent's tools and was answered with a tool call or a final answer."""
        return self.turn is not None and not isinstance(self.turn, Fail)

    def mentions(self, needle: str) -> bool:
        """True when the request body (prompt, history, tool output) contains `needle`."""
        return needle in json.dumps(self.body, ensure_ascii=False)


@dataclass
class _State:
    turns: deque[Turn] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


# Status → (Anthropic error type, message), worded like the real API.
_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

# Status → (OpenAI error code, message), worded like the real API.
_OPENAI_ERRORS = {
    400: ("invalid_request", "Invalid request."),
    401: ("invalid_api_key", "Incorrect API key provided."),
    403: ("unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("model_not_found", "The model `{model}` does not exist or you do not have access to it."),
    429: (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: ("server_error", "The server had an error while processing your request."),
}


class MockModelServer:
    """Run with `async with MockModelServer() as server:`; then point a CLI at `server.url`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._state = _State()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    # -- scripting -----------------------------------------------------------------------------

    def script(self, *turns: Turn) -> None:
        """Append turns to the queue, in the order main requests will take them."""
        self._state.turns.extend(turns)

    def clear(self) -> None:
        """Drop the remaining turns and the recorded requests."""
        self._state.turns.clear()
        self._state.requests.clear()

    @property
    def pending(self) -> list[Turn]:
        return list(self._state.turns)

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._state.requests)

    @property
    def main_requests(self) -> list[RecordedRequest]:
        """Requests that took a scripted tool call or answer."""
        return [r for r in self._state.requests if r.scripted]

    @property
    def url(self) -> str:
        """Base URL without `/v1` (what ANTHROPIC_BASE_URL wants)."""
        return f"http://{self._host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL with `/v1` (what a Codex model provider wants)."""
        return f"{self.url}/v1"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/v1/messages", self._anthropic_messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._anthropic_count, methods=["POST"]),
                Route("/v1/responses", self._openai_responses, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/{rest:path}", self._unknown, methods=["GET", "POST", "HEAD", "PUT"]),
            ]
        )
        config = uvicorn.Config(
            app,
            host=self._host,
            port=0,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("mock model server stopped before it started")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None
        self._task = None

    async def __aenter__(self) -> MockModelServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- turn selection ------------------------------------------------------------------------

    def _take(self, main: bool) -> Turn | None:
        """The turn this request answers with: a pending Fail hits every request."""
        turns = self._state.turns
        if turns and isinstance(turns[0], Fail):
            fail = turns[0]
            if fail.times is not None:
                fail.times -= 1
                if fail.times <= 0:
                    turns.popleft()
            return fail
        if main:
            return turns.popleft() if turns else Answer(EXHAUSTED_ANSWER)
        return None

    def _record(self, api: Api, request: Request, body: dict[str, Any]) -> RecordedRequest:
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorded = RecordedRequest(api=api, path=request.url.path, headers=headers, body=body)
        self._state.requests.append(recorded)
        return recorded

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._state.ids):04d}"

    # -- Anthropic Messages --------------------------------------------------------------------

    async def _anthropic_messages(self, request: Request) -> Response:
        body = await _json_body(request)
        if body is None:
            return _anthropic_error(400, "body is not JSON", None, None)
        recorded = self._record("anthropic", request, body)
        tool_names = {str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)}
        turn = self._take(main="Bash" in tool_names)
        recorded.turn = turn
        if isinstance(turn, Fail):
            recorded.status = turn.status
            return _anthropic_error(turn.status, turn.message, turn.code, body.get("model"))
        model = str(body.get("model") or "mock-model")
        blocks: list[dict[str, Any]]
        if isinstance(turn, ShellCall):
            tool_input = {"command": turn.command, "description": "Run the scripted command"}
            blocks = [
                {
                    "type": "tool_use",
                    "id": self._next_id("toolu"),
                    "name": "Bash",
                    "input": tool_input,
                }
            ]
            stop_reason = "tool_use"
        else:
            text = turn.text if isinstance(turn, Answer) else SIDE_ANSWER
            blocks = [{"type": "text", "text": text}]
            stop_reason = "end_turn"
        message_id = self._next_id("msg")
        if body.get("stream"):
            return _sse(_anthropic_events(message_id, model, blocks, stop_reason))
        return JSONResponse(
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": _anthropic_usage(OUTPUT_TOKENS),
            }
        )

    async def _anthropic_count(self, request: Request) -> Response:
        body = await _json_body(request) or {}
        self._record("anthropic", request, body)
        return JSONResponse({"input_tokens": INPUT_TOKENS})

    # -- OpenAI Responses ----------------------------------------------------------------------

    async def _openai_responses(self, request: Request) -> Response:
        body = await _json_body(request)
        if body is None:
            return _openai_error(400, "body is not JSON")
        recorded = self._record("openai", request, body)
        tools = _openai_tool_names(body)
        turn = self._take(main=bool(tools & {"exec_command", "exec"}))
        recorded.turn = turn
        if isinstance(turn, Fail):
            recorded.status = turn.status
            return _openai_error(turn.status, turn.message, turn.code, body.get("model"))
        item: dict[str, Any]
        if isinstance(turn, ShellCall) and "exec_command" in tools:
            item = {
                "type": "function_call",
                "id": self._next_id("fc"),
                "call_id": self._next_id("call"),
                "name": "exec_command",
                "arguments": json.dumps({"cmd": turn.command}),
                "status": "completed",
            }
        elif isinstance(turn, ShellCall):
            # Code mode (Codex's default for its newest models): the only tool is `exec`, which
            # runs JavaScript that calls the nested tools, exec_command among them.
            script = f"const r = await tools.exec_command({{cmd: {json.dumps(turn.command)}}});\n"
            item = {
                "type": "custom_tool_call",
                "id": self._next_id("ctc"),
                "call_id": self._next_id("call"),
                "name": "exec",
                "namespace": "functions",
                "input": script + "text(JSON.stringify(r));",
                "status": "completed",
            }
        else:
            text = turn.text if isinstance(turn, Answer) else SIDE_ANSWER
            item = {
                "type": "message",
                "id": self._next_id("msg"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        response_id = self._next_id("resp")
        model = str(body.get("model") or "mock-model")
        return _sse(_openai_events(response_id, model, item))

    async def _models(self, request: Request) -> Response:
        self._record("openai", request, {})
        return JSONResponse({"object": "list", "data": [], "models": []})

    async def _unknown(self, request: Request) -> Response:
        body = await _json_body(request) or {}
        recorded = self._record("anthropic", request, body)
        recorded.status = 404
        return JSONResponse({"error": {"message": f"mock: no route {request.url.path}"}}, 404)


# -- wire helpers ------------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _openai_tool_names(body: dict[str, Any]) -> set[str]:
    """Every tool name offered: top-level `tools`, and tools nested in namespaces or in the
    `additional_tools` input items Codex sends in code mode."""
    names: set[str] = set()

    def walk(tools: object) -> None:
        if not isinstance(tools, list):
            return
        for tool in tools:
            if isinstance(tool, dict):
                if isinstance(tool.get("name"), str) and tool.get("type") != "namespace":
                    names.add(tool["name"])
                walk(tool.get("tools"))

    walk(body.get("tools"))
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            walk(item.get("tools"))
    return names


def _sse(events: Iterable[tuple[str, dict[str, Any]]]) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        for name, data in events:
            yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream")


def _anthropic_usage(output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": INPUT_TOKENS - CACHED_INPUT_TOKENS,
        "cache_read_input_tokens": CACHED_INPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _anthropic_events(
    message_id: str, model: str, blocks: list[dict[str, Any]], stop_reason: str
) -> list[tuple[str, dict[str, Any]]]:
    start: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(1),
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": OUTPUT_TOKENS},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def _openai_events(
    response_id: str, model: str, item: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    base = {"id": response_id, "object": "response", "created_at": 0, "model": model}
    usage = {
        "input_tokens": INPUT_TOKENS,
        "input_tokens_details": {"cached_tokens": CACHED_INPUT_TOKENS},
        "output_tokens": OUTPUT_TOKENS,
        "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    }
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "response.created",
            {
                "type": "response.created",
                "response": {**base, "status": "in_progress", "output": []},
            },
        ),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress"},
            },
        ),
    ]
    if item["type"] == "message":
        text = item["content"][0]["text"]
        events.append(
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": text,
                },
            )
        )
    events += [
        (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 0, "item": item},
        ),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {**base, "status": "completed", "output": [item], "usage": usage},
            },
        ),
    ]
    return events


def _anthropic_error(status: int, message: str, code: str | None, model: object) -> Response:
    error_type, default = _ANTHROPIC_ERRORS.get(status, ("api_error", "Internal server error"))
    text = message or default.format(model=model)
    return JSONResponse(
        {"type": "error", "error": {"type": code or error_type, "message": text}},
        status_code=status,
        headers={"request-id": "req_mock"},
    )


def _openai_error(
    status: int, message: str, code: str | None = None, model: object = None
) -> Response:
    default_code, default = _OPENAI_ERRORS.get(status, ("server_error", "Server error."))
    text = message or default.format(model=model)
    error_code = code or default_code
    return JSONResponse(
        {"error": {"message": text, "type": error_code, "param": None, "code": error_code}},
        status_code=status,
    )
