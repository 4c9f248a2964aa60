"""The GraphQL client an agent uses inside a run: the run token from the environment, errors
turned into one actionable line and an exit code a model can branch on.

AgentCliError          every way a command can fail; `code` is the GraphQL `extensions.code`
                       or one of the CLI's own (NOT_IN_RUN, UNREACHABLE), `exit_code` follows
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from taskmachine.daemon.api import ApiClient, ApiError, ApiUnreachableError

TOKEN_ENV = "TASKMACHINE_RUN_TOKEN"
API_URL_ENV = "TASKMACHINE_API_URL"
RUN_ID_ENV = "TASKMACHINE_RUN_ID"

OK = 0
OTHER = 1
BAD_INPUT = 2
NOT_ALLOWED = 3
NOT_FOUND = 4
UNREACHABLE = 5

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 other error; 2 bad input (fix the arguments); 3 not allowed "
    "(the agent's role forbids it, or the run has ended); 4 not found (check the id); "
    "5 server unreachable (retry shortly)."
)

_EXIT_BY_CODE = {
    "BAD_USER_INPUT": BAD_INPUT,
    "PAYLOAD_TOO_LARGE": BAD_INPUT,
    "UNAUTHENTICATED": NOT_ALLOWED,
    "FORBIDDEN": NOT_ALLOWED,
    "NOT_IN_RUN": NOT_ALLOWED,
    "NOT_FOUND": NOT_FOUND,
    "UNREACHABLE": UNREACHABLE,
}

# What a model should do next, appended to the server's message.
_HINTS = {
    "UNAUTHENTICATED": (
        "the server refused this run's token: the run has ended or was cancelled; "
        "make no more tama calls"
    ),
    "FORBIDDEN": "your agent's role does not allow this; do not retry, say so in your answer",
    "NOT_FOUND": "check the id; `tama tasks show` prints this run's task and its comment ids",
    "BAD_USER_INPUT": "fix the input and run the command again",
    "PAYLOAD_TOO_LARGE": "shorten the text, or split it over several commands",
    "CONFLICT": "the record changed meanwhile; run `tama tasks show` and decide again",
    "GRAPHQL_VALIDATION_FAILED": "this tama and the server disagree; report it, do not retry",
}


class AgentCliError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def exit_code(self) -> int:
        return _EXIT_BY_CODE.get(self.code, OTHER)

    @property
    def line(self) -> str:
        """One line for stderr: what went wrong, then what to do about it."""
        hint = _HINTS.get(self.code)
        text = " ".join(self.message.split())
        return f"{text} ({hint})" if hint else text


def bad_input(message: str) -> AgentCliError:
    return AgentCliError("BAD_USER_INPUT", message)


@dataclass(frozen=True, slots=True)
class RunEnv:
    token: str
    api_url: str
    run_id: str | None


def run_env(environ: Mapping[str, str] | None = None) -> RunEnv:
    """The run's token and server, as the daemon's executor sets them."""
    env = os.environ if environ is None else environ
    for name in (TOKEN_ENV, API_URL_ENV):
        if not env.get(name, "").strip():
            raise AgentCliError("NOT_IN_RUN", f"not inside a Task Machine run: {name} is not set")
    return RunEnv(env[TOKEN_ENV].strip(), env[API_URL_ENV].strip(), env.get(RUN_ID_ENV) or None)


RUN_CONTEXT = """query RunContext { runContext {
  run { id attempt }
  agent { id name handle memory }
  task { id number title description status priority summary }
  chatId workspaceId } }"""

TASK_BY_NUMBER = """query TaskByNumber($w: ID!, $n: Int!) {
  taskByNumber(workspaceId: $w, number: $n) { id } }"""

_NUMBER = re.compile(r"#?(\d{1,9})")


@dataclass(frozen=True, slots=True)
class RunContext:
    """What the run is about, as the server knows it."""

    run: dict[str, Any]
    agent: dict[str, Any]
    task: dict[str, Any] | None
    chat_id: str | None
    workspace_id: str


class AgentClient:
    """One server conversation per command; `async with AgentClient(run_env()) as client`."""

    def __init__(self, env: RunEnv, *, timeout: float = 15.0) -> None:
        self.env = env
        self._api = ApiClient(env.api_url, timeout=timeout)
        self._context: RunContext | None = None

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._api.aclose()

    async def call(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one operation with the run token; its data, or raise AgentCliError."""
        try:
            return await self._api.execute(query, variables, token=self.env.token)
        except ApiUnreachableError as exc:
            raise AgentCliError(
                "UNREACHABLE", f"{exc}; the server may be restarting, retry in a few seconds"
            ) from None
        except ApiError as exc:
            code = exc.code or "INTERNAL"
            # ApiError appends " (CODE)"; the code travels separately here.
            message = str(exc).removesuffix(f" ({exc.code})")
            raise AgentCliError(code, message) from None

    async def context(self) -> RunContext:
        """The run's agent, task or chat and workspace (asked once per command)."""
        if self._context is None:
            data = (await self.call(RUN_CONTEXT))["runContext"]
            self._context = RunContext(
                run=data["run"],
                agent=data["agent"],
                task=data.get("task"),
                chat_id=data.get("chatId"),
                workspace_id=data["workspaceId"],
            )
        return self._context

    async def task_id(self, ref: str | None) -> str:
        """A task id from an id, a number (`12` or `#12`), or nothing: the run's own task."""
        if ref is None or not ref.strip():
            ctx = await self.context()
            if ctx.task is None:
                raise bad_input("this run is not about a task: name one with --task TASK")
            return str(ctx.task["id"])
        ref = ref.strip()
        number = _NUMBER.fullmatch(ref)
        if number is None:
            return ref
        ctx = await self.context()
        data = await self.call(TASK_BY_NUMBER, {"w": ctx.workspace_id, "n": int(number[1])})
        return str(data["taskByNumber"]["id"])

    async def chat_id(self, ref: str | None) -> str:
        """A chat id, or nothing: the run's own chat."""
        if ref is not None and ref.strip():
            return ref.strip()
        ctx = await self.context()
        if ctx.chat_id is None:
            raise bad_input("this run is not about a chat: name one with --chat CHAT_ID")
        return str(ctx.chat_id)
