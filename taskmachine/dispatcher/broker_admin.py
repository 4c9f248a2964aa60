"""One RabbitMQ user per machine, managed through the broker's management HTTP API.

The broker itself confines each machine (see wire.topology.machine_permissions): it may read
only its own jobs and control queues and publish only to tama.events under machine.<its id>.*.
Deleting the user cuts the machine off: RabbitMQ 3.10 closes that user's connections at once
(CONNECTION_FORCED); we also close whatever the management API still lists for the user.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from taskmachine.settings import Settings, get_settings
from taskmachine.wire.topology import machine_permissions, machine_username

log = logging.getLogger(__name__)

# How long remove_machine_user waits for the broker to drop a removed machine's connections.
CUT_OFF_SECONDS = 4.0


class BrokerAdminError(Exception):
    """The management API refused a request or could not be reached.

    status is the HTTP status, or None when no answer came (connection refused, timeout);
    reason is RabbitMQ's own explanation (or the transport error).
    """

    def __init__(self, status: int | None, reason: str, *, method: str, path: str) -> None:
        self.status = status
        self.reason = reason
        self.method = method
        self.path = path
        where = f"{method} {path}"
        what = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"RabbitMQ management API {where}: {what}: {reason}")


def vhost_from_amqp_url(amqp_url: str) -> str:
    """The virtual host named by an AMQP URL; an empty path or a bare "/" means "/"."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _segment(value: str) -> str:
    # Every name is one path segment, so "/" (the default vhost) becomes %2F.
    return quote(value, safe="")


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise ValueError("broker password must be a non-empty string")


def _reason(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        error, reason = body.get("error"), body.get("reason")
        parts = [str(part) for part in (error, reason) if part]
        if parts:
            return ": ".join(parts)
    return str(body)


class BrokerAdmin:
    """Async client of the management API for machine users; call aclose() (or use `async with`)."""

    def __init__(self, management_url: str, vhost: str = "/", *, timeout: float = 10.0) -> None:
        parts = urlsplit(management_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"management URL {management_url!r} must be http(s)://host[:port]")
        # Credentials travel as basic auth, never inside the URL that error messages may show.
        auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/api", "", ""))
        self._vhost = vhost
        self._client = httpx.AsyncClient(base_url=base, auth=auth, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> BrokerAdmin:
        settings = settings or get_settings()
        return cls(settings.rabbitmq_management_url, vhost_from_amqp_url(settings.amqp_url))

    @property
    def vhost(self) -> str:
        return self._vhost

    async def __aenter__(self) -> BrokerAdmin:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create_machine_user(self, machine_id: str, password: str) -> None:
        """Create (or reset) the machine's user: no tags, its permissions, its topic permission.

        Idempotent. The vhost is checked first so a wrong vhost leaves no user behind.
        """
        username = machine_username(machine_id)
        _check_password(password)
        permissions = machine_permissions(machine_id)
        vhost = _segment(self._vhost)
        await self._request("GET", f"/vhosts/{vhost}")
        await self._put_user(username, password)
        await self._request(
            "PUT",
            f"/permissions/{vhost}/{_segment(username)}",
            json={
                "configure": permissions.configure,
                "write": permissions.write,
                "read": permissions.read,
            },
        )
        await self._request(
            "PUT",
            f"/topic-permissions/{vhost}/{_segment(username)}",
            json={
                "exchange": permissions.topic_exchange,
                "write": permissions.topic_write,
                "read": permissions.topic_read,
            },
        )
        log.info("broker user %s ready in vhost %s", username, self._vhost)

    async def rotate_machine_password(self, machine_id: str, password: str) -> None:
        """Give an existing machine user a new password; open connections stay open.

        Raises BrokerAdminError (status 404) if the machine has no broker user.
        """
        username = machine_username(machine_id)
        _check_password(password)
        await self._request("GET", f"/users/{_segment(username)}")
        await self._put_user(username, password)
        log.info("broker password of %s rotated", username)

    async def remove_machine_user(self, machine_id: str) -> None:
        """Delete the machine's user and make sure none of its connections stays open. Idempotent.

        Deleting the user is what cuts it off: RabbitMQ closes its connections at once and
        refuses new logins. Anything the broker still lists for the user afterwards is closed
        here; if something stays listed for CUT_OFF_SECONDS, BrokerAdminError is raised.
        """
        username = machine_username(machine_id)
        await self._request("DELETE", f"/users/{_segment(username)}", accept=(404,))
        connections_path = f"/connections/username/{_segment(username)}"
        deadline = asyncio.get_running_loop().time() + CUT_OFF_SECONDS
        while names := await self._connection_names(username):
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerAdminError(
                    None,
                    f"connections of {username} still open after {CUT_OFF_SECONDS}s: {names}",
                    method="DELETE",
                    path=connections_path,
                )
            # 3.10 answers 500 when a listed connection closes while this request runs (the
            # user deletion races it); the next listing tells whether anything is left.
            await self._request("DELETE", connections_path, accept=(404, 500))
            log.info("closing %d connection(s) of %s", len(names), username)
            await asyncio.sleep(0.1)
        log.info("broker user %s removed; no connection left", username)

    async def machine_connections(self, machine_id: str) -> list[str]:
        """Names of the machine's open connections.

        Comes from the management statistics, which lag: a new connection can take a few
        seconds (up to the broker's collect_statistics_interval) to appear.
        """
        return await self._connection_names(machine_username(machine_id))

    async def _connection_names(self, username: str) -> list[str]:
        response = await self._request("GET", f"/connections/username/{_segment(username)}")
        return [str(item["name"]) for item in response.json()]

    async def _put_user(self, username: str, password: str) -> None:
        # Empty tags: no management UI access, no impersonation (user_id stays validated).
        await self._request(
            "PUT", f"/users/{_segment(username)}", json={"password": password, "tags": ""}
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, str] | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send a request; any status but 2xx and `accept` raises BrokerAdminError."""
        try:
            response = await self._client.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise BrokerAdminError(
                None, str(exc) or type(exc).__name__, method=method, path=path
            ) from exc
        if response.is_success or response.status_code in accept:
            return response
        raise BrokerAdminError(response.status_code, _reason(response), method=method, path=path)
