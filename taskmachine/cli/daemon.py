"""`tama daemon` (run in the foreground) and `tama daemon install-startup`."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer

from taskmachine import logs
from taskmachine.cli.common import connected_config, fail
from taskmachine.daemon import exit_codes
from taskmachine.daemon.daemon import Daemon
from taskmachine.daemon.executor.supervisor import watch_children_from_the_loop
from taskmachine.daemon.startup import StartupError, install, uninstall

app = typer.Typer(
    help="Run the daemon in the foreground (Ctrl-C or SIGTERM drains), or install it as a service.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def daemon_command(
    ctx: typer.Context,
    log_level: Annotated[
        str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.", case_sensitive=False)
    ] = "INFO",
    log_json: Annotated[bool, typer.Option(help="Log one JSON object per line.")] = False,
) -> None:
    """Connect to the broker, send heartbeats and take requests until stopped.

    Exit codes: 0 stopped, 75 updated (restart me), 77 credentials refused, 78 config unusable.
    """
    if ctx.invoked_subcommand is not None:
        return
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise fail(
            f"--log-level {log_level!r}: use DEBUG, INFO, WARNING or ERROR", exit_codes.USAGE
        )
    cfg = connected_config(exit_codes.CONFIG_INVALID)
    logs.configure(level, as_json=log_json)
    # The AMQP libraries narrate every reconnect at INFO; ours says what matters.
    for name in ("aio_pika", "aiormq"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    daemon = Daemon(cfg)
    watch_children_from_the_loop()
    code = asyncio.run(daemon.run())
    if code not in (exit_codes.OK, exit_codes.RESTART_FOR_UPDATE) and daemon.exit_message:
        typer.echo(f"tama: {daemon.exit_message}", err=True)
    raise typer.Exit(code)


@app.command("install-startup")
def install_startup_command(
    uninstall_: Annotated[
        bool, typer.Option("--uninstall", help="Stop the service and remove it.")
    ] = False,
) -> None:
    """Keep the daemon running: a systemd user unit (Linux) or a launchd agent (macOS)."""
    try:
        if uninstall_:
            result = uninstall()
        else:
            connected_config()
            result = install()
    except StartupError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename or 'startup file'}: {exc.strerror}") from None
    for line in result.lines:
        typer.echo(line)
    sys.stdout.flush()
