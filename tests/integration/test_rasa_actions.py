"""Rasa's custom actions served by the hub (POST /nlu/actions, bots/rasa/actions.py) against
the real core and database: first each action called as Rasa calls it, then whole
conversations held by the real Rasa server on its own REST channel, its dialogue calling the
hub, and the hub pushing an agent's words back through Rasa."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bots.keys import BOTS
from ioc_core.access.roles import Principal, Role
from ioc_core.api import InProcessCoreApi
from ioc_core.runtime import Core
from ioc_core.web.app import make_app
from tests.helpers import make_token, wait_until

TOKEN = "rasa-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PLACE = "phường Đồng Xoài"  # in the test catalogue's areas
_ids = itertools.count(1)


def staff_api(core: Core) -> InProcessCoreApi:
    return InProcessCoreApi(core=core, principal=Principal(role=Role.SUPERVISOR, name="sv"))


def call(
    action: str,
    text: str = "",
    *,
    sender: str = "r1",
    intent: str = "",
    slots: dict[str, Any] | None = None,
    entities: list[dict[str, Any]] | None = None,
    requested: str | None = None,
) -> dict[str, Any]:
    """A request as Rasa 3.6 sends it (the parts the hub reads, and some it does not)."""
    return {
        "next_action": action,
        "sender_id": sender,
        "version": "3.6.21",
        "domain": {"intents": []},
        "tracker": {
            "sender_id": sender,
            "slots": {**(slots or {}), "requested_slot": requested},
            "latest_message": {
                "text": text,
                "intent": {"name": intent, "confidence": 0.95} if intent else {},
                "entities": entities or [],
                "message_id": f"m{next(_ids)}",
                "metadata": {},
            },
            "events": [],
            "active_loop": {},
            "latest_input_channel": "rest",
        },
    }


@pytest.fixture
async def hub(core: Core, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient[Any, Any]]:
    # No Rasa listens there: the actions need none, and understanding is not asked for.
    monkeypatch.setenv("IOC_RASA_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("IOC_RASA_TOKEN", TOKEN)
    async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:
        yield client


async def act(hub: TestClient[Any, Any], body: dict[str, Any]) -> dict[str, Any]:
    r = await hub.post("/nlu/actions", json=body, headers=AUTH)
    assert r.status == 200, await r.text()
    answer: dict[str, Any] = await r.json()
    return answer


def texts(answer: dict[str, Any]) -> str:
    return "\n".join(r["text"] for r in answer["responses"])


def code_in(text: str) -> str:
    return next(w.strip(".,") for w in text.split() if w.startswith("PA-"))


async def test_refused_without_the_token_or_with_a_bad_body(hub: TestClient[Any, Any]) -> None:
    body = call("action_check_status", "PA-2026-000001")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = await hub.post("/nlu/actions", json=body, headers=headers)
        assert r.status == 401 and (await r.json())["error_id"] == "bad-rasa-token"
    r = await hub.post("/nlu/actions", data=b"{oops", headers=AUTH)
    assert r.status == 400 and "not JSON" in (await r.json())["error"]
    r = await hub.post("/nlu/actions", json={**body, "sender_id": ""}, headers=AUTH)
    assert r.status == 400 and await r.json() == {
        "error": "sender_id (the conversation) is missing",
        "action_name": "action_check_status",
    }
    r = await hub.post("/nlu/actions", json=call("action_fly"), headers=AUTH)
    assert r.status == 404 and (await r.json())["action_name"] == "action_fly"
    # Nothing was written for any of them.
    assert await hub.app[BOTS].store.reports_of("rasa", "r1") == []


async def test_off_without_rasa(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_RASA", "off")
    async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:
        r = await client.post("/nlu/actions", json=call("action_check_status"), headers=AUTH)
        assert r.status == 404 and (await r.json())["error_id"] == "rasa-off"


async def test_report_from_the_form_then_its_status(hub: TestClient[Any, Any], core: Core) -> None:
    slots = {"description": "Rác thải chất đống đầu hẻm cả tuần, bốc mùi", "location": "xyzzy"}
    answer = await act(hub, call("action_submit_report", "xyzzy", slots=slots))
    # An unknown place: said so, the slot emptied and the form asks again; nothing sent.
    assert "xyzzy" in texts(answer)
    assert answer["events"] == [
        {"event": "slot", "name": "location", "value": None},
        {"event": "followup", "name": "report_form"},
    ]
    assert await hub.app[BOTS].store.reports_of("rasa", "r1") == []

    answer = await act(hub, call("action_submit_report", PLACE, slots={**slots, "location": PLACE}))
    code = code_in(texts(answer))
    assert "mã tra cứu" in texts(answer)
    assert {e["name"] for e in answer["events"]} == {"description", "location", "category"}
    inc = await staff_api(core).get_incident(code)
    assert inc["channel"] == "rasa" and inc["category"] == "moi_truong.rac_thai"
    assert inc["location"]["area_code"] and inc["reporters"][0]["channel_user_id"] == "r1"

    answer = await act(
        hub, call("action_check_status", f"hồ sơ {code} tới đâu rồi", intent="check_status")
    )
    assert code in texts(answer) and "Trạng thái" in texts(answer)
    # Asked without a code: the flow's question, for the next message to answer.
    answer = await act(hub, call("action_check_status", "tra cứu hồ sơ", intent="check_status"))
    assert "mã" in texts(answer) and code not in texts(answer)


async def test_emergency_guidance_then_help_sent(hub: TestClient[Any, Any], core: Core) -> None:
    text = "nhà bên cạnh đang cháy lớn"
    answer = await act(hub, call("action_emergency", text, sender="r2", intent="emergency_fire"))
    assert "114" in texts(answer)
    assert {"event": "slot", "name": "emergency_number", "value": "114"} in answer["events"]
    assert {"event": "slot", "name": "description", "value": text} in answer["events"]
    slots = {"emergency_number": "114", "description": text, "location": PLACE}
    answer = await act(hub, call("action_submit_emergency", PLACE, sender="r2", slots=slots))
    assert "Đã báo khẩn cấp" in texts(answer)
    inc = await staff_api(core).get_incident(code_in(texts(answer)))
    assert inc["priority"] == "urgent" and inc["category"] == "chay_no"
    # "không": declined, told to call.
    answer = await act(
        hub,
        call("action_submit_emergency", "không", sender="r3", slots={**slots, "location": "không"}),
    )
    assert "gọi 114" in texts(answer)


async def test_warnings_for_an_area_from_the_form(hub: TestClient[Any, Any]) -> None:
    answer = await act(
        hub, call("action_subscribe_alerts", "xyzzy", sender="r5", slots={"location": "xyzzy"})
    )
    assert answer["events"][-1] == {"event": "followup", "name": "subscribe_form"}
    answer = await act(
        hub, call("action_subscribe_alerts", PLACE, sender="r5", slots={"location": PLACE})
    )
    assert "Đã đăng ký nhận cảnh báo" in texts(answer)
    assert answer["events"] == [{"event": "slot", "name": "location", "value": None}]
    (kept,) = await hub.app[BOTS].store.subscriptions("rasa", "r5")
    assert kept.area_code and "Đồng Xoài" in kept.area_name


async def test_a_failing_action_still_answers(
    hub: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = hub.app[BOTS].actions
    assert actions is not None

    async def broken(*args: Any) -> bool:
        raise RuntimeError("database gone")

    monkeypatch.setattr(actions.store, "relay_to_agent", broken)
    answer = await act(
        hub, call("validate_handoff_form", "alo", sender="r4", requested="handoff_message")
    )
    assert answer["events"] == [] and "113, 114 hoặc 115" in texts(answer)


# ---------------------------------------------------------------------- with the real Rasa


@pytest.fixture
async def rasa_hub(
    core: Core, rasa: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[Any, Any]]:
    """The hub where the session's Rasa calls its actions (rasa["hub_port"])."""
    monkeypatch.setenv("IOC_RASA_URL", rasa["url"])
    monkeypatch.setenv("IOC_RASA_TOKEN", rasa["token"])
    monkeypatch.setenv("IOC_BOT_CHAT_RATE", "50")
    server = TestServer(make_app(core), host="127.0.0.1", port=int(rasa["hub_port"]))
    async with TestClient(server) as client:
        yield client


