"""The config file: round trip, privacy, clear errors, the legacy path, TASKMACHINE_HOME."""

from __future__ import annotations

import json
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from taskmachine.daemon.config import (
    ConfigError,
    ConfigMissingError,
    MachineConfig,
    config_path,
    legacy_config_path,
    load_config,
    save_config,
)

MACHINE_ID = uuid.UUID("0b7c6f0e-8d1e-4a53-9a43-1f0a2f3c4d5e")


def _connected(**changes: object) -> MachineConfig:
    values: dict[str, object] = {
        "api_url": "https://tm.example.test/",
        "machine_id": MACHINE_ID,
        "machine_name": "laptop",
        "amqp_url": f"amqp://machine-{MACHINE_ID}:s3cret@127.0.0.1:5672/",
        "access_token": "at-123",
        "access_token_expires_at": datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
        "refresh_token": "rt-456",
    }
    values.update(changes)
    return MachineConfig.model_validate(values)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_round_trip_keeps_every_field_and_unknown_keys(machine_home: Path) -> None:
    repo_ws = uuid.uuid4()
    cfg = _connected(
        max_concurrency=2,
        permission_ceiling="full_auto",
        workspace_repos={str(repo_ws): "/srv/repos/app"},
        runtime_paths={"codex": "/opt/codex/bin/codex"},
        future_knob={"added": "by a newer tama"},
    )
    written = save_config(cfg)
    assert written == machine_home / "config.json" == config_path()

    loaded = load_config()
    assert loaded == cfg
    assert loaded.api_url == "https://tm.example.test"
    assert loaded.workspace_repos == {repo_ws: Path("/srv/repos/app")}
    assert loaded.connected
    # An unknown key survives a load/save round trip.
    save_config(loaded)
    assert json.loads(written.read_text())["future_knob"] == {"added": "by a newer tama"}


def test_defaults_follow_taskmachine_home(machine_home: Path) -> None:
    cfg = MachineConfig()
    assert cfg.api_url == "http://127.0.0.1:8000"
    assert cfg.execution_root == machine_home / "work"
    assert cfg.state_dir == machine_home / "state"
    assert cfg.max_concurrency == 4
    assert cfg.permission_ceiling == "safe"
    assert not cfg.connected


def test_save_creates_private_file_and_folder_even_with_open_umask(machine_home: Path) -> None:
    previous = os.umask(0)
    try:
        path = save_config(_connected())
    finally:
        os.umask(previous)
    assert _mode(path) == 0o600
    assert _mode(machine_home) == 0o700
    # Only the config itself is left behind: the temp file was renamed into place.
    assert [p.name for p in machine_home.iterdir()] == ["config.json"]


def test_save_replaces_an_existing_file_atomically(machine_home: Path) -> None:
    path = save_config(_connected(machine_name="old"))
    inode = path.stat().st_ino
    save_config(_connected(machine_name="new"))
    assert load_config().machine_name == "new"
    assert path.stat().st_ino != inode  # a new file renamed over, never rewritten in place
    assert _mode(path) == 0o600


def test_readable_by_others_is_refused_with_the_fix(machine_home: Path) -> None:
    path = save_config(_connected())
    path.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = str(caught.value)
    assert f"chmod 600 {path}" in message
    assert "644" in message
    assert "\n" not in message
    assert _mode(path) == 0o644  # the error changes nothing


def test_corrupt_json_names_file_line_and_column(machine_home: Path) -> None:
    path = machine_home / "config.json"
    _write(path, '{\n  "api_url": "http://127.0.0.1:8000",\n  "max_concurrency": ,\n}\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid JSON at line 3 column 22")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"max_concurrency": 0}, "max_concurrency: Input should be greater than or equal to 1"),
        ({"permission_ceiling": "yolo"}, "permission_ceiling: Input should be 'safe' or"),
        ({"api_url": "ftp://x"}, "api_url: must be an http:// or https:// URL"),
        ({"amqp_url": "http://h:5672/"}, "amqp_url: must be an amqp:// or amqps:// URL"),
        ({"runtime_paths": {"claud": "/x"}}, "runtime_paths: unknown tool 'claud'"),
        ({"execution_root": "work"}, "execution_root: 'work' must be an absolute path"),
        ({"access_token_expires_at": "2026-01-01T00:00:00"}, "must carry a time zone"),
        ({"machine_id": "not-a-uuid"}, "machine_id: Input should be a valid UUID"),
        (
            {
                "machine_id": str(MACHINE_ID),
                "amqp_url": "amqp://machine-other:pw@127.0.0.1:5672/",
            },
            f"amqp_url: broker user is 'machine-other', expected 'machine-{MACHINE_ID}'",
        ),
        ([1, 2], "must hold a JSON object, found list"),
    ],
)
def test_wrong_values_get_one_clear_line(machine_home: Path, values: object, expected: str) -> None:
    path = machine_home / "config.json"
    _write(path, json.dumps(values))
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_says_run_setup(machine_home: Path) -> None:
    with pytest.raises(ConfigMissingError) as caught:
        load_config()
    assert str(caught.value) == (
        f"{machine_home / 'config.json'}: not found; run `tama setup` to connect this machine"
    )


def test_legacy_path_is_read_when_the_new_one_is_absent(tmp_path: Path) -> None:
    legacy = legacy_config_path()
    assert legacy == tmp_path / "xdg" / "taskmachine" / "config.json"
    _write(legacy, _connected(machine_name="from-legacy").model_dump_json())
    assert load_config().machine_name == "from-legacy"

    # Saving migrates to the new path, which then wins.
    cfg = load_config().model_copy(update={"machine_name": "migrated"})
    save_config(cfg)
    assert load_config().machine_name == "migrated"
    assert json.loads(legacy.read_text())["machine_name"] == "from-legacy"


def test_legacy_path_defaults_to_dot_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert legacy_config_path() == tmp_path / "userhome" / ".config" / "taskmachine" / "config.json"


def test_legacy_file_must_be_private_too(tmp_path: Path) -> None:
    legacy = legacy_config_path()
    _write(legacy, "{}", mode=0o640)
    with pytest.raises(ConfigError, match=f"chmod 600 {legacy}"):
        load_config()


def test_expiry_is_stored_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    cfg = _connected(access_token_expires_at=datetime(2026, 1, 1, 14, 0, tzinfo=plus_two))
    assert cfg.access_token_expires_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert cfg.access_token_expires_at is not None
    assert cfg.access_token_expires_at.tzinfo == UTC


def test_bad_assignment_is_refused_and_changes_nothing() -> None:
    cfg = _connected()
    with pytest.raises(ValueError, match="max_concurrency"):
        cfg.max_concurrency = -1
    assert cfg.max_concurrency == 4
