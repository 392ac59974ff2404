"""A report is filed once: the report command's idempotency key, and a chat update that
Telegram redelivers after the hub died between filing its report and marking it seen."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bots.keys import BOTS
from ioc_core.access.roles import Principal, Role
from ioc_core.api import CoreApi, CoreApiError, HttpCoreApi, InProcessCoreApi
from ioc_core.bus import InProcessBus
from ioc_core.config import Settings
from ioc_core.incidents.models import Attachment, Incident, ReportKey
from ioc_core.runtime import Core, start_core
from ioc_core.web.app import make_app
from tests.fakes.telegram_cloud import TelegramCloud, update_factory
from tests.helpers import image_bytes, make_token, report, wait_until
from tests.integration.conftest import _free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret_for-tests"
HOOK = "/bots/telegram/webhook"
U = update_factory()
LAT, LON = 11.5349, 106.8832  # Phường Đồng Xoài, inside the test catalogue's areas


async def _count(core: Core, model: Any) -> int:
    async with core.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


# ---------------------------------------------------------------- the command's key


@pytest.fixture(params=["in-process", "http"])
async def bots_api(
    request: pytest.FixtureRequest, core: Core, client: Any
) -> tuple[CoreApi, CoreApi]:
    """(the bots' client, another service's client) of one kind."""
    if request.param == "in-process":
        return (
            InProcessCoreApi(core=core, principal=Principal(role=Role.SERVICE, name="bots")),
            InProcessCoreApi(core=core, principal=Principal(role=Role.SERVICE, name="portal")),
        )
    base = str(client.make_url("/"))
    tokens = [await make_token(core, "service", name=n) for n in ("bots", "portal")]
    a, b = (HttpCoreApi(base_url=base, token=t, session=client.session) for t in tokens)
    return a, b


async def test_i12_04_the_same_key_files_one_report(
    bots_api: tuple[CoreApi, CoreApi], core: Core
) -> None:
    bots, portal = bots_api
    body = report(channel="telegram", reporter={"name": "An", "channel_user_id": "tg-7"})
    first = await bots.report_incident(body, [("a.png", image_bytes())], idempotency_key="k-1")
    # Sent again (the photo already dropped by the bot), and twice at once.
    again, *racing = await asyncio.gather(
        bots.report_incident(body, idempotency_key="k-1"),
        bots.report_incident(body, idempotency_key="k-2"),
        bots.report_incident(body, idempotency_key="k-2"),
    )
    assert (again["id"], again["code"]) == (first["id"], first["code"])
    assert racing[0]["id"] == racing[1]["id"] != first["id"]
    assert await _count(core, Incident) == 2 and await _count(core, Attachment) == 1

    # The same key with another report is the client's mistake, not a retry.
    with pytest.raises(CoreApiError) as err:
        await bots.report_incident({**body, "description": "khác"}, idempotency_key="k-1")
    assert (err.value.status, err.value.error_id) == (422, "idempotency-key-reused")
    # Another client's key never names the bots' report.
    other = await portal.report_incident(body, idempotency_key="k-1")
    assert other["id"] not in (first["id"], racing[0]["id"])
    with pytest.raises(CoreApiError) as err:
        await bots.report_incident(body, idempotency_key="a key with spaces")
    assert (err.value.status, err.value.error_id) == (422, "invalid-idempotency-key")
    assert err.value.details == {"field": "Idempotency-Key"}
    assert await _count(core, Incident) == 3 and await _count(core, ReportKey) == 3


async def test_i12_04_rest_says_when_an_answer_is_replayed(client: Any, core: Core) -> None:
    headers = {
        "Authorization": f"Bearer {await make_token(core, 'service', name='bots')}",
        "Idempotency-Key": "telegram:1:2",
    }
    first = await client.post("/api/v1/incidents", json=report(), headers=headers)
    again = await client.post("/api/v1/incidents", json=report(), headers=headers)
    assert first.status == again.status == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await first.json())["code"] == (await again.json())["code"]
    spec = await (await client.get("/api/v1/openapi.json")).json()
    params = spec["paths"]["/api/v1/incidents"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params)


# ---------------------------------------------------------------- a chat's report


@pytest.fixture
async def cloud() -> Any:
    c = await TelegramCloud().start()
    try:
        yield c
    finally:
        await c.close()


def _env(cloud: TelegramCloud) -> dict[str, str]:
    return {
        "IOC_TELEGRAM_TOKEN": cloud.token,
        "IOC_TELEGRAM_WEBHOOK_SECRET": SECRET,
        "IOC_TELEGRAM_API_BASE": cloud.base,
        "IOC_RASA_URL": "http://127.0.0.1:9",  # the menu-driven bot: no model to wait for
        "IOC_NLU_TIMEOUT_MS": "300",
        "IOC_BOT_CHAT_RATE": "50",
    }


@pytest.mark.parametrize("kill_at", ["filed", "seen"])
async def test_i12_04_a_redelivered_update_files_one_report(
    kill_at: str,
    settings: Settings,
    database_url: str,
    cloud: TelegramCloud,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hub is killed between the core filing the report and the update being marked
    seen; Telegram redelivers the update to the restarted hub: one report, and the citizen
    is told its code once."""
    chat, port = 7001, _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration._bots_crash",
        database_url,
        str(settings.data_dir),
        str(port),
        kill_at,
        cwd=REPO,
        env={**os.environ, **_env(cloud), "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.strip() == b"ready", line
        hook = f"http://127.0.0.1:{port}{HOOK}"
        async with aiohttp.ClientSession() as http:

            async def say(update: dict[str, Any], expect: str) -> None:
                async with http.post(
                    hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
                ) as r:
                    assert r.status == 200, await r.text()
                await wait_until(
                    lambda: any(expect in t for t in cloud.texts(chat)), within=15, what=expect
                )

            await say(U.text(chat, "1"), "mô tả sự việc")  # the menu's first item: a report
            cloud.add_photo("ph1", image_bytes())
            caption = "Có ổ gà rất sâu trên đường Phú Riềng Đỏ, xe máy té liên tục"
            await say(U.photo(chat, "ph1", caption), "ở đâu")
            await say(U.location(chat, LAT, LON), "lĩnh vực")
            await say(U.button(chat, "cat:ha_tang.duong_cau"), "Xác nhận")
            confirm = U.button(chat, "yes")
            with pytest.raises(aiohttp.ClientError):  # the hub dies in this turn
                async with http.post(
                    hook, json=confirm, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
                ) as r:
                    await r.read()
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == -signal.SIGKILL and b"killed" in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not any("mã tra cứu" in t for t in cloud.texts(chat))

    # The hub comes back; Telegram delivers the unanswered update again.
    for name, value in _env(cloud).items():
        monkeypatch.setenv(name, value)
    core = await start_core(settings, bus=InProcessBus(), migrate=False)
    try:
        async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as hub:
            r = await hub.post(
                HOOK, json=confirm, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
            assert r.status == 200, await r.text()
            store = hub.app[BOTS].store

            async def delivered() -> bool:
                rows = await store.outgoing("telegram", str(chat))
                return bool(rows) and all(r.status != "pending" for r in rows)

            await wait_until(delivered, within=15, what="the answer to the redelivered update")
            async with core.sessions() as s:
                codes = list((await s.scalars(select(Incident.code))).all())
            assert len(codes) == 1
            told = [t for t in cloud.texts(chat) if "mã tra cứu" in t]
            assert len(told) == 1 and f"mã tra cứu: {codes[0]}" in told[0]
            assert await store.reports_of("telegram", str(chat)) == codes
            assert await _count(core, Attachment) == 1
            # Delivered a third time (the answer was sent): the update is known, nothing new.
            r = await hub.post(
                HOOK, json=confirm, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
            assert r.status == 200
            assert await _count(core, Incident) == 1
    finally:
        await core.close()
