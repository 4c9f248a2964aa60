"""`tama daemon` learns of its CLIs' exits from the event loop (pidfd), not from a thread per run."""

from __future__ import annotations

import asyncio
import json
import sys

# Runs in a fresh interpreter: the child watcher is process-wide. Spawns 20 processes at once,
# each living 0.3 s, and reports their exit codes and the most threads seen while they lived.
SCRIPT = """
import asyncio, json, sys, threading
from taskmachine.daemon.executor.supervisor import watch_children_from_the_loop

watched = watch_children_from_the_loop() if sys.argv[1] == "pidfd" else False

async def main():
    children = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", f"import sys, time; time.sleep(0.3); sys.exit({i % 3})")
        for i in range(20)
    ]
    threads = threading.active_count()
    codes = await asyncio.gather(*(child.wait() for child in children))
    return {"watched": watched, "threads": threads, "codes": codes}

print(json.dumps(asyncio.run(main())))
"""


async def _spawn_twenty(mode: str) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result


async def test_the_daemons_children_are_watched_without_a_thread_each() -> None:
    default = await _spawn_twenty("default")
    pidfd = await _spawn_twenty("pidfd")
    expected_codes = [i % 3 for i in range(20)]
    assert default["codes"] == expected_codes
    if sys.version_info < (3, 12):
        # Python 3.11's own way: a waiting thread per living child.
        assert isinstance(default["threads"], int) and default["threads"] > 20
    # The daemon's: same exit codes, no thread (3.12+ does so by itself).
    assert pidfd == {"watched": sys.version_info < (3, 12), "threads": 1, "codes": expected_codes}
