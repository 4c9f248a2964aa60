"""The typer app behind the `tama` console script.

Small commands live here; each larger command or command group gets its own module under
taskmachine/cli/ and is registered in `_register_commands` below, e.g.

    from taskmachine.cli import setup, tasks
    app.command("setup")(setup.setup)            # a single command
    app.add_typer(tasks.app, name="tasks")        # a group: tama tasks …

Planned: setup, status, daemon (+ install-startup), update, and the agent command groups.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from taskmachine import __version__
from taskmachine.daemon.config import ConfigError, ConfigMissingError, MachineConfig, load_config
from taskmachine.daemon.detect import DEFAULT_PROBE_TIMEOUT, RuntimeDetector, RuntimeInfo

app = typer.Typer(
    name="tama",
    help="Task Machine on this computer: connect it, run the daemon, inspect its coding tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"tama: {message}", err=True)
    return typer.Exit(1)


def _config_or_defaults() -> MachineConfig:
    """The config file, or the defaults on a machine that was never set up."""
    try:
        return load_config()
    except ConfigMissingError:
        return MachineConfig()
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@app.command("version")
def version_command() -> None:
    """Print the tama version."""
    typer.echo(f"tama {__version__}")


def _format_runtime(info: RuntimeInfo) -> list[str]:
    if info.available:
        head = [info.name.ljust(8), "available", info.version or "?", info.path or ""]
    else:
        head = [info.name.ljust(8), "missing  ", info.reason or "unknown reason"]
        if info.path:
            head.append(f"(at {info.path})")
    lines = ["  ".join(head)]
    id_width = max((len(model.id) for model in info.models), default=0)
    name_width = max((len(model.display_name) for model in info.models), default=0)
    for model in info.models:
        levels = ", ".join(
            f"{level} (default)" if level == model.default_reasoning_level else level
            for level in model.reasoning_levels
        )
        label = f"{model.id.ljust(id_width)}  {model.display_name.ljust(name_width)}"
        lines.append(f"    {label}  {levels}".rstrip())
    return lines


@app.command("runtimes")
def runtimes_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON for programs instead of a table.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each probe of a tool may take.")
    ] = DEFAULT_PROBE_TIMEOUT,
) -> None:
    """List every supported coding tool: available with version and models, or missing and why.

    Exits 0 even when tools are missing: this is a report.
    """
    cfg = _config_or_defaults()
    detector = RuntimeDetector(runtime_paths=cfg.runtime_paths, timeout=timeout)
    infos = asyncio.run(detector.detect())
    if as_json:
        payload = {"runtimes": [info.model_dump(mode="json") for info in infos]}
        typer.echo(json.dumps(payload, indent=2))
        return
    blocks = ["\n".join(_format_runtime(info)) for info in infos]
    typer.echo("\n\n".join(blocks))


def _register_commands() -> None:
    """Register the command modules under taskmachine/cli/ (see the module docstring)."""
    from taskmachine.cli import daemon, setup, status, update

    app.command("setup")(setup.setup_command)
    app.command("status")(status.status_command)
    app.command("update")(update.update_command)
    app.add_typer(daemon.app, name="daemon")

    # The agent's commands inside a run (authenticated by TASKMACHINE_RUN_TOKEN).
    from taskmachine.cli.agent import approvals, chat, memory, questions, tasks

    app.add_typer(tasks.app, name="tasks")
    app.add_typer(memory.app, name="memory")
    app.add_typer(questions.app, name="questions")
    app.add_typer(approvals.app, name="approvals")
    app.add_typer(chat.app, name="chat")


_register_commands()


def main() -> None:
    """Entry point of the `tama` console script."""
    app()
