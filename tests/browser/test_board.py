"""The supervisor board (/board/) as a supervisor sees it: a real hub with its switchboard, a
SIPp caller on 114, an agent logged in and paused through the API and the board itself.

Latencies are measured between the hub's own calls API (when it first says the call is
queued, or ended) and the moment the figure changed in the page (Playwright's wait on the
DOM), both on this machine's clock."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import HubProcess, new_page, running_hub, screenshot, sign_in
from tests.helpers import wait_until
from tests.sip.agent_phone import AgentPhone
from tests.sip.sipp import Caller

ANI = "0912345678"
WITHIN_S = 1.0  # the issue: the board's figures follow the switchboard within 1 s
WAITING = "queue-emergency-114-waiting"


async def _csrf(page: Any) -> str:
    session = await page.evaluate("fetch('/auth/session').then((r) => r.json())")
    return str(session["csrf"])


async def _calls(page: Any, status: str) -> list[dict[str, Any]]:
    resp = await page.request.get(f"/api/v1/calls?status={status}&service=114")
    assert resp.ok, await resp.text()
    return [c for c in (await resp.json())["items"] if c["ani"] == ANI]


async def _report_fire(page: Any, lat: float = 11.54, lon: float = 106.89) -> dict[str, Any]:
    resp = await page.request.post(
        "/api/v1/incidents",
        headers={"X-CSRF-Token": await _csrf(page)},
        data={
            "category": "chay_no",
            "description": "Cháy kho hàng, khói nhiều",
            "channel": "phone",
            "location": {"lat": lat, "lon": lon, "address": "Đồng Xoài"},
        },
    )
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def _follows(page: Any, text: str, status: str) -> float:
    """Seconds from the calls API saying `status` to the waiting figure showing `text`
    (negative: the page was first)."""
    selector = f"[data-testid={WAITING}]"
    shown = asyncio.ensure_future(
        page.wait_for_function(
            "([sel, text]) => document.querySelector(sel)?.textContent === text",
            arg=[selector, text],
            polling="raf",
            timeout=60_000,
        )
    )
    await wait_until(lambda: _calls(page, status), 40, f"the hub to say the call is {status}")
    said = time.monotonic()
    await shown
    return time.monotonic() - said


@pytest.mark.asterisk
async def test_the_board_follows_a_114_caller_and_an_agent_live(
    front_built: Path, browser: Any, tmp_path: Path
) -> None:
    async with running_hub(tmp_path, switchboard=True) as hub:
        await asyncio.to_thread(hub.add_user, "gs", "supervisor", extension="1002")
        page = await new_page(browser, hub)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, "gs", at="/login?next=/board/")
        await page.wait_for_url("**/board/")
        await expect(page.get_by_test_id(WAITING)).to_have_text("0")
        await expect(page.get_by_test_id("queue-emergency-114-abandoned")).to_have_text(
            re.compile(r"^\d+$")
        )
        for queue in ("emergency-113", "emergency-115", "hotline-1022"):
            await expect(page.get_by_test_id(f"queue-{queue}-waiting")).to_have_text("0")

        # An agent's desk phone registers and the agent is logged in through the API, then
        # paused from the board with a reason: the grid shows each state with its word.
        # The supervisor's own desk phone (1002) rings for listen / whisper / barge.
        secrets = json.loads((hub.data_dir / "asterisk" / "secrets.json").read_text())
        phones = [
            AgentPhone(extension=ext, password=secrets[f"agent_{ext}"], rtp_range=rtp)
            for ext, rtp in (("1001", (40000, 40499)), ("1002", (40500, 40999)))
        ]
        for phone in phones:
            await phone.astart()
        try:
            await _board_with_agent(page, phones[0], phones[1], tmp_path)
        finally:
            for phone in phones:
                await phone.astop()
        assert errors == [], errors


async def _board_with_agent(
    page: Any, phone: AgentPhone, supervisor: AgentPhone, tmp: Path
) -> None:
    abandoned = page.get_by_test_id("queue-emergency-114-abandoned")
    abandoned_before = int(await abandoned.inner_text())
    resp = await page.request.post(
        "/api/v1/agents/1001/login", headers={"X-CSRF-Token": await _csrf(page)}, data={}
    )
    assert resp.ok, await resp.text()
    state = page.get_by_test_id("agent-1001-state")
    await expect(state).to_have_attribute("data-state", "available")
    await expect(state).to_have_text("Sẵn sàng")
    await page.get_by_test_id("agent-1001-pause").focus()
    await page.keyboard.press("Enter")  # keyboard: the reason picker takes the focus
    await expect(page.get_by_test_id("agent-1001-pause-reason")).to_be_focused()
    await page.get_by_test_id("agent-1001-pause-reason").select_option("meeting")
    await page.get_by_test_id("agent-1001-pause-confirm").click()
    await expect(state).to_have_attribute("data-state", "paused")
    await expect(state).to_have_text("Tạm dừng")
    await expect(page.get_by_test_id("agent-1001-reason")).to_have_text("Họp")
    # No call: nothing to listen to yet.
    await expect(page.get_by_test_id("agent-1001-listen")).to_be_disabled()

    await _report_fire(page)  # today's map shows it (and the README's picture)

    # A caller dials 114 and waits (nobody is ready), then hangs up.
    caller = await Caller(service="114", ani=ANI, hold_ms=10_000, folder=tmp).start()
    try:
        rise = await _follows(page, "1", "queued")
        assert rise <= WITHIN_S, f"the waiting figure rose {rise:.2f} s after the hub knew"
        longest = page.get_by_test_id("queue-emergency-114-longest-wait")
        first = int(await longest.get_attribute("data-seconds") or 0)
        await expect(longest).to_have_attribute("data-seconds", str(first + 2), timeout=4000)
        await expect(longest).to_have_text(re.compile(r"^0:0\d$"))
        await screenshot(page, "board", readme=True)

        fall = await _follows(page, "0", "ended")
        assert fall <= WITHIN_S, f"the waiting figure fell {fall:.2f} s after the hub knew"
        assert await caller.done() == 0
    finally:
        caller.stop()
    await expect(abandoned).to_have_text(str(abandoned_before + 1))

    # The abandoned 114 call is owed a call-back: listed, and an alarm until claimed.
    resp = await page.request.get("/api/v1/callbacks?status=pending")
    item = next(c for c in (await resp.json())["items"] if c["ani"] == ANI)
    row = page.get_by_test_id(f"callback-{item['id']}")
    await expect(row).to_have_attribute("data-status", "pending")
    await expect(page.get_by_test_id(f"callback-{item['id']}-number")).to_have_text(ANI)
    alarm = page.get_by_test_id(f"alarm-callback-{item['id']}")
    await expect(alarm).to_have_attribute("data-active", "true")
    await page.get_by_test_id(f"callback-{item['id']}-claim").click()
    await expect(row).to_have_attribute("data-status", "claimed")
    # Claimed: the condition is over, the alarm stays listed until acknowledged.
    await expect(alarm).to_have_attribute("data-active", "false")
    await page.get_by_test_id(f"alarm-callback-{item['id']}-ack").click()
    await expect(alarm).to_have_count(0)
    await page.reload()  # acknowledged alarms are kept in this browser
    await expect(page.get_by_test_id(WAITING)).to_have_text("0")
    await expect(row).to_have_attribute("data-status", "claimed")
    await expect(page.get_by_test_id(f"alarm-callback-{item['id']}")).to_have_count(0)
    # Completed with a note: no longer owed, gone from the list.
    await page.get_by_test_id(f"callback-{item['id']}-complete").click()
    await page.get_by_test_id(f"callback-{item['id']}-note").fill("Đã gọi lại, người dân an toàn")
    await page.get_by_test_id(f"callback-{item['id']}-confirm").click()
    await expect(row).to_have_count(0)
    done = await page.request.get("/api/v1/callbacks?status=done")
    kept = next(c for c in (await done.json())["items"] if c["id"] == item["id"])
    assert kept["note"] == "Đã gọi lại, người dân an toàn" and kept["assigned_to"] == "gs"

    # Unpause from the board; the next 114 caller reaches the agent: busy, with the call.
    await page.get_by_test_id("agent-1001-unpause").click()
    await expect(state).to_have_attribute("data-state", "available")
    second = await Caller(service="114", ani="0912345679", hold_ms=9_000, folder=tmp).start()
    try:
        await phone.wait_for_call(state="answered", timeout_s=20)
        await expect(state).to_have_attribute("data-state", "busy", timeout=WITHIN_S * 1000)
        await expect(page.get_by_test_id("agent-1001-call")).to_contain_text("114")
        # Listen from the board: the supervisor's phone rings, answered it spies on 1001.
        await page.get_by_test_id("agent-1001-listen").click()
        spy = await supervisor.wait_for_call(state="answered", timeout_s=10)
        assert spy is not None
        await expect(page.get_by_test_id("agent-1001-error")).to_have_count(0)
        assert await second.done() == 0
    finally:
        second.stop()
    await expect(state).not_to_have_attribute("data-state", "busy")


async def test_a_calltaker_is_refused_the_board_and_a_visitor_is_sent_to_sign_in(
    hub: HubProcess, browser: Any
) -> None:
    visitor = await new_page(browser, hub)
    await visitor.goto("/board/")
    await visitor.wait_for_url(re.compile(r"/login\?next=%2Fboard%2F"))
    await expect(visitor.get_by_test_id("login-username")).to_be_visible()

    await asyncio.to_thread(hub.add_user, "ct", "calltaker", extension="2001")
    page = await new_page(browser, hub)
    await sign_in(page, "ct", at="/login?next=/board/")
    await page.wait_for_url("**/board/")
    await expect(page.get_by_test_id("forbidden")).to_have_text(
        "Tài khoản của bạn không được dùng màn hình này."
    )
    await expect(page.get_by_test_id(WAITING)).to_have_count(0)

    # A supervisor with no extension sees the board, and why there is no listen/whisper/barge.
    await asyncio.to_thread(hub.add_user, "gs2", "supervisor")
    boss = await new_page(browser, hub)
    await sign_in(boss, "gs2", at="/login?next=/board/")
    await boss.wait_for_url("**/board/")
    await expect(boss.get_by_test_id(WAITING)).to_have_text("0")
    await expect(boss.get_by_test_id("monitor-needs-extension")).to_be_visible()

    # An immediate incident reported today with no agency yet: on the map, in the list, and
    # an alarm until acknowledged.
    incident = await _report_fire(boss)
    assert (incident["track"], incident["agency"]) == ("immediate", None), incident
    code = incident["code"]
    await expect(boss.get_by_test_id(f"incident-{code}")).to_contain_text("chưa giao cơ quan")
    await expect(boss.get_by_test_id("incidents-map")).to_have_attribute("data-markers", "1")
    alarm = boss.get_by_test_id(f"alarm-incident-{code}")
    await expect(alarm).to_have_attribute("data-active", "true")
    await expect(alarm).to_contain_text(code)
    await boss.get_by_test_id(f"alarm-incident-{code}-ack").click()
    await expect(alarm).to_have_count(0)
    await expect(boss.get_by_test_id("alarms-none")).to_be_visible()


async def test_the_board_reloads_what_a_feed_event_names_and_everything_on_resync(
    hub: HubProcess, browser: Any
) -> None:
    """The board's side of the feed contract (design: hello / event / resync frames), with the
    feed played by the test through Playwright's WebSocket routing: an event reloads its
    resource at once (the safety-net poll is 15 s while the feed is live), a resync reloads
    everything, and the banner is shown only while the feed is down."""
    sockets: list[Any] = []
    page = await new_page(browser, hub)

    def opened(ws: Any) -> None:
        sockets.append(ws)
        ws.send(json.dumps({"type": "hello", "cursor": "1-0"}))

    await page.route_web_socket(re.compile(r"/api/v1/live"), opened)
    await asyncio.to_thread(hub.add_user, "gs", "supervisor")
    await sign_in(page, "gs", at="/login?next=/board/")
    await page.wait_for_url("**/board/")
    await expect(page.get_by_test_id("live-status")).to_have_attribute("data-status", "live")
    await expect(page.get_by_test_id("connection-banner")).to_have_count(0)
    await expect(page.get_by_test_id("incidents-count")).to_have_text("0")
    await page.wait_for_timeout(300)  # the first reloads (hello) are done

    incident = await _report_fire(page)
    event = {"name": "incident.created", "payload": {"code": incident["code"]}}
    sockets[-1].send(json.dumps({"type": "event", "cursor": "1-1", "event": event}))
    await expect(page.get_by_test_id(f"incident-{incident['code']}")).to_be_visible(timeout=1000)

    second = await _report_fire(page, 11.62, 106.97)  # elsewhere: not merged as a duplicate
    sockets[-1].send(json.dumps({"type": "resync", "cursor": "1-2"}))
    await expect(page.get_by_test_id(f"incident-{second['code']}")).to_be_visible(timeout=1000)

    await sockets[-1].close()  # the feed drops: banner, then the client reconnects by itself
    await expect(page.get_by_test_id("connection-banner")).to_be_visible()
    await wait_until(lambda: len(sockets) >= 2, 10, "the feed client to reconnect")
    await expect(page.get_by_test_id("connection-banner")).to_have_count(0)
