"""The Telegram bot end to end: webhooks posted as Telegram posts them, the real Rasa server,
the real core and database, and a local Telegram cloud (tests/fakes) that records what the
bot sends."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bots.keys import BOTS
from ioc_core.access.roles import Principal, Role
from ioc_core.api import InProcessCoreApi
from ioc_core.runtime import Core
from ioc_core.web.app import make_app
from tests.fakes.telegram_cloud import TelegramCloud, update_factory
from tests.helpers import image_bytes, make_token, wait_until

SECRET = "s3cret_for-tests"
U = update_factory()
HOOK = "/bots/telegram/webhook"
# Phường Đồng Xoài (Đồng Nai), inside the test catalogue's areas.
LAT, LON = 11.5349, 106.8832


@pytest.fixture
async def cloud() -> AsyncIterator[TelegramCloud]:
    c = await TelegramCloud().start()
    try:
        yield c
    finally:
        await c.close()


async def _hub(
    core: Core, cloud: TelegramCloud, env: dict[str, str], mp: pytest.MonkeyPatch
) -> Any:
    mp.setenv("IOC_TELEGRAM_TOKEN", cloud.token)
    mp.setenv("IOC_TELEGRAM_WEBHOOK_SECRET", SECRET)
    mp.setenv("IOC_TELEGRAM_API_BASE", cloud.base)
    for name, value in env.items():
        mp.setenv(name, value)
    return TestClient(TestServer(make_app(core), host="127.0.0.1"))


@pytest.fixture
async def hub(
    core: Core, cloud: TelegramCloud, rasa: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[Any, Any]]:
    # Quick turns: Telegram's 1 message/s per chat is tested on its own below.
    env = {"IOC_RASA_URL": rasa["url"], "IOC_RASA_TOKEN": rasa["token"], "IOC_BOT_CHAT_RATE": "50"}
    async with await _hub(core, cloud, env, monkeypatch) as client:
        yield client


async def post(client: TestClient[Any, Any], update: Any, secret: str | None = SECRET) -> Any:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return await client.post(HOOK, json=update, headers=headers)


async def say(client: TestClient[Any, Any], cloud: TelegramCloud, chat: int, update: Any) -> str:
    """Post one update and return everything the bot sent back for it, joined."""
    before = len(cloud.texts(chat))
    r = await post(client, update)
    assert r.status == 200, await r.text()
    await wait_until(lambda: _delivered(client, chat), within=15, what="the replies")
    return "\n".join(cloud.texts(chat)[before:])


async def _delivered(client: TestClient[Any, Any], chat: int) -> bool:
    """Everything queued for the chat went out (or died)."""
    rows = await client.app[BOTS].store.outgoing("telegram", str(chat))
    return all(r.status != "pending" for r in rows)


def last_buttons(cloud: TelegramCloud, chat: int) -> list[str]:
    markup = cloud.sent(chat)[-1].get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


@pytest.mark.rasa
async def test_report_status_rating_through_telegram(
    hub: TestClient[Any, Any], cloud: TelegramCloud, core: Core
) -> None:
    chat = 5001
    out = await say(hub, cloud, chat, U.text(chat, "/start"))
    assert "Xin chào" in out and "Phản ánh sự việc" in out
    assert "flow:report" in last_buttons(cloud, chat)

    # A photo with a caption that tells what happened starts a report.
    cloud.add_photo("ph1", image_bytes())
    out = await say(
        hub,
        cloud,
        chat,
        U.photo(chat, "ph1", "Có ổ gà rất sâu trên đường Phú Riềng Đỏ, xe máy té liên tục"),
    )
    assert "ở đâu" in out
    assert any(c.method == "getfile" for c in cloud.calls)
    keyboard = cloud.sent(chat)[-2].get("reply_markup") or cloud.sent(chat)[-1]["reply_markup"]
    assert "request_location" in str(keyboard)

    out = await say(hub, cloud, chat, U.location(chat, LAT, LON))
    if "lĩnh vực" in out:  # the category was not recognised: choose it
        assert "cat:ha_tang" in last_buttons(cloud, chat)
        out = await say(hub, cloud, chat, U.button(chat, "cat:ha_tang.duong_cau"))
    assert "Xác nhận" in out and "Ảnh: 1" in out
    out = await say(hub, cloud, chat, U.button(chat, "yes"))
    assert "mã tra cứu" in out
    code = out.split("mã tra cứu: ")[1].split(".")[0]

    staff = InProcessCoreApi(core=core, principal=Principal(role=Role.SUPERVISOR, name="sv"))
    inc = await staff.get_incident(code)
    assert inc["channel"] == "telegram" and len(inc["attachments"]) == 1
    assert inc["location"]["lat"] == pytest.approx(LAT)
    assert inc["reporters"][0]["channel_user_id"] == str(chat)

    # Status by code, typed without diacritics.
    out = await say(hub, cloud, chat, U.text(chat, f"cho hoi ho so {code} sao roi"))
    assert code in out and "Trạng thái" in out

    # The agency resolves it; the citizen rates it (the bot knows their one report).
    for action, extra in [("verify", {}), ("assign", {"agency": "SXD"}), ("start", {})]:
        await staff.transition(code, action, **extra)
    await staff.add_reply(code, "Đội duy tu sẽ vá trong tuần")
    await staff.transition(code, "resolve", note="Đã vá ổ gà")
    # The citizen was told each step on Telegram (CH-3), the result with its reason.
    told = [
        "đã được xác minh",
        "giao cho SXD",
        "đang được xử lý",
        "trả lời mới: Đội duy tu sẽ vá trong tuần",
        "đã có kết quả: Đã vá ổ gà",
    ]
    await wait_until(
        lambda: all(any(t in x for x in cloud.texts(chat)) for t in told),
        within=15,
        what="the notices",
    )
    out = await say(hub, cloud, chat, U.text(chat, "tôi muốn đánh giá"))
    assert "hài lòng" in out
    out = await say(hub, cloud, chat, U.button(chat, "5"))
    assert "5/5" in out
    assert (await staff.get_incident(code))["satisfaction"] == {"count": 1, "average": 5.0}
    # Every button press was answered (the spinner stops).
    assert sum(c.method == "answercallbackquery" for c in cloud.calls) >= 2


@pytest.mark.rasa
async def test_emergency_guidance_and_urgent_incident(
    hub: TestClient[Any, Any], cloud: TelegramCloud, core: Core
) -> None:
    chat = 5002
    out = await say(hub, cloud, chat, U.text(chat, "nha toi dang bi chay, khoi nhieu lam"))
    assert "114" in out and "vị trí" in out
    out = await say(hub, cloud, chat, U.location(chat, LAT, LON))
    assert "Đã báo khẩn cấp" in out
    code = out.split("mã ")[1].split(".")[0]
    staff = InProcessCoreApi(core=core, principal=Principal(role=Role.SUPERVISOR, name="sv"))
    inc = await staff.get_incident(code)
    assert inc["priority"] == "urgent" and inc["category"].startswith("chay_no")


@pytest.mark.rasa
async def test_handoff_to_a_call_taker(
    hub: TestClient[Any, Any], cloud: TelegramCloud, core: Core
) -> None:
    chat = 5003
    token = await make_token(core, "calltaker", name="Lan")
    auth = {"Authorization": f"Bearer {token}"}
    feed = await hub.ws_connect("/api/v1/live", headers=auth)  # what the console follows
    out = await say(hub, cloud, chat, U.text(chat, "cho tôi nói chuyện với tổng đài viên"))
    assert "tổng đài viên" in out
    await say_nothing(hub, U.text(chat, "tôi cần hỏi về hồ sơ đất đai"))
    r = await hub.get("/api/v1/chats/handoffs", headers=auth)
    items = (await r.json())["items"]
    item = next(i for i in items if i["chat_id"] == str(chat))
    assert item["status"] == "waiting"
    assert [m["text"] for m in item["messages"] if m["from"] == "citizen"][-1].startswith("tôi cần")
    assert (await hub.get("/api/v1/chats/handoffs")).status == 401
    before = len(cloud.texts(chat))
    r = await hub.post(f"/api/v1/chats/handoffs/{item['id']}/claim", headers=auth)
    assert r.status == 200 and (await r.json())["status"] == "active"
    r = await hub.post(
        f"/api/v1/chats/handoffs/{item['id']}/message", headers=auth, json={"text": "Chào anh"}
    )
    assert r.status == 200
    await wait_until(
        lambda: any("Lan: Chào anh" in t for t in cloud.texts(chat)), what="the agent's words"
    )
    assert any("Lan đã tham gia" in t for t in cloud.texts(chat)[before:])
    r = await hub.post(f"/api/v1/chats/handoffs/{item['id']}/close", headers=auth)
    assert (await r.json())["status"] == "closed"
    await cloud.wait_texts(chat, before + 3)
    # The console heard each step at once, and never the citizen's words or name.
    seen: list[tuple[str, str]] = []
    while ("chat.handoff_updated", "closed") not in seen:
        msg = json.loads((await feed.receive(timeout=5)).data)
        if msg["type"] == "event" and msg["event"]["name"].startswith("chat.handoff_"):
            assert msg["event"]["payload"]["handoff_id"] == item["id"]
            assert "hồ sơ" not in json.dumps(msg, ensure_ascii=False)
            seen.append((msg["event"]["name"], msg["event"]["payload"]["status"]))
    assert seen[0] == ("chat.handoff_opened", "waiting")
    assert ("chat.handoff_updated", "active") in seen
    await feed.close()
    # The conversation is free again: the next message is understood, not relayed.
    out = await say(hub, cloud, chat, U.text(chat, "xin chào"))
    assert "Xin chào" in out


async def say_nothing(client: TestClient[Any, Any], update: Any) -> None:
    r = await post(client, update)
    assert r.status == 200


@pytest.mark.rasa
async def test_bad_webhooks_leave_no_trace(
    hub: TestClient[Any, Any], cloud: TelegramCloud, core: Core
) -> None:
    chat = 5004
    store = hub.app[BOTS].store
    assert (await post(hub, U.text(chat, "xin chào"), secret=None)).status == 401
    assert (await post(hub, U.text(chat, "xin chào"), secret="wrong")).status == 401
    r = await hub.post(HOOK, data=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert r.status == 400 and (await r.json())["error_id"] == "malformed-update"
    r = await hub.post(HOOK, json=[1, 2], headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert r.status == 400
    r = await hub.post(
        HOOK, json={"message": {}}, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert r.status == 400
    huge = b'{"update_id": 1, "x": "' + b"a" * (2 << 20) + b'"}'
    r = await hub.post(HOOK, data=huge, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert r.status == 413
    assert await store.outgoing("telegram", str(chat)) == []
    assert await store.last_inbound("telegram", str(chat)) is None

    # A sticker is politely refused; a very long text is cut, not fatal.
    out = await say(hub, cloud, chat, U.sticker(chat))
    assert "chỉ nhận" in out
    out = await say(hub, cloud, chat, U.text(chat, "ổ gà " * 3000))
    assert out
    # The same update delivered twice is answered once.
    update = U.text(chat, "cảm ơn")
    await say(hub, cloud, chat, update)
    n = len(cloud.texts(chat))
    assert (await post(hub, update)).status == 200
    assert len(cloud.texts(chat)) == n


@pytest.mark.rasa
async def test_flood_and_retry_after(
    core: Core, cloud: TelegramCloud, rasa: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telegram's 429 is honoured (retry_after), and one chat's burst is paced at 1/s."""
    env = {"IOC_RASA_URL": rasa["url"], "IOC_RASA_TOKEN": rasa["token"]}
    async with await _hub(core, cloud, env, monkeypatch) as hub:
        await _flood(hub, cloud)


