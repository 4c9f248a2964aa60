"""The daemon's run executor: jobs in, CLI processes supervised, run events out through a spool.

    executor.py    RunExecutor: the jobs-queue consumer (prefetch = free slots, claim, ack)
    claim.py       Claimer protocol, BrokerClaimer (RunClaim/ClaimAnswer), HttpClaimer (claimRun)
    runner.py      Run: one attempt end to end (folder, process, transcript, finished report)
    supervisor.py  the CLI's process group: limits, cancel (SIGTERM, grace, SIGKILL), cleanup
    workspace.py   run folders, git worktrees on tama/run-<id>, skill files, diff stat
    output.py      live transcript batching (at once when idle, ≤ 50 ms / 64 KB under load)
    publisher.py   spool → tama.events, in order, ≤ 64 confirms awaited; replay after reconnect
    spool.py       the SQLite spool in the state directory
    provider.py    model provider overrides (env var or config key)
    idle.py        the Executor protocol the daemon's loops use, and IdleExecutor

This package takes the place of the earlier `taskmachine/daemon/executor.py` module: `Executor`
and `IdleExecutor` are importable from here as they were from there.
"""

from taskmachine.daemon.executor.claim import (
    BrokerClaimer,
    Claimer,
    ClaimUnavailable,
    HttpClaimer,
)
from taskmachine.daemon.executor.executor import AdapterFactory, RunExecutor
from taskmachine.daemon.executor.idle import Executor, IdleExecutor
from taskmachine.daemon.executor.provider import load_provider_overrides

__all__ = [
    "AdapterFactory",
    "BrokerClaimer",
    "ClaimUnavailable",
    "Claimer",
    "Executor",
    "HttpClaimer",
    "IdleExecutor",
    "RunExecutor",
    "load_provider_overrides",
]
