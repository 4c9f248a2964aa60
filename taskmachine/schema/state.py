"""What the whole server process shares: settings, database, hashing, live fan-out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskmachine.auth.tokens import TokenHasher
from taskmachine.db import SessionFactory
from taskmachine.foreground import Foreground
from taskmachine.live import LiveHub
from taskmachine.settings import Settings

if TYPE_CHECKING:
    from taskmachine.metrics import Metrics


@dataclass
class AppState:
    settings: Settings
    session_factory: SessionFactory
    hasher: TokenHasher
    hub: LiveHub
    metrics: Metrics
    # Optional services later issues attach (broker admin, dispatcher, mailer…).
    services: dict[str, Any] = field(default_factory=dict)
    # API requests in flight, for background work that steps aside for them.
    foreground: Foreground = field(default_factory=Foreground)
