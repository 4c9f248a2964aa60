"""`tama update [VERSION]`: install a tama release into this environment, by hand."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from taskmachine.cli.common import fail
from taskmachine.daemon.config import ConfigError, ConfigMissingError, MachineConfig, load_config
from taskmachine.daemon.startup import restart_if_installed
from taskmachine.daemon.updater import UpdateError, install_release


def update_command(
    version: Annotated[
        str | None, typer.Argument(help="The version to install (default: the newest).")
    ] = None,
) -> None:
    """Install a tama release (from update_index_url / update_find_links in the config).

    Verifies the installed version, then restarts the startup service if one runs.
    """
    try:
        cfg = load_config()
    except ConfigMissingError:
        cfg = MachineConfig()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"installing {f'tama {version}' if version else 'the newest tama'}…")
    try:
        result = asyncio.run(install_release(cfg, version))
    except UpdateError as exc:
        raise fail(f"update failed: {exc}") from None
    if not result.changed:
        typer.echo(f"tama {result.installed} is installed already")
        return
    typer.echo(f"tama updated: {result.previous} → {result.installed}")
    restarted = restart_if_installed()
    typer.echo(restarted or "restart `tama daemon` to run the new version")
