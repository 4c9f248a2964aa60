"""The assigning clients of bench/dispatch.py's throughput phase, in a process of their own, so
the load generator does not share the server's event loop (the bench runs the server in its
own process).

The first stdin line is a JSON object: {"url", "token", "pairs": [[task id, agent id], …],
"parallel"}. The process warms its connections up, answers `ready`, waits for `go`, then sends
`assignTask` for every pair from `parallel` clients at once and answers one JSON line:
{"seconds": from go to the last response, "cpu_seconds": its own CPU meanwhile, "errors": [first
few GraphQL errors]}. Loopback only: the URL comes from the bench.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx

ASSIGN = "mutation($t: ID!, $a: ID!) { assignTask(input: {taskId: $t, agentId: $a}) { id } }"


async def main() -> int:
    loop = asyncio.get_running_loop()
    job: dict[str, Any] = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    pairs: list[list[str]] = job["pairs"]
    parallel = int(job["parallel"])
    headers = {"authorization": f"Bearer {job['token']}"}
    errors: list[Any] = []
    async with httpx.AsyncClient(
        base_url=job["url"], timeout=60, limits=httpx.Limits(max_connections=parallel)
    ) as http:

        async def warm() -> None:
            await http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)

        await asyncio.gather(*(warm() for _ in range(parallel)))
        print("ready", flush=True)
        if (await loop.run_in_executor(None, sys.stdin.readline)).strip() != "go":
            return 2
        cursor = iter(pairs)

        async def assigner() -> None:
            for task_id, agent_id in cursor:
                response = await http.post(
                    "/graphql",
                    json={"query": ASSIGN, "variables": {"t": task_id, "a": agent_id}},
                    headers=headers,
                )
                body = response.json()
                if body.get("errors") and len(errors) < 5:
                    errors.append(body["errors"])

        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(assigner() for _ in range(parallel)))
        answer = {
            "seconds": time.monotonic() - started,
            "cpu_seconds": time.process_time() - cpu,
            "errors": errors,
        }
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
