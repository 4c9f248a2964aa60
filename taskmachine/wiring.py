"""Which components a production server runs; tests compose their own."""

from __future__ import annotations

from taskmachine.server import Component, ServerOptions
from taskmachine.settings import Settings


def default_options(settings: Settings) -> ServerOptions:
    from taskmachine.checkpointer import WalCheckpointer
    from taskmachine.collector import PacedCollector

    # First, so the other components' start-up garbage is collected the paced way too.
    components: list[Component] = [PacedCollector(), WalCheckpointer()]
    if settings.broker_enabled:
        from taskmachine.dispatcher.service import Dispatcher

        components.append(Dispatcher())
    return ServerOptions(migrate_on_start=True, components=components)
