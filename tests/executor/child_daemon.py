"""A daemon stand-in in its own process, for tests that SIGKILL it mid-run.

    python -m tests.executor.child_daemon '<json>'
        {"amqp_url", "machine_id", "execution_root", "state_dir", "fake_cli", "env"}

It runs a RunExecutor (claims always accepted) on one plain connection, prints "ready" once
started, and runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import aio_pika

from taskmachine.daemon.adapters import Adapter, ClaudeAdapter
from taskmachine.daemon.config import MachineConfig
from taskmachine.daemon.executor import RunExecutor


class AcceptAll:
    async def claim(self, run_id: uuid.UUID, attempt: int) -> bool:
        return True


async def main(options: dict[str, object]) -> None:
    config = MachineConfig(
        execution_root=Path(str(options["execution_root"])),
        state_dir=Path(str(options["state_dir"])),
        max_concurrency=2,
    )
    fake = Path(str(options["fake_cli"]))

    def factory(runtime: str) -> Adapter:
        return ClaudeAdapter(fake)

    env = options["env"]
    assert isinstance(env, dict)
    executor = RunExecutor(
        config, str(options["machine_id"]), AcceptAll(), adapter_factory=factory, base_env=env
    )
    connection = await aio_pika.connect(str(options["amqp_url"]), timeout=10)
    await executor.start(connection)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
