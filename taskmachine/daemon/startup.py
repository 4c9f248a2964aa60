"""`tama daemon install-startup`: keep the daemon running as a systemd user unit or launchd agent.

Linux: `$XDG_CONFIG_HOME/systemd/user/tama.service` (default ~/.config/...), `Restart=always`
so an update's exit 75 (and a crash) restarts it, except exits 77 and 78 (credentials refused,
config unusable), which wait for a person to run `tama setup`. macOS:
`~/Library/LaunchAgents/org.taskmachine.tama.plist` with KeepAlive (launchd cannot exempt exit
codes; it retries those every ThrottleInterval). Both run this very interpreter
(`python -m taskmachine.cli daemon`), so an update into its environment is what restarts, and
both carry the PATH of the install, since service managers start with a bare one and the daemon
looks the coding CLIs up on PATH.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from taskmachine.daemon import exit_codes
from taskmachine.daemon.config import taskmachine_home

SERVICE = "tama.service"
LAUNCHD_LABEL = "org.taskmachine.tama"
_COMMAND_TIMEOUT = 30.0
# Passed into the service so it finds the same config and the same tools as this shell.
_PASSED_ENV = ("PATH", "TASKMACHINE_HOME", "LANG", "LC_ALL")


class StartupError(Exception):
    """The service could not be installed or removed; the message says why."""


@dataclass
class StartupResult:
    path: Path
    # What happened, one line each, for the person who ran the command.
    lines: list[str] = field(default_factory=list)


def daemon_argv() -> list[str]:
    return [sys.executable, "-m", "taskmachine.cli", "daemon"]


def _service_env() -> dict[str, str]:
    return {key: os.environ[key] for key in _PASSED_ENV if os.environ.get(key)}


def _systemd_quote(value: str) -> str:
    # systemd expands %-specifiers and splits on spaces; quote and escape accordingly.
    escaped = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"' if any(ch in value for ch in ' \t"\\') else escaped


def systemd_unit(argv: list[str], env: dict[str, str]) -> str:
    exec_start = " ".join(_systemd_quote(arg) for arg in argv)
    no_restart = " ".join(str(code) for code in exit_codes.NO_RESTART)
    lines = [
        "# Written by `tama daemon install-startup`; remove with `tama daemon install-startup",
        "# --uninstall`.",
        "[Unit]",
        "Description=Task Machine daemon (tama)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        *(f"Environment={_systemd_quote(f'{key}={value}')}" for key, value in env.items()),
        # Always back: after a crash, and after exit 75 (a new release was installed).
        "Restart=always",
        "RestartSec=5",
        # 77: credentials refused, 78: config unusable. Both need `tama setup` first.
        f"RestartPreventExitStatus={no_restart}",
        # SIGTERM drains: running agents finish their cleanup before the daemon exits.
        "KillMode=mixed",
        "TimeoutStopSec=120",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def launchd_plist(argv: list[str], env: dict[str, str], log_file: Path) -> str:
    document = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": argv,
        "EnvironmentVariables": env,
        "RunAtLoad": True,
        "KeepAlive": True,
        "ThrottleInterval": 10,
        "ExitTimeOut": 120,
        "ProcessType": "Background",
        "StandardOutPath": str(log_file),
        "StandardErrorPath": str(log_file),
    }
    return plistlib.dumps(document, sort_keys=False).decode()


def systemd_unit_path() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "systemd" / "user" / SERVICE


def launchd_plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def _run(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    output = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, output[-1] if output else f"exit status {done.returncode}"


def _systemctl_usable() -> bool:
    """systemctl exists and a user manager answers (not so in most containers, or over su)."""
    if shutil.which("systemctl") is None:
        return False
    usable, _ = _run(["systemctl", "--user", "show-environment"])
    return usable


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.chmod(0o644)
    temp.replace(path)


def _systemctl(*args: str) -> None:
    ok, detail = _run(["systemctl", "--user", *args])
    if not ok:
        raise StartupError(f"systemctl --user {' '.join(args)} failed: {detail}")


def install_systemd() -> StartupResult:
    path = systemd_unit_path()
    _write(path, systemd_unit(daemon_argv(), _service_env()))
    result = StartupResult(path, [f"wrote {path}"])
    if _systemctl_usable():
        _systemctl("daemon-reload")
        _systemctl("enable", SERVICE)
        # restart, not start: a daemon already running picks up the new unit too.
        _systemctl("restart", SERVICE)
        result.lines.append(f"enabled and started {SERVICE} (systemctl --user status tama)")
    else:
        result.lines.append(
            "systemctl --user is not usable here; start it yourself with: "
            f"systemctl --user daemon-reload && systemctl --user enable --now {SERVICE}"
        )
    return result


def uninstall_systemd() -> StartupResult:
    path = systemd_unit_path()
    result = StartupResult(path)
    if not path.exists():
        result.lines.append(f"nothing to remove: {path} does not exist")
        return result
    usable = _systemctl_usable()
    if usable:
        _systemctl("disable", "--now", SERVICE)
    path.unlink()
    result.lines.append(f"removed {path}")
    if usable:
        _systemctl("daemon-reload")
        result.lines.append(f"stopped and disabled {SERVICE}")
    else:
        result.lines.append(
            "systemctl --user is not usable here; if the service still runs, stop it with: "
            f"systemctl --user disable --now {SERVICE}"
        )
    return result


def _launchd_domain() -> str:
    return f"gui/{os.getuid()}"


def install_launchd() -> StartupResult:
    path = launchd_plist_path()
    log_file = taskmachine_home() / "logs" / "daemon.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    _write(path, launchd_plist(daemon_argv(), _service_env(), log_file))
    result = StartupResult(path, [f"wrote {path}"])
    if shutil.which("launchctl") is None:
        result.lines.append(
            f"launchctl not found; load it with: launchctl bootstrap gui/$UID {path}"
        )
        return result
    # Unload a previous version first; bootstrap refuses a label that is already loaded.
    _run(["launchctl", "bootout", f"{_launchd_domain()}/{LAUNCHD_LABEL}"])
    ok, detail = _run(["launchctl", "bootstrap", _launchd_domain(), str(path)])
    if not ok:
        raise StartupError(f"launchctl bootstrap failed: {detail}")
    result.lines.append(f"loaded {LAUNCHD_LABEL}; logs in {log_file}")
    return result


def uninstall_launchd() -> StartupResult:
    path = launchd_plist_path()
    result = StartupResult(path)
    if shutil.which("launchctl") is not None:
        _run(["launchctl", "bootout", f"{_launchd_domain()}/{LAUNCHD_LABEL}"])
    if not path.exists():
        result.lines.append(f"nothing to remove: {path} does not exist")
        return result
    path.unlink()
    result.lines.append(f"removed {path}")
    return result


def install(platform: str = sys.platform) -> StartupResult:
    if platform.startswith("linux"):
        return install_systemd()
    if platform == "darwin":
        return install_launchd()
    raise StartupError(f"install-startup supports Linux (systemd) and macOS, not {platform}")


def uninstall(platform: str = sys.platform) -> StartupResult:
    if platform.startswith("linux"):
        return uninstall_systemd()
    if platform == "darwin":
        return uninstall_launchd()
    raise StartupError(f"install-startup supports Linux (systemd) and macOS, not {platform}")


def restart_if_installed(platform: str = sys.platform) -> str | None:
    """Restart a running startup service (after `tama update`); what happened, or None."""
    if platform.startswith("linux") and systemd_unit_path().exists() and _systemctl_usable():
        ok, detail = _run(["systemctl", "--user", "try-restart", SERVICE])
        return f"restarted {SERVICE}" if ok else f"could not restart {SERVICE}: {detail}"
    if platform == "darwin" and launchd_plist_path().exists() and shutil.which("launchctl"):
        ok, detail = _run(["launchctl", "kickstart", "-k", f"{_launchd_domain()}/{LAUNCHD_LABEL}"])
        return f"restarted {LAUNCHD_LABEL}" if ok else f"could not restart: {detail}"
    return None
