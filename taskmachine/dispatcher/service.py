"""The dispatcher as one server component: broker link, heartbeat and run-event consumers,
scheduler, outbox relay, sweeper."""

from __future__ import annotations

from aio_pika.abc import AbstractChannel

from taskmachine.dispatcher.broker_admin import BrokerAdmin
from taskmachine.dispatcher.claims import ClaimDesk
from taskmachine.dispatcher.event_queue import RunEventQueue
from taskmachine.dispatcher.ingest import HeartbeatIngest
from taskmachine.dispatcher.link import BrokerLink
from taskmachine.dispatcher.relay import Relay
from taskmachine.dispatcher.run_events import RunEvents
from taskmachine.dispatcher.scheduler import Scheduler
from taskmachine.dispatcher.sweeper import Sweeper
from taskmachine.schema.state import AppState

# Run events in flight at once; each run's are still applied in order (RunEvents).
RUN_EVENTS_PREFETCH = 256
# Heartbeats in flight, in batches of heartbeat_batch_size.
HEARTBEAT_PREFETCH_BATCHES = 4


class Dispatcher:
    """Started by the server's lifespan; publishes itself in `state.services`."""

    def __init__(self, *, sweeper: bool = True) -> None:
        self.run_sweeper = sweeper
        self.link: BrokerLink | None = None
        self.ingest: HeartbeatIngest | None = None
        self.events: RunEventQueue | None = None
        self.claims: RunEventQueue | None = None
        self.sweeper: Sweeper | None = None
        self.scheduler: Scheduler | None = None
        self.relay: Relay | None = None
        self.run_events: RunEvents | None = None
        self._ingest_channel: AbstractChannel | None = None
        self._events_channel: AbstractChannel | None = None
        self._claims_channel: AbstractChannel | None = None

    async def start(self, state: AppState) -> None:
        settings = state.settings
        self.link = BrokerLink(settings.amqp_url, BrokerAdmin.from_settings(settings))
        await self.link.start()
        state.services["broker"] = self.link
        assert self.link.connection is not None
        # Each consumer gets a channel of its own: one's prefetch must not throttle the other,
        # nor publishing.
        self._ingest_channel = await self.link.connection.channel()
        # Deep enough that the next batches are parsed while one is written (a batch is acked
        # only once it commits).
        await self._ingest_channel.set_qos(
            prefetch_count=settings.heartbeat_batch_size * HEARTBEAT_PREFETCH_BATCHES
        )
        self.ingest = HeartbeatIngest(settings, state.session_factory, state.metrics)
        state.services["ingest"] = self.ingest
        await self.ingest.start(self._ingest_channel, self.link.topology.server_heartbeats.name)
        self.run_events = RunEvents(state.session_factory, state.hub)
        self._events_channel = await self.link.connection.channel()
        await self._events_channel.set_qos(prefetch_count=RUN_EVENTS_PREFETCH)
        events = await self._events_channel.get_queue(
            self.link.topology.server_events.name, ensure=False
        )
        self.events = RunEventQueue(state.metrics)
        self.events.default = self.run_events.handle
        await self.events.start(events)
        self._claims_channel = await self.link.connection.channel()
        await self._claims_channel.set_qos(prefetch_count=RUN_EVENTS_PREFETCH)
        claims = await self._claims_channel.get_queue(
            self.link.topology.server_claims.name, ensure=False
        )
        self.claims = RunEventQueue(state.metrics)
        self.claims.handlers["claim"] = ClaimDesk(
            settings, state.session_factory, self.link, state.metrics
        ).handle
        await self.claims.start(claims)
        self.relay = Relay(state.session_factory, self.link, state.hasher, state.hub, state.metrics)
        state.services["relay"] = self.relay
        await self.relay.start()
        self.scheduler = Scheduler(settings, state.session_factory, state.hub, self.relay)
        state.services["scheduler"] = self.scheduler
        await self.scheduler.start()
        self.sweeper = Sweeper(settings, state.session_factory)
        state.services["sweeper"] = self.sweeper
        if self.run_sweeper:
            await self.sweeper.start()

    async def stop(self) -> None:
        if self.sweeper is not None:
            await self.sweeper.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.claims is not None:
            await self.claims.stop()
        if self.events is not None:
            await self.events.stop()
        if self.ingest is not None:
            await self.ingest.stop()
        if self.link is not None:
            await self.link.stop()
