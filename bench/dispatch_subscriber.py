"""The `runTranscript` subscriber of bench/dispatch.py's transcript phase, in a process of its
own, as a browser or an integration would be: it does not share the server's event loop, so the
server's work after a line's delivery (its commit) does not delay the subscriber's receipt, and
the subscriber's own parsing is not counted as the server's CPU.

The first stdin line is a JSON object: {"url", "token", "run_id", "lines"}. The process
subscribes over graphql-transport-ws, answers `ready` once the first message arrived (the
subscription is listening from then on), then reads until it has seen `lines` lines of the
no-op CLI ("mark <i> <wall clock>") and answers one JSON line: {"samples": [ms from the CLI's
clock to receipt, in order], "cpu_seconds": its own CPU meanwhile}. Loopback only: the URL
comes from the bench.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from gql import Client, GraphQLRequest, gql
from gql.transport.websockets import WebsocketsTransport

TRANSCRIPT = "subscription($r: ID!) { runTranscript(runId: $r) { seq events } }"


async def main() -> int:
    loop = asyncio.get_running_loop()
    job: dict[str, Any] = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    lines = int(job["lines"])
    transport = WebsocketsTransport(
        url=str(job["url"]).replace("http", "ws", 1) + "/graphql",
        init_payload={"authorization": f"Bearer {job['token']}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    samples: list[float] = []
    async with Client(transport=transport) as session:
        request = GraphQLRequest(gql(TRANSCRIPT), variable_values={"r": job["run_id"]})
        subscription = session.subscribe(request)
        await asyncio.wait_for(anext(subscription), 30)
        print("ready", flush=True)
        cpu = time.process_time()
        while len(samples) < lines:
            result = await asyncio.wait_for(anext(subscription), 30)
            got = time.time()
            for event in result["runTranscript"]["events"]:
                text = str(event.get("text", ""))
                if text.startswith("mark "):
                    samples.append((got - float(text.split()[2])) * 1000)
        cpu = time.process_time() - cpu
        await subscription.aclose()
    print(json.dumps({"samples": samples, "cpu_seconds": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
