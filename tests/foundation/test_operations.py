"""Health, metrics, structured logs and graceful shutdown of the real server process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server

BIN = Path(sys.executable).parent


async def test_healthz_reports_database(server: RunningServer) -> None:
    response = await server.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_healthz_checks_the_broker(settings, backend: str) -> None:  # type: ignore[no-untyped-def]
    up = await start_server(settings.model_copy(update={"broker_enabled": True}))
    try:
        body = (await up.http.get("/healthz")).json()
        assert body == {"status": "ok", "database": "ok", "broker": "ok"}
    finally:
        await stop_server(up)
    # A broker nobody listens on: the server still serves and says what is wrong.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    app_settings = settings.model_copy(update={"broker_enabled": False})
    down = await start_server(app_settings)
    try:
        down.settings.__dict__["broker_enabled"] = True
        down.settings.__dict__["amqp_url"] = f"amqp://guest:guest@127.0.0.1:{dead_port}/"
        response = await down.http.get("/healthz")
        assert response.status_code == 503
        assert response.json()["broker"].startswith("error:")
    finally:
        await stop_server(down)


async def test_metrics_in_prometheus_text_format(server: RunningServer) -> None:
    await server.http.post("/graphql", json={"query": "{ __typename }"})
    response = await server.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "# TYPE taskmachine_http_requests_total counter" in text
    assert 'taskmachine_http_requests_total{path="/graphql",status="200"} 1' in text
    assert 'taskmachine_http_request_seconds_bucket{path="/graphql",le="+Inf"} 1' in text
    assert "taskmachine_live_subscribers 0" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_logs_json_and_shuts_down_gracefully(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "TASKMACHINE_DATA_DIR": str(tmp_path),
        "TASKMACHINE_PORT": str(port),
        "TASKMACHINE_BROKER_ENABLED": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "taskmachine"),
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not come up"
                await asyncio.sleep(0.1)
            # An open subscription must not hold the shutdown hostage.
            import websockets

            sock = await websockets.connect(
                f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]
            )
            await sock.send(json.dumps({"type": "connection_init"}))
            await sock.recv()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), timeout=15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    assert proc.stderr is not None
    lines = [
        json.loads(line)
        for line in (await proc.stderr.read()).decode().splitlines()
        if line.startswith("{")
    ]
    messages = [entry["msg"] for entry in lines]
    assert any(
        entry.get("logger") == "taskmachine.server" and entry["msg"] == "serving" for entry in lines
    )
    assert any("Shutting down" in msg or "Finished server process" in msg for msg in messages)
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in lines)
