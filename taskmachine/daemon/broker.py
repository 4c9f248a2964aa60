"""The daemon's connection to RabbitMQ, as the machine's own broker user, kept up for ever.

`BrokerSession.run()` connects, checks the events exchange and the machine's queues, starts the
control consumer, and then waits until the connection or a channel closes or the daemon stops;
after a loss it reconnects with jittered exponential backoff. We supervise plain connections
instead of aio-pika's `connect_robust` so that errors decide what happens next: a refused login
(the machine was removed, or its password changed) stops the daemon with a clear message, where
a robust connection would retry silently for ever; everything else retries.

Publishing goes through `publish_event`, which never waits for a connection: while there is none
it returns False at once (a heartbeat is worth sending only now, not later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractConnection, AbstractExchange, AbstractIncomingMessage

from taskmachine.daemon.waits import Backoff, wait_for_event
from taskmachine.wire.topology import (
    machine_username,
    open_events_exchange,
    open_machine_queues,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0

MessageHandler = Callable[[AbstractIncomingMessage], Awaitable[None]]
ConnectionHandler = Callable[[AbstractConnection], Awaitable[None]]


class BrokerRefusedError(Exception):
    """The broker refused this machine's credentials or permissions: retrying cannot help."""


def _where(amqp_url: str) -> str:
    """host:port/vhost of an AMQP URL, without the credentials (safe for messages and logs)."""
    parts = urlsplit(amqp_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}{parts.path or '/'}"


def _refused(exc: BaseException) -> bool:
    """True for errors that mean "not allowed" rather than "not now"."""
    if isinstance(
        exc,
        aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError,
    ):
        return True
    return isinstance(exc, aiormq.exceptions.ChannelAccessRefused)


class BrokerSession:
    """One machine's broker connection: events exchange for publishing, control queue consumed."""

    def __init__(
        self,
        amqp_url: str,
        machine_id: str,
        *,
        on_control: MessageHandler,
        on_connected: Callable[[], None] = lambda: None,
        on_connection: ConnectionHandler | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._url = amqp_url
        self._machine_id = machine_id
        self._user_id = machine_username(machine_id)
        self._on_control = on_control
        self._on_connected = on_connected
        # Given every new connection (the run executor consumes the jobs queue through it).
        self._on_connection = on_connection
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._exchange: AbstractExchange | None = None
        self._connection: AbstractConnection | None = None
        self.where = _where(amqp_url)
        # How many times a connection was established (tests and logs read it).
        self.connections_made = 0

    @property
    def connected(self) -> bool:
        return self._exchange is not None

    @property
    def user_id(self) -> str:
        return self._user_id

    async def publish_event(self, routing_key: str, body: bytes, *, within: float) -> bool:
        """Publish to tama.events as this machine; False if not connected or not confirmed."""
        exchange = self._exchange
        if exchange is None:
            return False
        message = aio_pika.Message(
            body,
            content_type="application/json",
            user_id=self._user_id,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        try:
            await exchange.publish(message, routing_key=routing_key, timeout=within)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A lost connection shows up here first; run() notices the close and reconnects.
            log.warning("publish of %s failed: %s", routing_key, exc or type(exc).__name__)
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set; raises BrokerRefusedError when refused."""
        while not stop.is_set():
            try:
                await self._session(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _refused(exc):
                    raise BrokerRefusedError(
                        f"the broker at {self.where} refused {self._user_id}: {exc}"
                    ) from exc
                delay = self._backoff.next_delay()
                log.warning(
                    "broker at %s: %s; retrying in %.1f s",
                    self.where,
                    str(exc) or type(exc).__name__,
                    delay,
                )
                await wait_for_event(stop, delay)

    async def _session(self, stop: asyncio.Event) -> None:
        connection = await aio_pika.connect(self._url, timeout=CONNECT_TIMEOUT)
        self._connection = connection
        lost = asyncio.Event()
        reason: list[BaseException | None] = []

        def on_close(_sender: Any, exc: BaseException | None = None) -> None:
            reason.append(exc)
            lost.set()

        connection.close_callbacks.add(on_close)
        try:
            events_channel = await connection.channel()
            events_channel.close_callbacks.add(on_close)
            exchange = await open_events_exchange(events_channel)
            control_channel = await connection.channel()
            control_channel.close_callbacks.add(on_close)
            # One control message at a time: an update must not race a cancel.
            await control_channel.set_qos(prefetch_count=1)
            queues = await open_machine_queues(control_channel, self._machine_id)
            await queues.control.consume(self._on_control, no_ack=False)
            if self._on_connection is not None:
                await self._on_connection(connection)
            self._exchange = exchange
            self.connections_made += 1
            self._backoff.reset()
            log.info("connected to the broker at %s as %s", self.where, self._user_id)
            self._on_connected()
            stopped = asyncio.ensure_future(stop.wait())
            closed = asyncio.ensure_future(lost.wait())
            try:
                await asyncio.wait({stopped, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                closed.cancel()
            if lost.is_set() and not stop.is_set():
                cause = next((exc for exc in reason if exc is not None), None)
                raise ConnectionError(f"connection lost ({cause or 'closed'})")
        finally:
            self._exchange = None
            self._connection = None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await connection.close()


async def probe_broker(
    amqp_url: str, machine_id: str, *, within: float = CONNECT_TIMEOUT
) -> str | None:
    """Log in as the machine and look at its exchange and queues; None if all is well, else why."""
    where = _where(amqp_url)
    try:
        async with asyncio.timeout(within):
            connection = await aio_pika.connect(amqp_url, timeout=within)
            async with connection:
                channel = await connection.channel()
                await open_events_exchange(channel)
                await open_machine_queues(channel, machine_id)
    except TimeoutError:
        return f"no answer from {where} within {within:g} s"
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        return f"{where}: the machine's queues are missing ({exc}); run `tama setup` again"
    except Exception as exc:
        if _refused(exc):
            return f"{where} refused {machine_username(machine_id)}; run `tama setup` again"
        return f"cannot connect to {where}: {exc or type(exc).__name__}"
    return None
