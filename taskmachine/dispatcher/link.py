"""The server's own broker connection: topology, control messages, machine accounts."""

from __future__ import annotations

import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from taskmachine.dispatcher.broker_admin import BrokerAdmin
from taskmachine.wire import topology
from taskmachine.wire.messages import WireMessage

log = logging.getLogger("taskmachine.broker")

PUBLISH_TIMEOUT = 5.0


class BrokerLink:
    def __init__(self, amqp_url: str, admin: BrokerAdmin) -> None:
        self.amqp_url = amqp_url
        self.admin = admin
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._topology: topology.ServerTopology | None = None

    async def start(self) -> None:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        # Confirms on, and an unroutable mandatory publish raises instead of vanishing.
        self._channel = await self.connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._topology = await topology.declare_server_topology(self._channel)

    async def stop(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        await self.admin.aclose()

    @property
    def channel(self) -> AbstractChannel:
        assert self._channel is not None, "BrokerLink not started"
        return self._channel

    @property
    def topology(self) -> topology.ServerTopology:
        assert self._topology is not None, "BrokerLink not started"
        return self._topology

    def exchange(self, name: str) -> AbstractExchange:
        exchanges = {
            topology.JOBS_EXCHANGE: self.topology.jobs,
            topology.CONTROL_EXCHANGE: self.topology.control,
            topology.EVENTS_EXCHANGE: self.topology.events,
            topology.LIVE_EXCHANGE: self.topology.live,
        }
        return exchanges[name]

    async def publish_control(
        self, machine_id: str, message: WireMessage, *, persistent: bool = True
    ) -> None:
        """To one machine's control queue. Transient (`persistent=False`) for what is worth
        nothing after a broker restart, like a claim's answer: no wait for the broker's disk."""
        mode = (
            aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        )
        await self.topology.control.publish(
            aio_pika.Message(
                message.model_dump_json().encode(),
                content_type="application/json",
                delivery_mode=mode,
            ),
            routing_key=topology.machine_routing_key(machine_id),
            mandatory=True,
            timeout=PUBLISH_TIMEOUT,
        )

    # -- machine accounts (taskmachine.domain.machines.BrokerAccounts) ------------------------

    async def create_machine(self, machine_id: str, password: str) -> None:
        await topology.declare_machine_queues(self.channel, machine_id)
        await self.admin.create_machine_user(machine_id, password)

    async def set_password(self, machine_id: str, password: str) -> None:
        await self.admin.rotate_machine_password(machine_id, password)

    async def remove_machine(self, machine_id: str) -> None:
        # Removing the user closes its connections; the queues go after, so nothing re-creates them.
        await self.admin.remove_machine_user(machine_id)
        await topology.delete_machine_queues(self.channel, machine_id)
        log.info("machine cut off the broker", extra={"machine_id": machine_id})
