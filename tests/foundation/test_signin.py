"""Magic-link sign-in, the session cookie, sign-out, tokens, and WebSocket authentication."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from websockets.exceptions import ConnectionClosed

from taskmachine import models as m
from tests.api.gqlclient import Subscription, ws_session
from tests.conftest import RunningServer

ME = "{ me { email } }"


async def _link(server: RunningServer, email: str) -> str:
    assert await server.ok("mutation($e: String!) { requestMagicLink(email: $e) }", {"e": email})
    outbox = server.state.services["mailer"].outbox
    assert outbox and outbox[-1][0] == email
    return str(outbox[-1][1])


async def test_magic_link_signs_in_once_and_sign_out_ends_session(server: RunningServer) -> None:
    link = await _link(server, "Grace@Example.com".lower())
    assert link.startswith(f"{server.settings.public_url}/auth/magic?token=tm_ml_")
    path = link.removeprefix(server.settings.public_url)
    browser = httpx.AsyncClient(base_url=server.url)
    response = await browser.get(path)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert (
        "tm_session=tm_ses_" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    )
    browser.cookies.set("tm_session", response.cookies["tm_session"])
    me = (await browser.post("/graphql", json={"query": ME})).json()
    assert me["data"]["me"]["email"] == "grace@example.com"

    # The same link does not work twice.
    again = await httpx.AsyncClient(base_url=server.url).get(path)
    assert again.status_code == 400 and "already used" in again.text

    out = await browser.post("/auth/signout")
    assert out.status_code == 200
    browser.cookies.set("tm_session", response.cookies["tm_session"])
    after = (await browser.post("/graphql", json={"query": ME})).json()
    assert after["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await browser.aclose()


async def test_expired_link_is_refused(server: RunningServer) -> None:
    link = await _link(server, "late@example.com")
    async with server.state.session_factory() as session:
        await session.execute(
            sa.update(m.MagicLink).values(expires_at=m.utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    response = await server.http.get(link.removeprefix(server.settings.public_url))
    assert response.status_code == 400 and "expired" in response.text
    assert "set-cookie" not in response.headers


async def test_links_and_tokens_are_stored_hashed(server: RunningServer) -> None:
    link = await _link(server, "hash@example.com")
    secret = link.split("token=")[1]
    token = await server.token_for("hash@example.com")
    async with server.state.session_factory() as session:
        hashes = (await session.scalars(sa.select(m.MagicLink.token_hash))).all()
        token_hashes = (await session.scalars(sa.select(m.ApiToken.token_hash))).all()
    assert secret not in hashes and all(len(h) == 64 for h in hashes)
    assert token not in token_hashes


async def test_request_magic_link_rejects_a_bad_address(server: RunningServer) -> None:
    code = await server.error_code('mutation { requestMagicLink(email: "not-an-address") }')
    assert code == "BAD_USER_INPUT"


async def test_api_token_lifecycle(server: RunningServer) -> None:
    token = await server.token_for("tok@example.com")
    created = await server.ok(
        'mutation { createApiToken(input: {name: "ci", expiresInDays: 30}) { token apiToken { id prefix } } }',
        token=token,
    )
    new = created["createApiToken"]
    assert new["token"].startswith(new["apiToken"]["prefix"])
    assert (await server.ok(ME, token=new["token"]))["me"]["email"] == "tok@example.com"
    await server.ok(
        "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }",
        {"id": new["apiToken"]["id"]},
        token,
    )
    assert await server.error_code(ME, token=new["token"]) == "UNAUTHENTICATED"
    assert await server.error_code(ME, token="tm_pat_forged") == "UNAUTHENTICATED"


async def test_a_token_used_only_for_queries_still_records_its_last_use(
    server: RunningServer,
) -> None:
    """The token is looked up in the query's own transaction; that query commits the stamp."""
    owner = await server.token_for("stamp@example.com")
    created = await server.ok(
        'mutation { createApiToken(input: {name: "reader"}) { token apiToken { id } } }',
        token=owner,
    )
    new = created["createApiToken"]

    async def last_used() -> object:
        async with server.state.session_factory() as session:
            return await session.scalar(
                sa.select(m.ApiToken.last_used_at).where(
                    m.ApiToken.id == uuid.UUID(new["apiToken"]["id"])
                )
            )

    assert await last_used() is None
    assert (await server.ok(ME, token=new["token"]))["me"]["email"] == "stamp@example.com"
    first = await last_used()
    assert first is not None
    # Within the minute a query does not write it again.
    assert (await server.ok(ME, token=new["token"]))["me"]["email"] == "stamp@example.com"
    assert await last_used() == first


async def test_websocket_auth_by_init_payload_and_by_cookie(server: RunningServer) -> None:
    token = await server.token_for("ws@example.com")
    ws = (await server.ok('mutation { createWorkspace(input: {name: "W"}) { id } }', token=token))[
        "createWorkspace"
    ]
    async with ws_session(server.ws_url, token) as session:
        sub = Subscription(
            session,
            "subscription($w: ID!) { boardChanged(workspaceId: $w) { kind } }",
            {"w": ws["id"]},
        )
        import asyncio

        await asyncio.sleep(0.2)
        await server.ok(
            'mutation($w: ID!) { createTask(input: {workspaceId: $w, title: "x"}) { id } }',
            {"w": ws["id"]},
            token,
        )
        assert (await sub.next())["boardChanged"]["kind"] == "CREATED"
        await sub.close()

    # A browser's WebSocket carries the session cookie instead.
    import websockets

    link = await _link(server, "ws@example.com")
    got = await server.http.get(link.removeprefix(server.settings.public_url))
    cookie = got.cookies["tm_session"]
    async with websockets.connect(
        server.ws_url,
        subprotocols=["graphql-transport-ws"],
        additional_headers={"cookie": f"tm_session={cookie}"},
    ) as sock:
        import json

        await sock.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await sock.recv())["type"] == "connection_ack"
        await sock.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": ME}}))
        reply = json.loads(await sock.recv())
        assert reply["payload"]["data"]["me"]["email"] == "ws@example.com"


async def test_websocket_with_bad_token_is_closed_4403(server: RunningServer) -> None:
    import json

    import websockets

    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as sock:
        await sock.send(
            json.dumps(
                {"type": "connection_init", "payload": {"authorization": "Bearer tm_pat_bogus"}}
            )
        )
        with pytest.raises(ConnectionClosed) as caught:
            await sock.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 4403


def test_login_link_command_prints_a_working_link(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TASKMACHINE_DATA_DIR": str(tmp_path),
        "TASKMACHINE_BROKER_ENABLED": "false",
    }
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "taskmachine"), "login-link", "cli@example.com"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip().startswith("http://127.0.0.1:8000/auth/magic?token=tm_ml_")
    bad = subprocess.run(
        [str(bin_dir / "taskmachine"), "login-link", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "not an email address" in bad.stderr
