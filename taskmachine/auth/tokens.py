"""Random bearer secrets, stored only as keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from taskmachine.settings import Settings

# Prefixes tell a leaked secret's kind at a glance (and let secret scanners find them).
PERSONAL_TOKEN_PREFIX = "tm_pat_"
SESSION_PREFIX = "tm_ses_"
MAGIC_LINK_PREFIX = "tm_ml_"
MACHINE_ACCESS_PREFIX = "tm_mat_"
MACHINE_REFRESH_PREFIX = "tm_mrt_"
APPROVAL_POLL_PREFIX = "tm_map_"
RUN_TOKEN_PREFIX = "tm_run_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


class TokenHasher:
    """HMAC-SHA256 with a server pepper: a stolen database alone does not yield usable tokens."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper

    def hash(self, token: str) -> str:
        return hmac.new(self._pepper, token.encode(), hashlib.sha256).hexdigest()


def load_pepper(settings: Settings) -> bytes:
    """The configured secret, else one generated on first start into the data directory."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.data_dir / "secret"
    if not path.exists():
        _write_new_secret(path)
    return path.read_bytes().strip()


def _write_new_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
