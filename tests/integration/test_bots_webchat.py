"""The web chat widget: its page, and a whole report over its WebSocket against the real core
and database (menu-driven here, IOC_RASA=off: the same engine, no NLU)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bots.keys import BOTS
from bots.messages import Reply
from ioc_core.access.roles import Principal, Role
from ioc_core.api import InProcessCoreApi
from ioc_core.runtime import Core
from ioc_core.web.app import make_app
from tests.helpers import image_bytes

LAT, LON = 11.5349, 106.8832


@pytest.fixture
async def hub(core: Core, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient[Any, Any]]:
    monkeypatch.setenv("IOC_RASA", "off")
    async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:
        yield client


async def replies(ws: Any, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        msg = await ws.receive_json(timeout=10)
        if "reply" in msg:
            out.append(msg["reply"])
    return out


async def test_the_page_speaks_vietnamese_first(hub: TestClient[Any, Any]) -> None:
    r = await hub.get("/chat")
    page = await r.text()
    assert r.status == 200 and 'lang="vi"' in page and "Trò chuyện với Trung tâm IOC" in page
    assert "113" in page and "/bots/web/ws" in page
    page = await (await hub.get("/chat", headers={"Accept-Language": "en-US,en"})).text()
    assert 'lang="en"' in page and "Chat with the IOC" in page


async def test_a_report_over_the_web_chat(hub: TestClient[Any, Any], core: Core) -> None:
    ws = await hub.ws_connect("/bots/web/ws?lang=vi")
    chat = (await ws.receive_json(timeout=10))["chat"]
    await ws.send_json({"text": "/start"})
    greet, menu = await replies(ws, 2)
    assert "Xin chào" in greet["text"]
    assert ["Phản ánh sự việc", "flow:report"] in menu["buttons"]

    await ws.send_json({"choice": "flow:report", "label": "Phản ánh sự việc"})
    assert "mô tả" in (await replies(ws, 1))[0]["text"]
    photo = base64.b64encode(image_bytes()).decode()
    await ws.send_json({"photo": photo, "caption": "Rác thải đổ trộm đầu hẻm, bốc mùi"})
    got = await replies(ws, 2)
    assert "Đã nhận 1 ảnh" in got[0]["text"] and got[1]["ask_location"]
    await ws.send_json({"lat": LAT, "lon": LON})
    category = (await replies(ws, 1))[0]
    assert "lĩnh vực" in category["text"]
    # The words suggested the category: offered first.
    assert category["buttons"][0][1] == "cat:moi_truong.rac_thai"
    await ws.send_json({"choice": "cat:moi_truong.rac_thai", "label": "Rác"})
    confirm = (await replies(ws, 1))[0]
    assert "Ảnh: 1" in confirm["text"]
    await ws.send_json({"choice": "yes", "label": "Gửi"})
    sent = (await replies(ws, 1))[0]["text"]
    code = sent.split("mã tra cứu: ")[1].split(".")[0]
    staff = InProcessCoreApi(core=core, principal=Principal(role=Role.SUPERVISOR, name="sv"))
    inc = await staff.get_incident(code)
    assert inc["channel"] == "web" and len(inc["attachments"]) == 1
    assert inc["category"] == "moi_truong.rac_thai"

    # Bad messages are answered, and the chat goes on.
    await ws.send_json({"nonsense": 1})
    assert "không hợp lệ" in (await ws.receive_json(timeout=10))["error"]
    await ws.send_json({"photo": "%%%"})
    assert "base64" in (await ws.receive_json(timeout=10))["error"]
    await ws.send_json({"lat": 500, "lon": 1})
    assert "range" in (await ws.receive_json(timeout=10))["error"]
    await ws.close()

    # What is queued while the citizen is away reaches them when they come back.
    await hub.app[BOTS].store.queue("web", chat, [Reply("Tin nhắn chờ")], kind="notice")
    ws = await hub.ws_connect(f"/bots/web/ws?lang=vi&chat={chat}")
    assert (await replies(ws, 1))[0]["text"] == "Tin nhắn chờ"
    await ws.close()
