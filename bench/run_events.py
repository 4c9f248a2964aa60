"""How fast a daemon's run events reach the broker: the spool and publisher beside raw aio-pika.

Every run event a daemon reports (claim, start, transcript output, finish) is written to its spool
and published persistent, with a confirm, before it is deleted from the spool. This bench sends
the same events, on loopback, to a durable queue made for the run (deleted afterwards), with a
consumer stamping each arrival:

1. burst: N events as fast as they can go, sent four ways: the floor (raw aio-pika, `WINDOW`
   publishes awaiting their confirms), raw aio-pika one at a time (each confirm awaited before the
   next publish, as the daemon's publisher did before it kept a window), the daemon's
   `EventPublisher` caught up (`emit` N times), and its replay (N events spooled while the broker
   was away, then a connection). Events per second, from the first send to the last confirm; no
   consumer runs meanwhile (the queue is emptied afterwards).
2. paced: events at a steady rate (default 1,000 a second, about what 64 busy runs' coalesced
   output comes to), from the floor, from raw aio-pika one at a time, and from `EventPublisher`:
   each event's emit → arrival, p50 and p99.

The last line is one JSON object with the figures.

    .venv/bin/python bench/run_events.py [--events 5000] [--rate 1000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from dispatch import LOCAL, percentile

from taskmachine.daemon.executor import publisher as publisher_module
from taskmachine.daemon.executor.publisher import EventPublisher
from taskmachine.daemon.executor.spool import Spool
from taskmachine.wire.runs import RunOutput

T = TypeVar("T")
USER = "guest"  # the publisher stamps user_id; the broker checks it against the connection's


def event(run_id: uuid.UUID, seq: int) -> RunOutput:
    """A typical coalesced transcript chunk: a few steps of an agent's output."""
    text = f"step {seq}: " + "the agent reads a file and explains what it found. " * 8
    return RunOutput(
        run_id=run_id,
        attempt=1,
        seq=seq,
        sent_at=datetime.now(UTC),
        events=[{"kind": "text", "text": text}],
    )


