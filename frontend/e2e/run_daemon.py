"""Runs the real tama daemon for the browser tests, from credentials the approval flow handed over.

Reads one JSON object on stdin: the `pollMachineApproval` credentials plus `apiUrl`,
`executionRoot` and `runtimePaths` ({"claude": path, "codex": path}). Runs until SIGTERM.
(Stands in for `tama setup` writing ~/.taskmachine/config.json and `tama daemon` reading it.)
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

from taskmachine.daemon.config import MachineConfig
from taskmachine.daemon.daemon import Daemon


def main() -> int:
    raw = json.load(sys.stdin)
    cfg = MachineConfig(
        api_url=raw["apiUrl"],
        machine_id=uuid.UUID(raw["machineId"]),
        machine_name=raw["machineName"],
        amqp_url=raw["amqpUrl"],
        access_token=raw["accessToken"],
        refresh_token=raw["refreshToken"],
        execution_root=Path(raw["executionRoot"]),
        state_dir=Path(raw["executionRoot"]) / ".state",
        runtime_paths={name: Path(path) for name, path in raw["runtimePaths"].items()},
        heartbeat_interval_seconds=1.0,
    )
    return asyncio.run(Daemon(cfg).run())


if __name__ == "__main__":
    sys.exit(main())
