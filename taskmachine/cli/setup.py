"""`tama setup`: connect this machine through a browser approval and write its config file."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import webbrowser
from typing import Annotated

import typer
from pydantic import ValidationError

from taskmachine.cli.common import fail
from taskmachine.daemon import exit_codes
from taskmachine.daemon.api import ApiClient, ApiError, ApiUnreachableError
from taskmachine.daemon.approval import request_approval, wait_for_decision
from taskmachine.daemon.config import (
    ConfigError,
    ConfigMissingError,
    MachineConfig,
    load_config,
    save_config,
)


def _existing() -> MachineConfig:
    """Settings to keep (execution root, runtimes, …); a broken file is replaced, not fatal."""
    try:
        return load_config()
    except ConfigMissingError:
        return MachineConfig()
    except ConfigError as exc:
        typer.echo(f"tama: {exc}\ntama: setup will write a new config file.", err=True)
        return MachineConfig()


def _can_open_browser() -> bool:
    # Without a display, webbrowser would start a text browser in this terminal.
    if sys.platform == "darwin" or sys.platform.startswith("win"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


async def _setup(cfg: MachineConfig, api_url: str, name: str, open_browser: bool) -> int:
    async with ApiClient(api_url) as client:
        try:
            ticket = await request_approval(client, name)
        except ApiUnreachableError as exc:
            raise fail(
                f"{exc}; is the server running, and is --api-url right?", exit_codes.UNREACHABLE
            ) from None
        except ApiError as exc:
            raise fail(f"the server refused the approval request: {exc}") from None
        local_expiry = ticket.expires_at.astimezone().strftime("%H:%M:%S")
        typer.echo(f"To connect this machine, open:\n\n    {ticket.approval_url}\n")
        typer.echo(f"and check that the page shows the code {ticket.user_code}.")
        if open_browser and _can_open_browser():
            await asyncio.to_thread(webbrowser.open, ticket.approval_url)
        typer.echo(f"Waiting for approval (until {local_expiry})…")
        try:
            outcome = await wait_for_decision(client, ticket)
        except ApiUnreachableError as exc:
            raise fail(f"{exc}; run `tama setup` again", exit_codes.UNREACHABLE) from None
        except ApiError as exc:
            raise fail(f"{exc}; run `tama setup` again") from None
    if outcome.decision == "DENIED":
        raise fail("the approval was denied; nothing was changed", exit_codes.SETUP_DENIED)
    if outcome.decision == "EXPIRED":
        raise fail(
            "the approval expired before anyone approved it; run `tama setup` again",
            exit_codes.SETUP_EXPIRED,
        )
    assert outcome.credentials is not None
    credentials = outcome.credentials
    path = await asyncio.to_thread(save_config, credentials.apply_to(cfg, api_url))
    count = len(credentials.workspace_ids)
    typer.echo(
        f"Approved: this machine is {credentials.machine_name!r} ({credentials.machine_id}), "
        f"serving {count} workspace{'s' if count != 1 else ''}.\n"
        f"Credentials saved to {path}.\n"
        "Start the daemon with `tama daemon`, or keep it running with "
        "`tama daemon install-startup`."
    )
    return exit_codes.OK


def setup_command(
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="The Task Machine server (default: the configured one)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="What to call this machine (default: hostname).")
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the approval URL.")
    ] = False,
) -> None:
    """Connect this machine: approve it in the browser, then its credentials are saved.

    Exit codes: 0 approved, 3 denied, 4 expired, 5 server unreachable, 1 other errors.
    """
    cfg = _existing()
    try:
        chosen = MachineConfig(api_url=api_url or cfg.api_url).api_url
    except ValidationError:
        raise fail(
            f"--api-url {api_url!r}: must be an http:// or https:// URL with a host",
            exit_codes.USAGE,
        ) from None
    machine_name = (name if name is not None else socket.gethostname()).strip()
    if not machine_name or len(machine_name) > 120:
        raise fail("--name must be 1 to 120 characters", exit_codes.USAGE)
    try:
        code = asyncio.run(_setup(cfg, chosen, machine_name, not no_browser))
    except KeyboardInterrupt:
        raise fail("setup cancelled; nothing was changed", 130) from None
    raise typer.Exit(code)
