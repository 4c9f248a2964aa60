"""Shared fixtures: real databases (SQLite and PostgreSQL) cloned from a migrated template per
test, and a real server (uvicorn in the test's own event loop) speaking HTTP and WebSocket.

PostgreSQL is 127.0.0.1:5432 (TASKMACHINE_TEST_PG to change). A test that needs it fails loudly
when it is down; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import create_async_engine

from taskmachine import migrate
from taskmachine.auth.tokens import TokenHasher, load_pepper
from taskmachine.db import create_engine, create_session_factory
from taskmachine.domain import people
from taskmachine.server import ServerOptions, create_app
from taskmachine.settings import Settings

PG_ADMIN = os.environ.get("TASKMACHINE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
BACKENDS = ("sqlite", "postgres")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


async def _pg_execute(sql: str) -> None:
    engine = create_async_engine(f"{PG_ADMIN}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()


class Templates:
    """Migrate once per test session; clone per test (a file copy, or CREATE DATABASE … TEMPLATE)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sqlite_template = root / "template.db"
        self.pg_template = f"tm_template_{_worker()}"
        self._ready: set[str] = set()

    async def prepare(self, backend: str) -> None:
        if backend in self._ready:
            return
        if backend == "sqlite":
            engine = create_async_engine(f"sqlite+aiosqlite:///{self.sqlite_template}")
            await migrate.upgrade(engine)
            await engine.dispose()
        else:
            await _pg_execute(f'DROP DATABASE IF EXISTS "{self.pg_template}" WITH (FORCE)')
            await _pg_execute(f'CREATE DATABASE "{self.pg_template}"')
            engine = create_async_engine(f"{PG_ADMIN}/{self.pg_template}")
            await migrate.upgrade(engine)
            await engine.dispose()
        self._ready.add(backend)

    async def clone(self, backend: str) -> tuple[str, str | None]:
        await self.prepare(backend)
        if backend == "sqlite":
            target = self.root / f"{uuid.uuid4().hex}.db"
            shutil.copyfile(self.sqlite_template, target)
            return f"sqlite+aiosqlite:///{target}", None
        name = f"tm_{_worker()}_{uuid.uuid4().hex[:12]}"
        await _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.pg_template}"')
        return f"{PG_ADMIN}/{name}", name

    async def drop(self, pg_name: str | None) -> None:
        if pg_name:
            await _pg_execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    yield Templates(tmp_path_factory.mktemp("db-templates"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(templates: Templates, backend: str) -> AsyncIterator[str]:
    url, pg_name = await templates.clone(backend)
    yield url
    await templates.drop(pg_name)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_enabled=False,
        secret_key="test-pepper",
        log_json=False,
    )


@pytest.fixture
async def session_factory(settings: Settings) -> AsyncIterator[Any]:
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


class RunningServer:
    def __init__(self, server: uvicorn.Server, app: Any, settings: Settings) -> None:
        self.server = server
        self.app = app
        self.settings = settings
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/graphql"
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30)

    @property
    def state(self) -> Any:
        return self.app.state.taskmachine

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body: dict[str, Any] = response.json()
        return body

    async def ok(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """Run an operation that must succeed; return its data."""
        body = await self.graphql(query, variables, token)
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def error_code(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> str:
        body = await self.graphql(query, variables, token)
        assert body.get("errors"), f"expected an error, got {body}"
        return str(body["errors"][0]["extensions"]["code"])

    async def token_for(self, email: str) -> str:
        """A personal API token for a (new or existing) person, made the way the CLI makes one."""
        async with self.state.session_factory() as session:
            user = await people.get_or_create_user(session, email)
            _, secret = await people.create_api_token(
                session, self.state.hasher, user.id, "test", None
            )
            await session.commit()
        return str(secret)


async def start_server(
    settings: Settings, options: ServerOptions | None = None, *, port: int = 0
) -> RunningServer:
    """The app under uvicorn in this loop, on `port` (0: any free one)."""
    app = create_app(settings, options or ServerOptions(migrate_on_start=False))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        ws_max_size=settings.max_body_bytes,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.01)
    running = RunningServer(server, app, settings)
    running.task = task  # type: ignore[attr-defined]
    return running


async def stop_server(running: RunningServer) -> None:
    await running.http.aclose()
    running.server.should_exit = True
    await running.task  # type: ignore[attr-defined]


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    running = await start_server(settings)
    yield running
    await stop_server(running)


@pytest.fixture
def hasher(settings: Settings) -> TokenHasher:
    return TokenHasher(load_pepper(settings))


# -- broker-backed servers ------------------------------------------------------------------


def _management() -> tuple[str, tuple[str, str]]:
    from urllib.parse import urlsplit, urlunsplit

    base = Settings().rabbitmq_management_url
    parts = urlsplit(base)
    api = urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port or 15672}", "/api", "", ""))
    return api, (parts.username or "guest", parts.password or "guest")


@pytest.fixture
async def broker_vhost() -> AsyncIterator[str]:
    """A throw-away RabbitMQ vhost: this test's server sees only its own queues and events."""
    from urllib.parse import quote

    api, auth = _management()
    name = f"tama-test-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=api, auth=auth, timeout=10) as client:
        try:
            created = await client.put(f"/vhosts/{quote(name, safe='')}")
        except httpx.HTTPError as exc:
            pytest.fail(
                f"RabbitMQ management API at {api} is down ({exc}): run scripts/ensure-services"
            )
        assert created.status_code in (201, 204), created.text
        granted = await client.put(
            f"/permissions/{quote(name, safe='')}/{auth[0]}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        assert granted.status_code in (201, 204), granted.text
        try:
            yield name
        finally:
            # Machine users are global to the broker: remove the ones this vhost's server made.
            permissions = await client.get(f"/vhosts/{quote(name, safe='')}/permissions")
            if permissions.status_code == 200:
                for entry in permissions.json():
                    if entry["user"].startswith("machine-"):
                        await client.delete(f"/users/{quote(entry['user'], safe='')}")
            await client.delete(f"/vhosts/{quote(name, safe='')}")


@pytest.fixture
def broker_settings(settings: Settings, broker_vhost: str) -> Settings:
    from urllib.parse import quote

    return settings.model_copy(
        update={
            "broker_enabled": True,
            "amqp_url": f"amqp://guest:guest@127.0.0.1:5672/{quote(broker_vhost, safe='')}",
            "sweep_interval_seconds": 0.2,
        }
    )


@pytest.fixture
async def machine_server(broker_settings: Settings) -> AsyncIterator[RunningServer]:
    """A server with the dispatcher (broker link, heartbeat ingest, sweeper) in its own vhost."""
    from taskmachine.dispatcher.service import Dispatcher

    running = await start_server(
        broker_settings, ServerOptions(migrate_on_start=False, components=[Dispatcher()])
    )
    # Jobs tell the run's `tama` where the API is: this test server, not the default address.
    running.settings.__dict__["public_url"] = running.url
    yield running
    await stop_server(running)
