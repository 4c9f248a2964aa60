"""The Starlette app: /graphql (HTTP and WebSocket), sign-in, health, metrics, the web app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aio_pika
import sqlalchemy as sa
from cross_web import HTTPException
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UnsetType

from taskmachine import migrate
from taskmachine.auth.resolve import SESSION_COOKIE
from taskmachine.auth.tokens import TokenHasher, load_pepper
from taskmachine.db import create_engine, create_session_factory
from taskmachine.domain import people
from taskmachine.domain.errors import DomainError
from taskmachine.foreground import Foreground
from taskmachine.live import LiveHub
from taskmachine.mailer import Mailer
from taskmachine.metrics import Metrics
from taskmachine.schema.context import Context
from taskmachine.schema.root import build_schema
from taskmachine.schema.state import AppState
from taskmachine.settings import Settings

log = logging.getLogger("taskmachine.server")

STATIC_DIR = Path(__file__).parent / "static" / "app"
RESERVED_PREFIXES = ("/graphql", "/auth/", "/healthz", "/metrics")


class Component(Protocol):
    """A part of the server with a life of its own (heartbeat ingest, dispatcher, sweepers…)."""

    async def start(self, state: AppState) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ServerOptions:
    migrate_on_start: bool = True
    components: list[Component] = field(default_factory=list)


def _error_body(message: str, code: str) -> bytes:
    return json.dumps(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    ).encode()


class TaskMachineGraphQL(GraphQL[Context, None]):
    def __init__(self, state: AppState) -> None:
        super().__init__(
            build_schema(state.settings),
            graphql_ide="graphiql",
            keep_alive=True,
            keep_alive_interval=15,
            max_subscriptions_per_connection=200,
        )
        self.state = state

    def parse_json(self, data: str | bytes) -> Any:
        # Strawberry only catches JSONDecodeError and expects an object (or a batch list):
        # bytes that are not UTF-8, or a bare `null` / number / string, would end in a 500.
        try:
            value = self.decode_json(data)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            raise HTTPException(400, "Unable to parse request body as JSON") from None
        if not isinstance(value, (dict, list)):
            raise HTTPException(400, "The GraphQL request must be a JSON object")
        return value

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            state=self.state,
            request=request,
            response=response if isinstance(response, Response) else None,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        secret: object = params.get("authorization") or params.get("token")
        if isinstance(secret, str) and secret:
            context.connection_secret = secret.removeprefix("Bearer ").strip()
        try:
            await context.principal()
        except DomainError:
            raise ConnectionRejectionError() from None
        return UnsetType()  # acknowledge with no payload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as exc:
            # Malformed JSON, a missing query, a wrong method: still a GraphQL-shaped answer.
            response = Response(
                _error_body(exc.reason, "BAD_REQUEST"),
                status_code=exc.status_code,
                media_type="application/json",
            )
        await response(scope, receive, send)


class RequestGuard:
    """Refuses oversized bodies before anything parses them, times every request, and counts
    the GraphQL requests in flight (background work steps aside for them)."""

    def __init__(
        self, app: ASGIApp, max_body: int, metrics: Metrics, foreground: Foreground
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.foreground = foreground

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}
        counted = scope["path"] == "/graphql"
        if counted:
            self.foreground.enter()
        try:
            await self._guard(scope, receive, send, status_holder)
        finally:
            if counted:
                self.foreground.leave()
        path = scope["path"] if scope["path"] in ("/graphql", "/healthz", "/metrics") else "other"
        self.metrics.inc(
            "taskmachine_http_requests_total", path=path, status=str(status_holder["status"])
        )
        self.metrics.observe(
            "taskmachine_http_request_seconds", time.perf_counter() - started, path=path
        )

    async def _guard(
        self, scope: Scope, receive: Receive, send: Send, status_holder: dict[str, int]
    ) -> None:

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_body
        if too_large:
            await self._reject(send_wrapper)
        else:
            reads_body = scope["method"] in ("POST", "PUT")
            body, over = await self._read(receive) if reads_body else (b"", False)
            if over:
                await self._reject(send_wrapper)
            else:
                # Replay even an empty body: its one message has been consumed already, and the
                # app waiting on `receive` again would hang until the client disconnects.
                await self.app(
                    scope, _replay(body, receive) if reads_body else receive, send_wrapper
                )

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks), False

    async def _reject(self, send: Send) -> None:
        response = Response(
            _error_body(
                f"the request body is larger than {self.max_body} bytes", "PAYLOAD_TOO_LARGE"
            ),
            status_code=413,
            media_type="application/json",
        )
        await response({"type": "http"}, _empty_receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _routes(state: AppState, graphql: TaskMachineGraphQL) -> list[Route | WebSocketRoute]:
    settings = state.settings
    secure = settings.public_url.startswith("https://")

    async def magic(request: Request) -> Response:
        secret = request.query_params.get("token", "")
        async with state.session_factory() as session:
            try:
                _, opened = await people.consume_magic_link(
                    session, state.hasher, secret, settings.session_ttl_seconds
                )
            except DomainError as exc:
                return HTMLResponse(
                    _message_page("Sign-in link not valid", exc.message), status_code=400
                )
            await session.commit()
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            opened.secret,
            max_age=settings.session_ttl_seconds,
            httponly=True,
            secure=secure,
            samesite="lax",
            path="/",
        )
        return response

    async def signout(request: Request) -> Response:
        secret = request.cookies.get(SESSION_COOKIE)
        if secret:
            async with state.session_factory() as session:
                await people.close_session(session, state.hasher, secret)
                await session.commit()
        response = JSONResponse({"signedOut": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def healthz(_: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            async with state.session_factory() as session:
                await asyncio.wait_for(session.execute(sa.text("SELECT 1")), timeout=3)
            checks["database"] = "ok"
        except Exception as exc:  # the probe reports any failure, it never raises
            checks["database"] = f"error: {type(exc).__name__}"
        if settings.broker_enabled:
            checks["broker"] = await _broker_check(settings.amqp_url)
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", **checks},
            status_code=200 if healthy else 503,
        )

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    async def spa(request: Request) -> Response:
        path = request.path_params.get("path", "")
        if any(("/" + path).startswith(p) for p in RESERVED_PREFIXES):
            return JSONResponse({"error": "not found"}, status_code=404)
        candidate = (STATIC_DIR / path).resolve()
        if path and candidate.is_file() and STATIC_DIR.resolve() in candidate.parents:
            return FileResponse(candidate)
        index = STATIC_DIR / "index.html"
        if index.is_file():
            return FileResponse(index, headers={"cache-control": "no-cache"})
        return HTMLResponse(
            _message_page("Task Machine", "The web app is not built. Run scripts/build-frontend."),
            status_code=200,
        )

    return [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/auth/magic", magic, methods=["GET"]),
        Route("/auth/signout", signout, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/{path:path}", spa, methods=["GET"]),
    ]


async def _broker_check(amqp_url: str) -> str:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(amqp_url), timeout=3)
        await connection.close()
        return "ok"
    except Exception as exc:  # reported, not raised
        return f"error: {type(exc).__name__}"


def _message_page(title: str, text: str) -> str:
    from html import escape

    return (
        f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title>"
        f"<body style='font-family:system-ui;max-width:32rem;margin:4rem auto'>"
        f"<h1>{escape(title)}</h1><p>{escape(text)}</p><p><a href='/'>Back to Task Machine</a></p>"
    )


def create_app(settings: Settings, options: ServerOptions | None = None) -> Starlette:
    options = options or ServerOptions()
    engine = create_engine(settings)
    # A Session class of this app's own, so the after-commit hook serves this app only.
    session_class = type("AppSession", (Session,), {})
    hub = LiveHub()
    hub.bind(session_class)
    session_factory = create_session_factory(engine, session_class)
    metrics = Metrics()
    state = AppState(
        settings=settings,
        session_factory=session_factory,
        hasher=TokenHasher(load_pepper(settings)),
        hub=hub,
        metrics=metrics,
    )
    state.services["mailer"] = Mailer(settings)
    state.services["engine"] = engine
    metrics.gauge("taskmachine_live_subscribers", lambda: float(hub.subscriber_count))
    graphql = TaskMachineGraphQL(state)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if options.migrate_on_start:
            await migrate.upgrade(engine)
        await hub.start(settings.amqp_url if settings.broker_enabled else None)
        started: list[Component] = []
        try:
            for component in options.components:
                await component.start(state)
                started.append(component)
            log.info("serving", extra={"url": settings.public_url})
            yield
        finally:
            for component in reversed(started):
                with contextlib.suppress(Exception):
                    await component.stop()
            await hub.stop()
            await engine.dispose()

    app = Starlette(routes=_routes(state, graphql), lifespan=lifespan)
    app.state.taskmachine = state
    app.add_middleware(
        RequestGuard,
        max_body=settings.max_body_bytes,
        metrics=metrics,
        foreground=state.foreground,
    )
    return app