async def say(rasa: dict[str, str], sender: str, text: str) -> str:
    """One message on Rasa's REST channel; what Rasa answered, joined."""
    async with aiohttp.ClientSession() as http:
        r = await http.post(
            f"{rasa['url']}/webhooks/rest/webhook", json={"sender": sender, "message": text}
        )
        assert r.status == 200, await r.text()
        return "\n".join(m.get("text", "") for m in await r.json())


async def bot_said(rasa: dict[str, str], sender: str) -> list[str]:
    async with aiohttp.ClientSession() as http:
        r = await http.get(
            f"{rasa['url']}/conversations/{sender}/tracker", params={"token": rasa["token"]}
        )
        events = (await r.json())["events"]
    return [e.get("text") or "" for e in events if e["event"] == "bot"]


@pytest.mark.rasa
async def test_a_report_through_rasas_own_dialogue(
    rasa_hub: TestClient[Any, Any], rasa: dict[str, str], core: Core
) -> None:
    sender = f"rest-{uuid.uuid4().hex[:12]}"
    assert "mô tả" in await say(rasa, sender, "tôi muốn phản ánh")
    assert "ở đâu" in await say(rasa, sender, "Có ổ gà rất sâu giữa đường, xe máy té liên tục")
    out = await say(rasa, sender, PLACE)
    code = code_in(out)
    inc = await staff_api(core).get_incident(code)
    assert inc["channel"] == "rasa" and inc["category"] == "ha_tang.duong_cau"
    out = await say(rasa, sender, f"cho hỏi hồ sơ {code} xử lý tới đâu rồi")
    assert code in out and "Trạng thái" in out


