"""The scripted mock model server for the browser tests (the real CLIs talk to it, offline).

Reads one JSON list of turns on stdin, each {"shell": "<command>"} or {"answer": "<text>"}, then
prints one line {"url": ..., "openaiBaseUrl": ...} and serves until SIGTERM or SIGINT. On exit
it prints one line {"pending": <turns left>, "mainRequests": <n>} so a test can tell how far the
script went. Run from the repository root (it imports tests.mockmodel).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.mockmodel.server import Answer, MockModelServer, ShellCall, Turn


def parse_turns(raw: object) -> list[Turn]:
    if not isinstance(raw, list):
        raise SystemExit("mock_model.py: stdin must be a JSON list of turns")
    turns: list[Turn] = []
    for index, item in enumerate(raw):
        if isinstance(item, dict) and isinstance(item.get("shell"), str):
            turns.append(ShellCall(item["shell"]))
        elif isinstance(item, dict) and isinstance(item.get("answer"), str):
            turns.append(Answer(item["answer"]))
        else:
            raise SystemExit(
                f"mock_model.py: turn {index} is neither {{shell}} nor {{answer}}: {item!r}"
            )
    return turns


async def serve(turns: list[Turn]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with MockModelServer() as model:
        model.script(*turns)
        print(json.dumps({"url": model.url, "openaiBaseUrl": model.openai_base_url}), flush=True)
        await stop.wait()
        print(
            json.dumps({"pending": len(model.pending), "mainRequests": len(model.main_requests)}),
            flush=True,
        )


def main() -> int:
    turns = parse_turns(json.load(sys.stdin))
    asyncio.run(serve(turns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
