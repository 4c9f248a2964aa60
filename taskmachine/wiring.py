"""Which components a production server runs; tests compose their own."""

from __future__ import annotations

from taskmachine.server import ServerOptions
from taskmachine.settings import Settings


def default_options(settings: Settings) -> ServerOptions:
    return ServerOptions(migrate_on_start=True, components=[])