async def _flood(hub: TestClient[Any, Any], cloud: TelegramCloud) -> None:
    chat = 5005
    cloud.failures.append(
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            },
        )
    )
    for i in range(4):
        assert (await post(hub, U.text(chat, f"cảm ơn {i}"))).status == 200
    await cloud.wait_texts(chat, 4, within=20)
    attempts = [c for c in cloud.calls if c.method == "sendmessage"]
    assert attempts[1].at - attempts[0].at >= 0.95  # waited as told
    delivered = [c.at for c in attempts if c.params.get("_ok")]
    gaps = [b - a for a, b in itertools.pairwise(delivered)]
    assert min(gaps) >= 0.9  # about one message a second to one chat


async def test_without_rasa_the_bot_works_from_the_menu(
    core: Core, cloud: TelegramCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"IOC_RASA_URL": "http://127.0.0.1:9", "IOC_NLU_TIMEOUT_MS": "300"}
    async with await _hub(core, cloud, env, monkeypatch) as hub:
        chat = 5006
        out = await say(hub, cloud, chat, U.text(chat, "tôi muốn hỏi một chuyện"))
        assert "tạm thời gián đoạn" in out or "gián đoạn" in out
        assert "1. Phản ánh sự việc" in out
        out = await say(hub, cloud, chat, U.text(chat, "2"))  # "follow up a report"
        assert "mã phản ánh" in out
        # The emergency pre-check still works without any model.
        out = await say(hub, cloud, chat, U.text(chat, "có cướp, cứu với"))
        assert "113" in out
