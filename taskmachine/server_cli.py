"""`taskmachine`: run and administer the server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import typer
import uvicorn

from taskmachine.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from taskmachine.auth.tokens import TokenHasher

app = typer.Typer(help="Run and administer the Task Machine server.", no_args_is_help=True)


class GracefulServer(uvicorn.Server):
    """Drains on SIGTERM/SIGINT and then exits 0 (uvicorn would re-raise the signal)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _tune_gc() -> None:
    """What is alive at start-up (schema, mappers, compiled caches) lives for ever: freeze it so
    full collections skip it, and collect the young generation less often. Full collections
    over the whole heap otherwise stop the loop for 150-700 ms (bench/api.py)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"taskmachine: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default TASKMACHINE_HOST)."),
    port: int | None = typer.Option(None, help="Port (default TASKMACHINE_PORT)."),
) -> None:
    """Apply migrations and serve the API, the web app, health and metrics."""
    from taskmachine import logs
    from taskmachine.server import create_app
    from taskmachine.wiring import default_options

    settings = _settings()
    logs.configure(settings.log_level, settings.log_json)
    application = create_app(settings, default_options(settings))
    config = uvicorn.Config(
        application,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        ws_max_size=settings.max_body_bytes,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    server = GracefulServer(config)
    _tune_gc()
    asyncio.run(server.serve())
    if not server.started:
        sys.exit(1)


@app.command()
def migrate(revision: str = typer.Argument("head")) -> None:
    """Bring the database to a revision (default: the newest)."""
    from taskmachine import migrate as migrations
    from taskmachine.db import create_engine

    settings = _settings()

    async def run() -> None:
        engine = create_engine(settings)
        try:
            await migrations.upgrade(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(run())
    typer.echo(f"database at {revision}")


@app.command("login-link")
def login_link(email: str) -> None:
    """Print a one-time sign-in link for EMAIL (the person is created if new)."""
    from taskmachine.domain import people
    from taskmachine.mailer import magic_link_url

    settings = _settings()

    async def run() -> str:
        async with _session(settings) as (session, hasher):
            issued = await people.create_magic_link(
                session, hasher, email, settings.magic_link_ttl_seconds
            )
            await session.commit()
            return magic_link_url(settings, issued.secret)

    typer.echo(_run_domain(run))


@app.command("create-token")
def create_token(
    email: str, name: str = typer.Option("cli", help="A name to tell the token apart.")
) -> None:
    """Print a new personal API token for EMAIL (the person is created if new)."""
    from taskmachine.domain import people

    settings = _settings()

    async def run() -> str:
        async with _session(settings) as (session, hasher):
            user = await people.get_or_create_user(session, email)
            _, secret = await people.create_api_token(session, hasher, user.id, name, None)
            await session.commit()
            return secret

    typer.echo(_run_domain(run))


@app.command("check-config")
def check_config() -> None:
    """Validate the TASKMACHINE_* settings and print where data lives."""
    settings = _settings()
    typer.echo(f"database: {settings.resolved_database_url}")
    typer.echo(f"broker:   {settings.amqp_url if settings.broker_enabled else 'disabled'}")
    typer.echo(f"public:   {settings.public_url}")


def _session(settings: Settings) -> AbstractAsyncContextManager[tuple[AsyncSession, TokenHasher]]:
    from taskmachine import migrate as migrations
    from taskmachine.auth.tokens import TokenHasher, load_pepper
    from taskmachine.db import create_engine, create_session_factory

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[tuple[AsyncSession, TokenHasher]]:
        engine = create_engine(settings)
        await migrations.upgrade(engine)
        try:
            async with create_session_factory(engine)() as session:
                yield session, TokenHasher(load_pepper(settings))
        finally:
            await engine.dispose()

    return opened()


def _run_domain(run: Callable[[], Coroutine[Any, Any, str]]) -> str:
    from taskmachine.domain.errors import DomainError

    try:
        return asyncio.run(run())
    except DomainError as exc:
        typer.echo(f"taskmachine: {exc.message}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()
