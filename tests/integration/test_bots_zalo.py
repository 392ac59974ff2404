"""The Zalo OA bot end to end: signed events posted as Zalo posts them, the real Rasa server,
the real core and database, and a local Zalo cloud (tests/fakes) that records what the bot
sends. Zalo's customer-service messages have no buttons: the citizen answers with numbers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from bots.keys import BOTS
from bots.messages import Reply
from bots.store.models import Chat
from ioc_core.access.roles import Principal, Role
from ioc_core.api import InProcessCoreApi
from ioc_core.db import transaction, utcnow
from ioc_core.runtime import Core
from ioc_core.web.app import make_app
from tests.fakes.zalo_cloud import ZaloCloud
from tests.helpers import image_bytes, make_token, wait_until

HOOK = "/bots/zalo/webhook"
LAT, LON = 11.5349, 106.8832

pytestmark = pytest.mark.rasa


@pytest.fixture
async def cloud() -> AsyncIterator[ZaloCloud]:
    c = await ZaloCloud().start()
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def hub(
    core: Core, cloud: ZaloCloud, rasa: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[Any, Any]]:
    env = {
        "IOC_ZALO_APP_ID": cloud.app_id,
        "IOC_ZALO_OA_SECRET": cloud.oa_secret,
        "IOC_ZALO_APP_SECRET": cloud.app_secret,
        # A stale access token: the first send is refused and the adapter refreshes it.
        "IOC_ZALO_OA_ACCESS_TOKEN": "access-0",
        "IOC_ZALO_REFRESH_TOKEN": cloud.refresh_token,
        "IOC_ZALO_API_BASE": cloud.base,
        "IOC_ZALO_OAUTH_BASE": cloud.base,
        "IOC_RASA_URL": rasa["url"],
        "IOC_RASA_TOKEN": rasa["token"],
        "IOC_BOT_CHAT_RATE": "50",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:
        yield client


async def post(client: TestClient[Any, Any], event: tuple[bytes, dict[str, str]]) -> Any:
    raw, headers = event
    return await client.post(HOOK, data=raw, headers=headers)


async def say(
    client: TestClient[Any, Any], cloud: ZaloCloud, user: str, event: tuple[bytes, dict[str, str]]
) -> str:
    before = len(cloud.texts(user))
    r = await post(client, event)
    assert r.status == 200, await r.text()

    async def delivered() -> bool:
        rows = await client.app[BOTS].store.outgoing("zalo", user)
        return all(row.status != "pending" for row in rows)

    await wait_until(delivered, within=15, what="the replies")
    return "\n".join(cloud.texts(user)[before:])


async def test_report_status_rating_through_zalo(
    hub: TestClient[Any, Any], cloud: ZaloCloud, core: Core
) -> None:
    user = "2512521513612345678"
    cloud.images["pothole.jpg"] = image_bytes()
    out = await say(hub, cloud, user, cloud.text(user, "toi muon phan anh"))
    assert "mô tả" in out
    assert cloud.refreshes == 1  # the stale token was refreshed, and the reply still went
    tokens = json.loads((core.settings.data_dir / "bots" / "zalo-tokens.json").read_text())
    assert tokens["refresh"] == cloud.refresh_token != "refresh-1"

    out = await say(
        hub,
        cloud,
        user,
        cloud.image(user, "pothole.jpg", "Đường Phú Riềng Đỏ có ổ gà rất lớn, xe té liên tục"),
    )
    assert "ở đâu" in out
    out = await say(hub, cloud, user, cloud.location(user, LAT, LON))
    if "lĩnh vực" in out:  # choose by number: the groups are listed
        number = next(line.split(".")[0] for line in out.splitlines() if "Hạ tầng" in line)
        out = await say(hub, cloud, user, cloud.text(user, number))
    assert "Xác nhận" in out and "1. Gửi" in out
    out = await say(hub, cloud, user, cloud.text(user, "1"))
    assert "mã tra cứu" in out
    code = out.split("mã tra cứu: ")[1].split(".")[0]
    staff = InProcessCoreApi(core=core, principal=Principal(role=Role.SUPERVISOR, name="sv"))
    inc = await staff.get_incident(code)
    assert inc["channel"] == "zalo" and len(inc["attachments"]) == 1
    assert inc["reporters"][0]["channel_user_id"] == user

    out = await say(hub, cloud, user, cloud.text(user, f"ma {code.lower()} xu ly toi dau roi"))
    assert code in out and "Trạng thái" in out

    for action, extra in [("verify", {}), ("assign", {"agency": "SXD"}), ("start", {})]:
        await staff.transition(code, action, **extra)
    await staff.transition(code, "resolve", note="Đã vá")
    out = await say(hub, cloud, user, cloud.text(user, "đánh giá"))
    assert "hài lòng" in out
    out = await say(hub, cloud, user, cloud.text(user, "4"))
    assert "4/5" in out
    assert (await staff.get_incident(code))["satisfaction"]["average"] == 4.0


async def test_emergency_and_handoff_on_zalo(
    hub: TestClient[Any, Any], cloud: ZaloCloud, core: Core
) -> None:
    user = "2512521513600000001"
    out = await say(hub, cloud, user, cloud.text(user, "có người bất tỉnh ngoài đường, cứu với"))
    assert "115" in out
    out = await say(hub, cloud, user, cloud.location(user, LAT, LON))
    assert "Đã báo khẩn cấp" in out

    out = await say(hub, cloud, user, cloud.text(user, "cho tôi gặp tổng đài viên"))
    assert "tổng đài viên" in out
    token = await make_token(core, "calltaker", name="Hoa")
    auth = {"Authorization": f"Bearer {token}"}
    items = (await (await hub.get("/api/v1/chats/handoffs", headers=auth)).json())["items"]
    item = next(i for i in items if i["channel"] == "zalo" and i["chat_id"] == user)
    r = await hub.post(
        f"/api/v1/chats/handoffs/{item['id']}/message", headers=auth, json={"text": "Chị nghe"}
    )
    assert r.status == 200
    texts = await cloud.wait_texts(user, len(cloud.texts(user)) + 1)
    assert "Hoa" in texts[-1] and "Chị nghe" in texts[-1]


async def test_unsigned_or_malformed_events_leave_no_trace(
    hub: TestClient[Any, Any], cloud: ZaloCloud
) -> None:
    user = "2512521513600000002"
    store = hub.app[BOTS].store
    raw, headers = cloud.text(user, "xin chào")
    assert (await hub.post(HOOK, data=raw)).status == 401  # unsigned
    bad = cloud.event("user_send_text", user, secret="not-the-secret", text="xin chào")
    assert (await post(hub, bad)).status == 401
    tampered = raw.replace("xin chào".encode(), "tạm biệt".encode())
    assert (await hub.post(HOOK, data=tampered, headers=headers)).status == 401
    r = await hub.post(HOOK, data=b"{oops", headers={"X-ZEvent-Signature": "mac=00"})
    assert r.status == 400
    located = cloud.event(
        "user_send_location", user, attachments=[{"type": "location", "payload": {}}]
    )
    assert (await post(hub, located)).status == 400
    assert await store.outgoing("zalo", user) == []
    assert await store.last_inbound("zalo", user) is None
    # A sticker is politely refused.
    out = await say(hub, cloud, user, cloud.event("user_send_sticker", user, attachments=[]))
    assert "chỉ nhận" in out


async def test_outside_the_customer_service_window_nothing_is_sent(
    hub: TestClient[Any, Any], cloud: ZaloCloud, core: Core
) -> None:
    user = "2512521513600000003"
    await say(hub, cloud, user, cloud.text(user, "xin chào"))
    async with transaction(core.sessions) as s:
        await s.execute(
            update(Chat)
            .where(Chat.chat_id == user)
            .values(last_inbound_at=utcnow() - timedelta(days=8))
        )
    store = hub.app[BOTS].store
    before = len(cloud.calls)
    await store.queue("zalo", user, [Reply("Phản ánh PA-2026-000001 đã có kết quả")], kind="notice")

    async def dead() -> bool:
        rows = await store.outgoing("zalo", user)
        return bool(rows[-1].status == "dead")

    await wait_until(dead, within=10, what="the notice to be given up")
    assert "7 days" in (await store.outgoing("zalo", user))[-1].error
    assert len(cloud.calls) == before  # never sent to Zalo
