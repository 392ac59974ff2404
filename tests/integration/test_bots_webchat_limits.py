"""The web chat's sockets under load and abuse, its message ids across reconnects, its photo
store, and citizens' words the database refuses (issue 11, items 6, 7, 8 and 14), against the
real core and database (IOC_RASA=off: the same engine, menu-driven)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from bots.keys import BOTS
from bots.messages import Inbound
from bots.webchat.channel import PHOTOS_HELD, WebChatChannel
from ioc_core.bus import InProcessBus
from ioc_core.config import Settings
from ioc_core.runtime import Core, start_core
from ioc_core.sockets import SOCKETS
from ioc_core.web.app import make_app
from tests.conftest import make_settings
from tests.fakes.telegram_cloud import TelegramCloud, update_factory
from tests.fakes.zalo_cloud import ZaloCloud
from tests.helpers import image_bytes, wait_until

INFLIGHT = 4  # the request limit, small so that "more sockets than it" is quick to open
PER_CLIENT = 8
TOTAL = 9
MAX_PHOTO = 3000
PORTAL = "https://portal.example.gov.vn"
SECRET = "s3cret_for-tests"
U = update_factory()


@pytest.fixture
def limited(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data",
        database_url,
        http_max_inflight=INFLIGHT,
        http_queue_ms=200,
        sockets_per_client=PER_CLIENT,
        sockets_max=TOTAL,
        socket_messages_per_s=2.0,
        socket_burst=10,
        socket_origins=(PORTAL,),
        max_attachment_bytes=MAX_PHOTO,
    )


@pytest.fixture
async def hub(
    limited: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient[Any, Any], TelegramCloud]]:
    monkeypatch.setenv("IOC_RASA", "off")
    cloud = await TelegramCloud().start()
    monkeypatch.setenv("IOC_TELEGRAM_TOKEN", cloud.token)
    monkeypatch.setenv("IOC_TELEGRAM_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("IOC_TELEGRAM_API_BASE", cloud.base)
    core: Core = await start_core(limited, bus=InProcessBus(), migrate=False)
    try:
        async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:
            yield client, cloud
    finally:
        await core.close()
        await cloud.close()


@pytest.fixture
async def zalo_hub(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient[Any, Any], ZaloCloud]]:
    cloud = await ZaloCloud().start()
    env = {
        "IOC_RASA": "off",
        "IOC_ZALO_APP_ID": cloud.app_id,
        "IOC_ZALO_OA_SECRET": cloud.oa_secret,
        "IOC_ZALO_APP_SECRET": cloud.app_secret,
        "IOC_ZALO_OA_ACCESS_TOKEN": "access-0",
        "IOC_ZALO_REFRESH_TOKEN": cloud.refresh_token,
        "IOC_ZALO_API_BASE": cloud.base,
        "IOC_ZALO_OAUTH_BASE": cloud.base,
        "IOC_BOT_CHAT_RATE": "50",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:
            yield client, cloud
    finally:
        await cloud.close()


def mid() -> str:
    return uuid.uuid4().hex


async def replies(ws: Any, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        msg = await ws.receive_json(timeout=10)
        if "reply" in msg:
            out.append(msg["reply"])
    return out


async def until_menu(ws: Any) -> str:
    """The replies to a message that ends with the menu (its buttons), joined."""
    texts: list[str] = []
    while True:
        reply = (await replies(ws, 1))[0]
        texts.append(reply["text"])
        if reply.get("buttons"):
            return "\n".join(texts)


async def until(ws: Any, fragment: str) -> str:
    """Replies read until one holds `fragment` (earlier ones answered earlier messages)."""
    while fragment not in (text := str((await replies(ws, 1))[0]["text"])):
        pass
    return text


async def settled(client: TestClient[Any, Any], chat: str) -> None:
    """Every reply queued for the chat is marked delivered (a socket closed before that
    sends it again on the next: delivery is at least once)."""

    async def done() -> bool:
        rows = await client.app[BOTS].store.outgoing("web", chat)
        return all(r.status == "sent" for r in rows)

    await wait_until(done, within=10, what="the replies marked sent")


async def refused(client: TestClient[Any, Any], path: str, **kw: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect(path, **kw)
    return err.value.status


async def test_defect_06_idle_sockets_do_not_stop_the_hub(
    hub: tuple[TestClient[Any, Any], TelegramCloud],
) -> None:
    client, _cloud = hub
    # More idle sockets than the request limit, all from one address.
    sockets = [await client.ws_connect("/bots/web/ws?lang=vi") for _ in range(PER_CLIENT)]
    assert PER_CLIENT > INFLIGHT
    for ws in sockets:
        assert "chat" in await ws.receive_json(timeout=10)
    # The API and a webhook answer while they are held.
    r = await client.get("/api/v1/categories")
    assert r.status == 200, await r.text()
    update = U.text(4242, "/start")
    r = await client.post(
        "/bots/telegram/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert r.status == 200, await r.text()
    # One more from the same address: refused before the upgrade, saying why.
    assert await refused(client, "/bots/web/ws") == 429
    r = await client.get("/bots/web/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert r.status == 429 and (await r.json())["error_id"] == "too-many-sockets"
    assert r.headers["Retry-After"]
    # Another address takes the last place overall; beyond it the worker is full.
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other) as session:
        url = client.make_url("/bots/web/ws")
        last = await session.ws_connect(url)
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await session.ws_connect(url)
        assert err.value.status == 503
        await last.close()
    # A page from another site may not open one; the hub's own host and the portal may.
    await sockets.pop().close()
    await sockets.pop().close()
    gate = client.app[SOCKETS]
    await wait_until(lambda: gate.open == PER_CLIENT - 2, within=5, what="places given back")
    assert await refused(client, "/bots/web/ws", headers={"Origin": "https://evil.example"}) == 403
    own = f"http://{client.host}:{client.port}"
    for origin in (own, PORTAL):
        ws = await client.ws_connect("/bots/web/ws", headers={"Origin": origin})
        sockets.append(ws)
    # A message larger than one photo of the configured size (base64) closes its socket.
    big = sockets.pop()
    await big.send_json({"id": mid(), "text": "x" * (MAX_PHOTO * 2 + (64 << 10))})
    closing = await big.receive(timeout=10)
    while closing.type == WSMsgType.TEXT:
        closing = await big.receive(timeout=10)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and big.close_code == 1009
    # A flood is answered once, then the socket is closed (policy, 1008).
    flood = sockets.pop()
    for _ in range(40):
        await flood.send_json({"nonsense": 1})
    errors: list[str] = []
    while (m := await flood.receive(timeout=10)).type == WSMsgType.TEXT:
        errors.append(m.json().get("error", ""))
    assert flood.close_code == 1008
    assert any("quá nhanh" in e for e in errors)
    # The held sockets still work, and the API still answers.
    ws = sockets[0]
    await ws.send_json({"id": mid(), "text": "/start"})
    assert "Xin chào" in (await replies(ws, 2))[0]["text"]
    assert (await client.get("/api/v1/categories")).status == 200
    for ws in sockets:
        await ws.close()


async def test_defect_07_a_reconnected_chat_is_answered(
    hub: tuple[TestClient[Any, Any], TelegramCloud],
) -> None:
    client, _cloud = hub
    ws = await client.ws_connect("/bots/web/ws?lang=vi")
    chat = (await ws.receive_json(timeout=10))["chat"]
    await ws.send_json({"id": mid(), "text": "/start"})
    assert "Xin chào" in (await replies(ws, 2))[0]["text"]
    await settled(client, chat)
    await ws.close()

    ws = await client.ws_connect(f"/bots/web/ws?lang=vi&chat={chat}")
    await ws.send_json({"id": mid(), "text": "menu"})
    assert "Quý vị cần" in await until_menu(ws)
    # A page cached before ids: the server makes one, still answered.
    await settled(client, chat)
    await ws.close()
    ws = await client.ws_connect(f"/bots/web/ws?lang=vi&chat={chat}")
    await ws.send_json({"text": "menu"})
    assert "Quý vị cần" in await until_menu(ws)
    # The same message sent twice (a page unsure it went) is answered once: the second
    # queues nothing before the message after it (a bad id, answered at once) is read.
    store = client.app[BOTS].store
    again = mid()
    await ws.send_json({"id": again, "text": "menu"})
    await until_menu(ws)
    answered = len(await store.outgoing("web", chat))
    await ws.send_json({"id": again, "text": "menu"})
    await ws.send_json({"id": "bad id!", "text": "menu"})
    while "error" not in (m := await ws.receive_json(timeout=10)):
        pass
    assert "id" in m["error"]
    rows = await store.outgoing("web", chat)
    assert len(rows) == answered, [(r.id, r.payload["text"][:30]) for r in rows]
    await ws.close()


async def test_defect_08_photos_not_taken_are_not_kept(
    hub: tuple[TestClient[Any, Any], TelegramCloud],
) -> None:
    client, _cloud = hub
    channel = client.app[BOTS].channels["web"]
    assert isinstance(channel, WebChatChannel)
    ws = await client.ws_connect("/bots/web/ws?lang=vi")
    await ws.receive_json(timeout=10)
    photo = base64.b64encode(image_bytes()).decode()
    # No flow takes a photo here: the menu answers, and the photo is gone.
    await ws.send_json({"id": mid(), "photo": photo, "caption": ""})
    await replies(ws, 1)
    await wait_until(lambda: not channel._photos, within=5, what="the photo dropped")
    # A report takes it (saved to disk), and nothing stays in memory either.
    await ws.send_json({"id": mid(), "choice": "flow:report", "label": "Phản ánh"})
    await until(ws, "mô tả")
    await ws.send_json({"id": mid(), "photo": photo, "caption": "Rác thải đổ trộm đầu hẻm"})
    await until(ws, "Đã nhận 1 ảnh")
    assert not channel._photos
    await ws.close()
    # Photos parsed but never handled (a turn that never ran) are bounded in number.
    for _ in range(PHOTOS_HELD + 5):
        channel.parse("c" * 22, {"id": mid(), "photo": photo}, "vi")
    assert len(channel._photos) <= PHOTOS_HELD


NUL_TEXT = "Rác thải\x00 đổ trộm\x07 đầu hẻm\nbốc mùi"


async def _description(client: TestClient[Any, Any], channel: str, chat: str) -> str:
    from sqlalchemy import select

    from bots.store.models import Chat

    async with client.app[BOTS].store.sessions() as s:
        row = (
            await s.scalars(select(Chat).where(Chat.channel == channel, Chat.chat_id == chat))
        ).one()
        return str((row.data or {}).get("description", ""))


async def test_defect_14_control_characters_in_a_telegram_update(
    hub: tuple[TestClient[Any, Any], TelegramCloud],
) -> None:
    client, cloud = hub
    chat = 7714

    async def say(update: Any, count: int) -> list[str]:
        before = len(cloud.texts(chat))
        r = await client.post(
            "/bots/telegram/webhook",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        assert r.status == 200, await r.text()
        return (await cloud.wait_texts(chat, before + count))[before:]

    await say(U.text(chat, "/start"), 2)
    await say(U.button(chat, "flow:report"), 1)
    got = await say(U.text(chat, NUL_TEXT), 1)
    assert "ảnh" in got[0] or "vị trí" in got[0], got
    assert await _description(client, "telegram", str(chat)) == (
        "Rác thải đổ trộm đầu hẻm\nbốc mùi"
    )


async def test_defect_14_control_characters_in_a_zalo_event(
    zalo_hub: tuple[TestClient[Any, Any], ZaloCloud],
) -> None:
    client, cloud = zalo_hub
    user = "8800114422"

    async def say(event: tuple[bytes, dict[str, str]], count: int) -> list[str]:
        before = len(cloud.texts(user))
        raw, headers = event
        r = await client.post("/bots/zalo/webhook", data=raw, headers=headers)
        assert r.status == 200, await r.text()
        return (await cloud.wait_texts(user, before + count))[before:]

    await say(cloud.text(user, "/start"), 2)
    await say(cloud.text(user, "1"), 1)  # the menu's first choice: a report
    got = await say(cloud.text(user, NUL_TEXT), 1)
    assert "ảnh" in got[0] or "vị trí" in got[0], got
    assert await _description(client, "zalo", user) == "Rác thải đổ trộm đầu hẻm\nbốc mùi"


async def test_defect_14_control_characters_in_a_web_chat_message(
    hub: tuple[TestClient[Any, Any], TelegramCloud],
) -> None:
    client, _cloud = hub
    ws = await client.ws_connect("/bots/web/ws?lang=vi")
    chat = (await ws.receive_json(timeout=10))["chat"]
    await ws.send_json({"id": mid(), "choice": "flow:report", "label": "Phản\x00 ánh"})
    await replies(ws, 1)
    await ws.send_json({"id": mid(), "text": NUL_TEXT})
    got = (await replies(ws, 1))[0]["text"]
    assert "ảnh" in got or "vị trí" in got, got
    assert await _description(client, "web", chat) == "Rác thải đổ trộm đầu hẻm\nbốc mùi"
    # A 10,000-deep message is answered as unreadable (it was Python's recursion limit).
    await ws.send_str('{"text": ' + "[" * 10_000 + "]" * 10_000 + "}")
    assert "error" in await ws.receive_json(timeout=10)
    await ws.close()


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_defect_14_a_refused_write_still_answers_the_citizen(
    hub: tuple[TestClient[Any, Any], TelegramCloud],
) -> None:
    """A channel that hands over words PostgreSQL will not store (NUL, left uncleaned): the
    citizen is asked to retype, and the conversation stays at its step."""
    client, _cloud = hub
    bots = client.app[BOTS]
    channel = bots.channels["web"]
    chat = "refused-write-chat-01"

    def msg(**kw: Any) -> Inbound:
        return Inbound(channel="web", chat_id=chat, message_id=mid()[:32], **kw)

    await bots.service.handle(msg(kind="choice", choice="flow:report"), channel)
    replies_ = await bots.service.handle(msg(kind="text", text="Rác\x00 thải"), channel)
    assert [r.text for r in replies_] == [bots.service.engine.texts.t("input.unreadable", "vi")]
    turn = await bots.store.begin(msg(kind="text", text="?"))
    assert (turn.conversation.flow, turn.conversation.data.get("description")) == ("report", None)
    # Retyped, it goes on.
    replies_ = await bots.service.handle(msg(kind="text", text="Rác thải đầu hẻm"), channel)
    assert "ảnh" in replies_[0].text or "vị trí" in replies_[0].text
    queued = [o.payload["text"] for o in await bots.store.outgoing("web", chat)]
    assert bots.service.engine.texts.t("input.unreadable", "vi") in queued
