"""The staff screens' live feed (`GET /api/v1/live`) against the real hub: embedded (SQLite +
in-process bus) and scaled out (PostgreSQL + Redis Streams, two workers on one stream)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from ioc_core.bus import Event, RedisStreamsBus
from ioc_core.config import Settings
from ioc_core.runtime import Core, start_core
from ioc_core.web.app import make_app
from ioc_core.web.live import HUB
from tests.conftest import REDIS_URL
from tests.helpers import auth, make_token, report, stalled_websocket, wait_until

URL = "/api/v1/live"


async def _next(ws: aiohttp.ClientWebSocketResponse, within: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=within)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def _event_named(ws: aiohttp.ClientWebSocketResponse, name: str) -> dict[str, Any]:
    while True:
        data = await _next(ws)
        if data["type"] == "event" and data["event"]["name"] == name:
            return data


async def test_staff_see_a_new_report_at_once_and_nobody_else_does(
    client: TestClient[Any, Any], core: Core
) -> None:
    staff = await make_token(core, "calltaker")
    async with client.ws_connect(URL, headers=auth(staff)) as ws:
        hello = await _next(ws)
        assert hello["type"] == "hello"
        r = await client.post("/api/v1/incidents", json=report(), headers=auth(staff))
        assert r.status == 201
        data = await _event_named(ws, "incident.created")
        assert data["event"]["payload"]["code"] == (await r.json())["code"]
        assert "reporter" not in json.dumps(data)  # events never carry who reported
    r = await client.get(URL)
    assert r.status == 401 and (await r.json())["error_id"] == "not-signed-in"
    citizen = await make_token(core, "citizen", subject="zalo:1")
    r = await client.get(URL, headers=auth(citizen))
    assert r.status == 403 and (await r.json())["error_id"] == "no-live-feed"
    r = await client.get(URL, headers={**auth(staff), "Origin": "https://evil.example"})
    assert r.status == 403  # another site's page never gets a staff feed


async def test_a_reconnect_resumes_exactly_after_the_last_cursor(
    client: TestClient[Any, Any], core: Core
) -> None:
    staff = await make_token(core, "supervisor")
    async with client.ws_connect(URL, headers=auth(staff)) as ws:
        await _next(ws)
        await client.post("/api/v1/incidents", json=report(), headers=auth(staff))
        seen = await _event_named(ws, "incident.created")
    # Away: two more reports.
    codes = []
    for _ in range(2):
        r = await client.post("/api/v1/incidents", json=report(), headers=auth(staff))
        codes.append((await r.json())["code"])
    async with client.ws_connect(f"{URL}?after={seen['cursor']}", headers=auth(staff)) as ws:
        assert (await _next(ws))["type"] == "hello"
        got: list[str] = []
        while len(got) < 2:
            data = await _next(ws)
            assert data["type"] == "event", data
            if data["event"]["name"] == "incident.created":
                got.append(data["event"]["payload"]["code"])
        assert got == codes
    async with client.ws_connect(f"{URL}?after=abc-1", headers=auth(staff)) as ws:
        assert [(await _next(ws))["type"] for _ in range(2)] == ["hello", "resync"]
    r = await client.get(f"{URL}?after=nobody-knows", headers=auth(staff))
    assert r.status == 400 and (await r.json())["error_id"] == "bad-cursor"


async def test_a_stalled_screen_is_told_to_resync_and_slows_nobody(
    settings: Settings, tmp_path: Any
) -> None:
    from dataclasses import replace

    from ioc_core.bus import InProcessBus

    core = await start_core(replace(settings, live_queue=8), bus=InProcessBus(), migrate=False)
    try:
        app = make_app(core)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            staff = await make_token(core, "supervisor")
            server = client.server
            _, stalled = await stalled_websocket(server.host, server.port or 0, URL, auth(staff))
            async with client.ws_connect(URL, headers=auth(staff)) as healthy:
                await _next(healthy)
                pad = "x" * 4000  # enough that the stalled socket's buffers fill up
                got: list[int] = []

                async def read_all() -> None:
                    while len(got) < 3000:
                        got.append((await _next(healthy))["event"]["payload"]["n"])

                reader = asyncio.create_task(read_all())
                for n in range(3000):
                    event = Event(
                        name="call.queued", payload={"n": n, "pad": pad}, correlation_id="t"
                    )
                    await core.bus.publish([event])
                    await asyncio.sleep(0.0005)  # a steady 2000 events/s, not one burst
                await asyncio.wait_for(reader, 20)
                assert got == list(range(3000))  # in order, nothing lost, never resynced
            # The stalled one lost its backlog and owes a reload (a resync waits in its queue).
            hub = app[HUB]
            (frozen,) = hub.clients
            assert frozen.resyncs >= 1 and len(frozen.pending) <= 8
            stalled.close()
    finally:
        await core.close()


# ------------------------------------------------------------------ scaled out (Redis)


@pytest.fixture
async def two_workers(
    settings: Settings,
) -> AsyncIterator[tuple[TestClient[Any, Any], TestClient[Any, Any], Core]]:
    stream = f"test:live:{uuid.uuid4().hex}"
    cores = [
        await start_core(settings, bus=RedisStreamsBus(url=REDIS_URL, stream=stream), migrate=False)
        for _ in range(2)
    ]
    clients = [TestClient(TestServer(make_app(c), host="127.0.0.1")) for c in cores]
    for c in clients:
        await c.start_server()
    try:
        yield clients[0], clients[1], cores[0]
    finally:
        for c in clients:
            await c.close()
        for core in cores:
            await core.close()
        r = aioredis.from_url(REDIS_URL)
        await r.delete(stream, f"{stream}:dead")
        await r.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_screen_resumes_on_another_worker_without_loss(
    two_workers: tuple[TestClient[Any, Any], TestClient[Any, Any], Core],
) -> None:
    first, second, core = two_workers
    staff = await make_token(core, "supervisor")
    async with first.ws_connect(URL, headers=auth(staff)) as ws:
        await _next(ws)
        await first.post("/api/v1/incidents", json=report(), headers=auth(staff))
        seen = await _event_named(ws, "incident.created")
    r = await first.post("/api/v1/incidents", json=report(), headers=auth(staff))
    missed = (await r.json())["code"]

    async def in_second_ring() -> bool:
        ring = second.app[HUB]
        return ring.cursor is not None and ring.cursor > seen["cursor"]

    await wait_until(in_second_ring, 10, "the second worker's tap to see the report")
    # The reconnect lands on the other worker: same Redis cursor, nothing lost.
    async with second.ws_connect(f"{URL}?after={seen['cursor']}", headers=auth(staff)) as ws:
        assert (await _next(ws))["type"] == "hello"
        data = await _event_named(ws, "incident.created")
        assert data["event"]["payload"]["code"] == missed
        # And live from there on, published by the first worker.
        r = await first.post("/api/v1/incidents", json=report(), headers=auth(staff))
        data = await asyncio.wait_for(_event_named(ws, "incident.created"), 10)
        assert data["event"]["payload"]["code"] == (await r.json())["code"]