class Arrivals:
    """The queue's consumer: when each (run, seq) first arrived."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int], float] = {}
        self._per_run: Counter[str] = Counter()
        self._changed = asyncio.Event()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        key = (body["run_id"], body["seq"])
        if key not in self.at:
            self.at[key] = time.perf_counter()
            self._per_run[key[0]] += 1
        self._changed.set()

    async def wait(self, run_id: uuid.UUID, count: int) -> None:
        """Until `count` events of the run have arrived."""
        async with asyncio.timeout(120):
            while self._per_run[str(run_id)] < count:
                self._changed.clear()
                await self._changed.wait()


class RawSender:
    """Publish like the daemon (persistent, user_id, confirm), with `window` confirms awaited."""

    def __init__(self, exchange: AbstractExchange, window: int) -> None:
        self.exchange = exchange
        self.window = window
        self.in_flight: list[asyncio.Task[object]] = []

    async def send(self, item: RunOutput) -> None:
        message = aio_pika.Message(
            item.model_dump_json().encode(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            user_id=USER,
        )
        publish = self.exchange.publish(message, routing_key="ev")
        self.in_flight.append(asyncio.create_task(publish))
        while len(self.in_flight) >= self.window:
            await self.in_flight.pop(0)

    async def confirmed(self) -> None:
        await asyncio.gather(*self.in_flight)
        self.in_flight.clear()


async def burst(
    count: int,
    send: Callable[[RunOutput], Awaitable[None]],
    confirmed: Callable[[], Awaitable[object]],
) -> float:
    run_id = uuid.uuid4()
    items = [event(run_id, seq) for seq in range(count)]
    started = time.perf_counter()
    for item in items:
        await send(item)
    await confirmed()
    return count / (time.perf_counter() - started)


async def paced(
    arrivals: Arrivals, rate: float, seconds: float, send: Callable[[RunOutput], Awaitable[None]]
) -> list[float]:
    """Emit → arrival of each event, in ms, at `rate` events a second."""
    run_id = uuid.uuid4()
    count = int(rate * seconds)
    sent_at: list[float] = []
    start = time.perf_counter()
    for seq in range(count):
        delay = start + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at.append(time.perf_counter())
        await send(event(run_id, seq))
    await arrivals.wait(run_id, count)
    key = str(run_id)
    return [(arrivals.at[(key, seq)] - sent_at[seq]) * 1000 for seq in range(count)]


async def confirmed(publisher: EventPublisher) -> None:
    assert await publisher.wait_sent(within=120), "events left unconfirmed"


async def with_publisher(workdir: Path, use: Callable[[EventPublisher], Awaitable[T]]) -> T:
    """`use` a started publisher over a spool of its own."""
    spool = await Spool.open(workdir / f"spool-{uuid.uuid4().hex}.db")
    publisher = EventPublisher(spool, str(uuid.uuid4()), USER)
    publisher.start()
    try:
        return await use(publisher)
    finally:
        await publisher.stop()
        await spool.close()


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="events per burst")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced events per second")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each paced stream")
    args = parser.parse_args(argv)
    window = publisher_module.WINDOW
    print(f"bench/run_events.py: loopback only; window {window}; Python {sys.version.split()[0]}")

    connection = await aio_pika.connect(LOCAL.amqp_url)
    name = f"bench.run-events.{uuid.uuid4().hex[:8]}"
    arrivals = Arrivals()
    with TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                name, aio_pika.ExchangeType.TOPIC, auto_delete=True
            )
            queue = await channel.declare_queue(name, durable=True)
            await queue.bind(exchange, "#")

            async def caught_up(publisher: EventPublisher) -> float:
                publisher.attach(exchange)
                return await burst(args.events, publisher.emit, lambda: confirmed(publisher))

            async def replayed(publisher: EventPublisher) -> float:
                run_id = uuid.uuid4()
                for seq in range(args.events):  # no connection yet: they wait in the spool
                    await publisher.emit(event(run_id, seq))
                started = time.perf_counter()
                publisher.attach(exchange)
                await confirmed(publisher)
                count: int = args.events
                return count / (time.perf_counter() - started)

            async def paced_publisher(publisher: EventPublisher) -> list[float]:
                publisher.attach(exchange)
                return await paced(arrivals, args.rate, args.seconds, publisher.emit)

            rates: dict[str, float] = {}
            for key, sender in (
                ("floor", RawSender(exchange, window)),
                ("serial", RawSender(exchange, 1)),
            ):
                rates[key] = await burst(args.events, sender.send, sender.confirmed)
            rates["publisher"] = await with_publisher(workdir, caught_up)
            rates["replay"] = await with_publisher(workdir, replayed)
            await queue.purge()

            consumer = await connection.channel()
            consumed = await consumer.get_queue(name)
            tag = await consumed.consume(arrivals.on_message, no_ack=True)
            floor_ms = await paced(
                arrivals, args.rate, args.seconds, RawSender(exchange, window).send
            )
            serial_ms = await paced(arrivals, args.rate, args.seconds, RawSender(exchange, 1).send)
            publisher_ms = await with_publisher(workdir, paced_publisher)
            await consumed.cancel(tag)
        finally:
            cleanup = await connection.channel()
            await cleanup.queue_delete(name)
            await connection.close()

    print(f"(1) burst of {args.events} events, events/s from first send to last confirm")
    names = {
        "floor": f"floor: raw aio-pika, {window} confirms awaited",
        "serial": "raw aio-pika, one confirm at a time",
        "publisher": "EventPublisher, caught up (spool + publish)",
        "replay": "EventPublisher, replaying its spool",
    }
    for key, label in names.items():
        print(f"  {label:<46} {rates[key]:8.0f} /s   ({rates[key] / rates['floor']:.2f}× floor)")
    print(f"(2) paced, {args.rate:g} events/s for {args.seconds:g} s: emit → arrival")
    figures: dict[str, float] = {}
    for label, samples, key in (
        ("floor: raw aio-pika", floor_ms, "floor"),
        ("raw aio-pika, one confirm at a time", serial_ms, "serial"),
        ("EventPublisher", publisher_ms, "publisher"),
    ):
        p50, p99 = statistics.median(samples), percentile(samples, 99)
        figures[f"{key}_p50_ms"], figures[f"{key}_p99_ms"] = round(p50, 3), round(p99, 3)
        print(f"  {label:<46} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   (n={len(samples)})")
    print(
        json.dumps(
            {f"{key}_events_per_s": round(value) for key, value in rates.items()}
            | figures
            | {"window": window}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
