"""The dispatcher as one server component: broker link, heartbeat and run-event consumers,
scheduler, outbox relay, sweeper."""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, AbstractQueue

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

    async def start(self, state: AppState) -> None:
        settings = state.settings
        self.link = BrokerLink(settings.amqp_url, BrokerAdmin.from_settings(settings))
        await self.link.start()
        state.services["broker"] = self.link
        topology = self.link.topology
        # Deep enough that the next batches are parsed while one is written (a batch is acked
        # only once it commits).
        ingest_channel = await self._channel(
            settings.heartbeat_batch_size * HEARTBEAT_PREFETCH_BATCHES
        )
        self.ingest = HeartbeatIngest(
            settings, state.session_factory, state.metrics, state.foreground
        )
        state.services["ingest"] = self.ingest
        await self.ingest.start(ingest_channel, topology.server_heartbeats.name)
        self.run_events = RunEvents(state.session_factory, state.hub)
        self.events = RunEventQueue(state.metrics, default=self.run_events.handle)
        await self.events.start(await self._queue(topology.server_events.name))
        desk = ClaimDesk(settings, state.session_factory, self.link, state.metrics)
        self.claims = RunEventQueue(state.metrics, handlers={"claim": desk.handle})
        await self.claims.start(await self._queue(topology.server_claims.name))
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

    async def _channel(self, prefetch: int) -> AbstractChannel:
        # Each consumer gets a channel of its own: one's prefetch must not throttle another's,
        # nor publishing.
        assert self.link is not None and self.link.connection is not None
        channel = await self.link.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def _queue(self, name: str) -> AbstractQueue:
        """A run-event queue, on a channel of its own."""
        channel = await self._channel(RUN_EVENTS_PREFETCH)
        return await channel.get_queue(name, ensure=False)

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
        if self.run_events is not None:
            self.run_events.close()
        if self.ingest is not None:
            await self.ingest.stop()
        if self.link is not None:
            await self.link.stop()
