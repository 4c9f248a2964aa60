"""The browser approval behind `tama setup`: ask the server, then poll until someone decides.

The server answers a request with a ticket (a code to compare, a URL to open, a secret poll
token, an expiry). Polling ends when the approval is APPROVED (with the machine's credentials,
handed over exactly once), DENIED or EXPIRED. A server that stops answering while we poll is
retried until the ticket expires; it only ends the wait when it never answers again.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from taskmachine import __version__
from taskmachine.daemon.api import ApiClient, ApiError, ApiUnreachableError
from taskmachine.daemon.config import MachineConfig
from taskmachine.daemon.waits import Backoff

log = logging.getLogger(__name__)

REQUEST = """mutation Request($input: MachineApprovalRequestInput!) {
  requestMachineApproval(input: $input) {
    userCode pollToken approvalUrl expiresAt pollIntervalSeconds
  }
}"""

POLL = """mutation Poll($token: String!) {
  pollMachineApproval(pollToken: $token) {
    status
    credentials {
      machineId machineName accessToken accessTokenExpiresAt refreshToken amqpUrl workspaceIds
    }
  }
}"""

Decision = Literal["APPROVED", "DENIED", "EXPIRED"]
# Polling never faster than this, whatever the server says.
MIN_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Ticket:
    user_code: str
    poll_token: str
    approval_url: str
    expires_at: datetime
    poll_interval: float


@dataclass(frozen=True)
class Credentials:
    machine_id: uuid.UUID
    machine_name: str
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    amqp_url: str
    workspace_ids: list[str]

    def apply_to(self, cfg: MachineConfig, api_url: str) -> MachineConfig:
        """The config with this machine's identity and credentials (other settings kept)."""
        values = cfg.model_dump()
        values.update(
            api_url=api_url,
            machine_id=self.machine_id,
            machine_name=self.machine_name,
            access_token=self.access_token,
            access_token_expires_at=self.access_token_expires_at,
            refresh_token=self.refresh_token,
            amqp_url=self.amqp_url,
        )
        return MachineConfig.model_validate(values)


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    credentials: Credentials | None = None


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def describe_machine() -> dict[str, str]:
    """Hostname, OS and CLI version, as the approval page shows them."""
    hostname = socket.gethostname() or "unknown"
    system = f"{platform.system()} {platform.release()}".strip() or "unknown"
    return {"hostname": hostname[:255], "os": system[:64], "cliVersion": __version__}


async def request_approval(client: ApiClient, name: str) -> Ticket:
    data = await client.execute(REQUEST, {"input": {"name": name, **describe_machine()}})
    raw: dict[str, Any] = data["requestMachineApproval"]
    return Ticket(
        user_code=str(raw["userCode"]),
        poll_token=str(raw["pollToken"]),
        approval_url=str(raw["approvalUrl"]),
        expires_at=_time(str(raw["expiresAt"])),
        poll_interval=max(float(raw["pollIntervalSeconds"]), MIN_POLL_SECONDS),
    )


def credentials_from(raw: dict[str, Any]) -> Credentials:
    """The `credentials` of an approved `pollMachineApproval`, as the API returns them."""
    return Credentials(
        machine_id=uuid.UUID(str(raw["machineId"])),
        machine_name=str(raw["machineName"]),
        access_token=str(raw["accessToken"]),
        access_token_expires_at=_time(str(raw["accessTokenExpiresAt"])),
        refresh_token=str(raw["refreshToken"]),
        amqp_url=str(raw["amqpUrl"]),
        workspace_ids=[str(ws) for ws in raw.get("workspaceIds") or []],
    )


async def wait_for_decision(
    client: ApiClient,
    ticket: Ticket,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome:
    """Poll until the approval is decided or expired.

    Raises ApiUnreachableError if the server stays unreachable past the expiry, ApiError when
    it refuses the poll, or ApiError when an approval comes without credentials (they were
    already collected by another poll with this ticket).
    """
    backoff = Backoff(base=ticket.poll_interval, cap=max(ticket.poll_interval, 10.0))
    while True:
        try:
            data = await client.execute(POLL, {"token": ticket.poll_token})
        except ApiUnreachableError as exc:
            if clock() > ticket.expires_at:
                raise
            delay = backoff.next_delay()
            log.warning("%s; trying again in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            continue
        backoff.reset()
        poll: dict[str, Any] = data["pollMachineApproval"]
        status = str(poll["status"])
        if status == "APPROVED":
            raw = poll.get("credentials")
            if not raw:
                raise ApiError("approved, but the credentials were already collected")
            return Outcome("APPROVED", credentials_from(raw))
        if status == "DENIED":
            return Outcome("DENIED")
        if status == "EXPIRED":
            return Outcome("EXPIRED")
        await asyncio.sleep(ticket.poll_interval)
