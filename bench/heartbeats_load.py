"""Load processes for bench/heartbeats.py, driven over stdin/stdout one line at a time.

    publish   open one AMQP connection per machine, as that machine's own broker user, and
              publish heartbeats on tama.events round-robin over the machines at the rate set,
              with the runtime list in the beats where `tama daemon` sends it (its first, then
              one in every RUNTIMES_REFRESH_SECONDS / heartbeat interval = 6) and only its
              digest in the others
    consume   the floor: consume tama.server.heartbeats as the server does (same prefetch, one
              ack per batch) but parse nothing and write nothing

The first stdin line is a JSON object (the job); then commands, one per line:
`rate <per second>` (publish only), `count` (answers the messages so far), `stop` (answers the
final count and exits). Every answer is one line on stdout. Loopback only: the URLs come from the
bench, which builds them from the local settings.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiormq
from aiormq.abc import DeliveredMessage

from taskmachine.daemon.config import MachineConfig
from taskmachine.daemon.heartbeat import RUNTIMES_REFRESH_SECONDS
from taskmachine.wire.messages import Heartbeat, RuntimeReport, runtimes_digest
from taskmachine.wire.topology import (
    EVENTS_EXCHANGE,
    SERVER_HEARTBEATS_QUEUE,
    heartbeat_routing_key,
    machine_username,
)

TICK_SECONDS = 0.005
# Placeholders rendered into the JSON once per machine, replaced per message (cheap and exact).
_SENT_AT = datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
_SEQ = 918273645
# A daemon with the default interval sends its runtime list in one beat of this many.
LIST_EVERY = round(
    RUNTIMES_REFRESH_SECONDS / MachineConfig.model_fields["heartbeat_interval_seconds"].default
)


@dataclass
class _Machine:
    connection: aiormq.abc.AbstractConnection
    channel: aiormq.abc.AbstractChannel
    routing_key: str
    properties: aiormq.spec.Basic.Properties
    listed: tuple[bytes, bytes, bytes]
    unlisted: tuple[bytes, bytes, bytes]
    # Machines send their lists at different beats, as a fleet's daemons would.
    phase: int
    seq: int = 0

    def body(self) -> bytes:
        self.seq += 1
        with_list = self.seq == 1 or (self.seq + self.phase) % LIST_EVERY == 0
        head, middle, tail = self.listed if with_list else self.unlisted
        sent_at = datetime.now(UTC).isoformat().replace("+00:00", "Z").encode()
        return head + sent_at + middle + str(self.seq).encode() + tail


def _template(
    machine_id: str, runtimes: list[RuntimeReport], *, listed: bool
) -> tuple[bytes, bytes, bytes]:
    body = Heartbeat(
        machine_id=uuid.UUID(machine_id),
        sent_at=_SENT_AT,
        seq=_SEQ,
        cli_version="0.1.0",
        execution_root="/home/dev/.taskmachine/work",
        capacity=4,
        runtimes=runtimes if listed else None,
        runtimes_digest=runtimes_digest(runtimes),
    ).to_body()
    stamp = _SENT_AT.isoformat().replace("+00:00", "Z").encode()
    if body.count(stamp) != 1 or body.count(str(_SEQ).encode()) != 1:
        raise RuntimeError("heartbeat template placeholders are not unique")
    head, rest = body.split(stamp)
    middle, tail = rest.split(str(_SEQ).encode())
    return head, middle, tail


async def _open_machine(
    spec: dict[str, str], runtimes: list[RuntimeReport], index: int
) -> _Machine:
    connection = await aiormq.connect(spec["amqp_url"])
    # No publisher confirms (the daemon waits for one per heartbeat): what is measured is the
    # server's side, and confirms would double the load generator's CPU on a shared box.
    channel = await connection.channel(publisher_confirms=False)
    return _Machine(
        connection=connection,
        channel=channel,
        routing_key=heartbeat_routing_key(spec["id"]),
        properties=aiormq.spec.Basic.Properties(
            user_id=machine_username(spec["id"]), content_type="application/json"
        ),
        listed=_template(spec["id"], runtimes, listed=True),
        unlisted=_template(spec["id"], runtimes, listed=False),
        phase=index % LIST_EVERY,
    )


class Publisher:
    def __init__(self, machines: list[_Machine]) -> None:
        self.machines = machines
        self.rate = 0.0
        self.published = 0
        self.failed = 0
        self._next = 0

    async def _send(self, machine: _Machine) -> None:
        try:
            await machine.channel.basic_publish(
                machine.body(),
                exchange=EVENTS_EXCHANGE,
                routing_key=machine.routing_key,
                properties=machine.properties,
                timeout=5,
            )
            self.published += 1
        except Exception:
            self.failed += 1

    async def run(self) -> None:
        """Publish at `self.rate`; a rate change starts a new schedule instead of catching up."""
        loop = asyncio.get_running_loop()
        rate, started, due_sent = 0.0, loop.time(), 0
        while True:
            if self.rate != rate:
                rate, started, due_sent = self.rate, loop.time(), 0
            due = int(rate * (loop.time() - started)) - due_sent
            for _ in range(max(0, due)):
                machine = self.machines[self._next]
                self._next = (self._next + 1) % len(self.machines)
                await self._send(machine)
                due_sent += 1
            await asyncio.sleep(TICK_SECONDS)

    async def close(self) -> None:
        await asyncio.gather(*(m.connection.close() for m in self.machines), return_exceptions=True)


class Consumer:
    """Takes heartbeats as the server does (a plain aiormq callback, one multiple-ack per batch
    or per batch interval), with nothing parsed or written."""

    def __init__(self, url: str, prefetch: int, batch: int, batch_seconds: float) -> None:
        self.url = url
        self.prefetch = prefetch
        self.batch = batch
        self.batch_seconds = batch_seconds
        self.consumed = 0
        self.connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._last_tag = 0
        self._acked_tag = 0
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.connection = await aiormq.connect(self.url)
        channel = self._channel = await self.connection.channel()
        await channel.basic_qos(prefetch_count=self.prefetch)

        async def on_message(message: DeliveredMessage) -> None:
            assert message.delivery_tag is not None
            self._last_tag = message.delivery_tag
            self.consumed += 1
            if self._last_tag - self._acked_tag >= self.batch:
                await self._ack()

        await channel.basic_consume(SERVER_HEARTBEATS_QUEUE, on_message)
        self._ticker = asyncio.create_task(self._tick())

    async def _ack(self) -> None:
        if self._channel is not None and self._last_tag > self._acked_tag:
            self._acked_tag = self._last_tag
            await self._channel.basic_ack(self._acked_tag, multiple=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.batch_seconds)
            await self._ack()

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self.connection is not None:
            await self.connection.close()


async def _lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _answer(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def publish(job: dict[str, Any], commands: asyncio.StreamReader) -> None:
    runtimes = [RuntimeReport.model_validate(r) for r in job["runtimes"]]
    machines = await asyncio.gather(
        *(_open_machine(m, runtimes, i) for i, m in enumerate(job["machines"]))
    )
    publisher = Publisher(list(machines))
    runner = asyncio.create_task(publisher.run())
    _answer({"ready": len(machines)})
    try:
        while line := (await commands.readline()).decode().strip():
            if line == "stop":
                break
            if line.startswith("rate "):
                publisher.rate = float(line.split()[1])
                _answer({"rate": publisher.rate})
            elif line == "count":
                _answer({"count": publisher.published, "failed": publisher.failed})
            else:
                _answer({"error": f"unknown command {line!r}"})
    finally:
        runner.cancel()
        await publisher.close()
    _answer({"count": publisher.published, "failed": publisher.failed})


async def consume(job: dict[str, Any], commands: asyncio.StreamReader) -> None:
    consumer = Consumer(
        job["amqp_url"], int(job["prefetch"]), int(job["batch"]), float(job["batch_seconds"])
    )
    await consumer.start()
    _answer({"ready": 1})
    try:
        while line := (await commands.readline()).decode().strip():
            if line == "stop":
                break
            if line == "count":
                _answer({"count": consumer.consumed})
            else:
                _answer({"error": f"unknown command {line!r}"})
    finally:
        await consumer.close()
    _answer({"count": consumer.consumed})


async def main(role: str) -> int:
    commands = await _lines()
    job = json.loads(await commands.readline())
    if role == "publish":
        await publish(job, commands)
    elif role == "consume":
        await consume(job, commands)
    else:
        raise SystemExit(f"unknown role {role!r}: publish or consume")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(
            "usage: heartbeats_load.py publish|consume  (driven by bench/heartbeats.py)"
        )
    sys.exit(asyncio.run(main(sys.argv[1])))
