"""`tama status`: `ok` when the API and the broker accept this machine, else what failed."""

from __future__ import annotations

import asyncio

import typer

from taskmachine.cli.common import connected_config, fail
from taskmachine.daemon import exit_codes
from taskmachine.daemon.status import check


def status_command() -> None:
    """Print `ok` when the API and the broker both accept this machine; else say what failed."""
    cfg = connected_config()
    checks = asyncio.run(check(cfg))
    failed = [item for item in checks if not item.ok]
    if not failed:
        typer.echo("ok")
        return
    for item in failed:
        typer.echo(f"{item.name}: {item.problem}", err=True)
    raise fail(f"{len(failed)} of {len(checks)} checks failed", exit_codes.FAILED)