@pytest.mark.rasa
async def test_an_emergency_through_rasas_own_dialogue(
    rasa_hub: TestClient[Any, Any], rasa: dict[str, str], core: Core
) -> None:
    sender = f"fire-{uuid.uuid4().hex[:12]}"
    out = await say(rasa, sender, "nha ben canh dang chay lon lam")
    assert "114" in out and "địa chỉ" in out
    out = await say(rasa, sender, PLACE)
    assert "Đã báo khẩn cấp" in out
    inc = await staff_api(core).get_incident(code_in(out))
    assert inc["priority"] == "urgent" and inc["channel"] == "rasa"


@pytest.mark.rasa
async def test_rasas_own_dialogue_keeps_the_pre_check(
    rasa_hub: TestClient[Any, Any], rasa: dict[str, str], core: Core
) -> None:
    """The model reads these as a greeting and a rating; the pre-check in Rasa's pipeline
    (components/precheck.py) turns them into the emergency, and Rasa's dialogue follows."""
    for i, (text, number) in enumerate([("chào, có trộm vào nhà", "113"), ("113", "113")]):
        sender = f"pre{i}-{uuid.uuid4().hex[:12]}"
        out = await say(rasa, sender, text)
        assert f"GỌI NGAY {number}" in out and "địa chỉ" in out


@pytest.mark.rasa
async def test_a_handoff_through_rasa_and_the_agents_words_pushed_back(
    rasa_hub: TestClient[Any, Any], rasa: dict[str, str], core: Core
) -> None:
    sender = f"person-{uuid.uuid4().hex[:12]}"
    out = await say(rasa, sender, "cho tôi nói chuyện với tổng đài viên")
    assert "tổng đài viên" in out
    # While the item is open, what the citizen writes goes onto it, and Rasa says nothing.
    assert await say(rasa, sender, "tôi cần hỏi về hồ sơ đất đai") == ""
    token = await make_token(core, "calltaker", name="Lan")
    auth = {"Authorization": f"Bearer {token}"}
    items = (await (await rasa_hub.get("/api/v1/chats/handoffs", headers=auth)).json())["items"]
    item = next(i for i in items if i["chat_id"] == sender)
    assert item["channel"] == "rasa"
    assert [m["text"] for m in item["messages"] if m["from"] == "citizen"] == [
        "cho tôi nói chuyện với tổng đài viên",
        "tôi cần hỏi về hồ sơ đất đai",
    ]
    r = await rasa_hub.post(
        f"/api/v1/chats/handoffs/{item['id']}/message", headers=auth, json={"text": "Chào anh"}
    )
    assert r.status == 200
    # Pushed through Rasa: it is in the conversation Rasa keeps, said by the bot.
    await wait_until(
        lambda: _said(rasa, sender, "Lan: Chào anh"), within=15, what="the agent's words in Rasa"
    )
    store = rasa_hub.app[BOTS].store

    async def sent() -> bool:
        return [o.status for o in await store.outgoing("rasa", sender)] == ["sent"]

    await wait_until(sent, what="the push marked sent")
    # The pushed words are not taken for the citizen's.
    kept = await store.handoff(item["id"])
    assert kept is not None
    assert [m["from"] for m in kept.messages] == ["citizen", "citizen", "agent"]
    r = await rasa_hub.post(f"/api/v1/chats/handoffs/{item['id']}/close", headers=auth)
    assert (await r.json())["status"] == "closed"
    # The item closed: the next message is answered, and the form is over.
    assert "Xin chào" in await say(rasa, sender, "xin chào")
    assert "Xin chào" in await say(rasa, sender, "chào bạn")


async def _said(rasa: dict[str, str], sender: str, text: str) -> bool:
    return any(text in t for t in await bot_said(rasa, sender))
