"""Small helpers shared by the tama commands."""

from __future__ import annotations

import typer

from taskmachine.daemon import exit_codes
from taskmachine.daemon.config import ConfigError, MachineConfig, load_config


def fail(message: str, code: int = exit_codes.FAILED) -> typer.Exit:
    """Print `tama: message` to stderr; the Exit to raise."""
    typer.echo(f"tama: {message}", err=True)
    return typer.Exit(code)


def connected_config(code: int = exit_codes.FAILED) -> MachineConfig:
    """The config of a set-up machine, or exit with a message saying what to do."""
    try:
        cfg = load_config()
    except ConfigError as exc:
        raise fail(str(exc), code) from None
    if not cfg.connected:
        raise fail("this machine is not set up yet; run `tama setup`", code)
    return cfg
