"""A wrong setting stops start-up with one clear line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskmachine.settings import SettingsError, load_settings

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TASKMACHINE_DATABASE_URL": "mysql://x"}, "TASKMACHINE_DATABASE_URL: must start with"),
        ({"TASKMACHINE_AMQP_URL": "http://broker"}, "TASKMACHINE_AMQP_URL: must be an amqp://"),
        ({"TASKMACHINE_PORT": "70000"}, "TASKMACHINE_PORT:"),
        ({"TASKMACHINE_PUBLIC_URL": "localhost"}, "TASKMACHINE_PUBLIC_URL: must be an http"),
        ({"TASKMACHINE_LOG_LEVEL": "LOUD"}, "TASKMACHINE_LOG_LEVEL: must be one of"),
        ({"TASKMACHINE_MIN_CLI_VERSION": "banana"}, "min_cli_version: 'banana' is not a version"),
    ],
)
def test_wrong_values_name_the_variable(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_serve_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "TASKMACHINE_DATA_DIR": str(tmp_path), "TASKMACHINE_PORT": "nope"}
    result = subprocess.run(
        [str(BIN / "taskmachine"), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskmachine: TASKMACHINE_PORT:")


def test_first_start_writes_secret_outside_repo(tmp_path: Path) -> None:
    from taskmachine.auth.tokens import load_pepper

    settings = load_settings(data_dir=tmp_path / "d")
    first = load_pepper(settings)
    assert load_pepper(settings) == first and len(first) == 64
    assert ((tmp_path / "d" / "secret").stat().st_mode & 0o777) == 0o600
