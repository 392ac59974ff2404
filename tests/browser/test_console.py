"""The call-taker console end to end (issue 13): the real hub with its switchboard (`ioc run`,
Asterisk), Debian's Chromium with a fake microphone as the browser agent 2001, a SIPp caller on
114 sending audio. The agent signs in and goes ready, the console rings with the caller's
number, the agent answers in the browser and RTP flows both ways on both legs (Asterisk's own
channel statistics), the call's prefilled draft is completed and submitted, the incident is in
the store linked to the call; then a web-chat hand-off is answered from the same console.

Run with the Asterisk lock: `flock /tmp/ioc-asterisk.lock pytest tests/browser/test_console.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.browser.conftest import (
    PASSWORD,
    HubProcess,
    new_page,
    running_hub,
    screenshot,
    sign_in,
)
from tests.helpers import wait_until
from tests.sip.sipp import Caller

ANI = "0912345678"


def rtp_counts(stats: str) -> dict[str, tuple[int, int]]:
    """`pjsip show channelstats` -> {channel: (packets received, packets sent)}.

    Columns: bridge, channel, uptime, codec, then receive count/lost/pct/jitter, then transmit
    count/lost/pct/jitter, RTT (Asterisk 22's layout)."""
    out: dict[str, tuple[int, int]] = {}
    for line in stats.splitlines():
        fields = line.split()
        for i, f in enumerate(fields):
            if re.fullmatch(r"[A-Za-z0-9_.]+-[0-9a-f]{8}", f) and len(fields) > i + 7:
                with contextlib.suppress(ValueError):
                    out[f] = (int(fields[i + 3]), int(fields[i + 7]))
                break
    return out


def _tone(folder: Path) -> Path:
    """Two seconds of a 400 Hz-ish square wave as raw mu-law (what SIPp's rtp_stream sends)."""
    path = folder / "tone.ulaw"
    path.write_bytes(bytes(0x8F if (i // 10) % 2 else 0x0F for i in range(16_000)))
    return path


async def test_a_call_taker_answers_in_the_browser_and_submits_the_calls_incident(
    front_built: Path, browser: Any, tmp_path: Path
) -> None:
    async with running_hub(tmp_path, switchboard=True) as hub:
        await asyncio.to_thread(hub.add_user, "lan", "calltaker", extension="2001")
        page = await new_page(browser, hub)
        await sign_in(page, "lan")
        await page.wait_for_url("**/console/")
        # The phone registers by itself; the Ready click signs in to the queues.
        await page.locator("[data-testid=sip-health][data-health=registered]").wait_for()
        assert await page.get_by_test_id("agent-state").get_attribute("data-state") == "logged_out"
        await page.get_by_test_id("agent-ready").click()
        await page.locator("[data-testid=agent-state][data-state=available]").wait_for()
        assert await page.get_by_test_id("agent-state").inner_text() == "Sẵn sàng"

        # Audio from the answer on, for the whole call (rtp_stream loops): both legs carry RTP.
        caller = Caller(
            service="114", ani=ANI, hold_ms=60_000, folder=tmp_path, stream=_tone(tmp_path)
        )
        await caller.start()
        try:
            await _answer_and_submit(page, hub)
            await page.get_by_test_id("hang-up").click()
            assert await caller.done(30) == 0, "the caller saw a clean call and a BYE"
        finally:
            caller.stop()
        await _answer_a_chat(page, hub)

        # Asterisk goes away: the console says so and registers again by itself when it is back.
        await asyncio.to_thread(hub.ioc, "asterisk", "stop", timeout=60)
        await page.get_by_test_id("sip-banner").wait_for(timeout=15_000)
        assert await page.get_by_test_id("sip-health").get_attribute("data-health") != "registered"
        await asyncio.to_thread(hub.ioc, "asterisk", "start", timeout=120)
        registered = page.locator("[data-testid=sip-health][data-health=registered]")
        await registered.wait_for(timeout=30_000)
        await page.get_by_test_id("sip-banner").wait_for(state="detached")


async def _answer_and_submit(page: Any, hub: HubProcess) -> None:
    ringing = page.get_by_test_id("incoming-call")
    await ringing.wait_for(timeout=20_000)
    assert await page.get_by_test_id("caller-number").inner_text() == ANI
    assert await ringing.get_by_test_id("call-service").get_attribute("data-service") == "114"
    call_id = await ringing.get_attribute("data-call")
    assert call_id, "the ringing leg carries X-IOC-Call"
    await screenshot(page, "console-ringing", readme=True)

    await page.keyboard.press("F3")  # answer from the keyboard
    await page.locator("[data-testid=current-call][data-status=talking]").wait_for()

    async def both_ways() -> dict[str, tuple[int, int]] | None:
        stats = await asyncio.to_thread(hub.ioc, "asterisk", "cli", "pjsip show channelstats")
        counts = rtp_counts(stats)
        agent = {k: v for k, v in counts.items() if k.startswith("2001-")}
        others = {k: v for k, v in counts.items() if not k.startswith("2001-")}
        flowing = all(rx > 0 and tx > 0 for rx, tx in counts.values())
        return counts if agent and others and flowing else None

    counts = await wait_until(both_ways, 15, "RTP both ways on the agent's and the caller's legs")
    print("RTP (received, sent) per channel:", counts)

    # The draft the switchboard opened for the answered call, prefilled from it.
    form = page.get_by_test_id("incident-form")
    await form.wait_for(timeout=15_000)
    code = await form.get_attribute("data-code")
    assert code
    assert ANI in await page.get_by_test_id("incident-reporter").inner_text()
    category = page.get_by_test_id("incident-category")
    assert (await category.input_value()).startswith("chay_no"), "114 -> fire and rescue"
    options = await category.locator("option").evaluate_all("os => os.map(o => o.value)")
    specific = next((o for o in options if o.startswith("chay_no.")), None)
    if specific:
        await category.select_option(specific)
    await page.get_by_test_id("incident-address").fill("Phường")
    await page.locator("[data-testid=area-hits] button").first.click()
    await page.get_by_test_id("incident-map").click(position={"x": 120, "y": 90})
    await page.get_by_test_id("incident-description").fill(
        "Cháy nhà dân trong hẻm, khói nhiều, chưa có người bị thương"
    )
    # Ctrl+Enter submits from the text field; a second press while it runs changes nothing.
    await page.get_by_test_id("incident-description").press("Control+Enter")
    await page.get_by_test_id("incident-description").press("Control+Enter")
    done = page.get_by_test_id("incident-code")
    await done.wait_for(timeout=15_000)
    assert await done.inner_text() == code
    await screenshot(page, "console-incident", readme=True)

    # In the store: verified, with the call linked both ways, and only one incident.
    inc = await (await page.request.get(f"/api/v1/incidents/{code}")).json()
    assert inc["state"] == "verified", inc["state"]
    assert inc["external_ref"] == f"call:{call_id}"
    assert inc["description"].startswith("Cháy nhà dân")
    assert inc["location"]["lat"] is not None and inc["location"]["area_code"]
    call = await (await page.request.get(f"/api/v1/calls/{call_id}")).json()
    assert call["incident_code"] == code and call["agent"] == "2001"
    by_number = await (await page.request.get(f"/api/v1/calls?ani={ANI}")).json()
    assert [c["id"] for c in by_number["items"]] == [call_id], "the screen pop's earlier calls"
    mine = await (await page.request.get(f"/api/v1/incidents?reporter_phone={ANI}")).json()
    assert [i["code"] for i in mine["items"]] == [code]


async def _answer_a_chat(page: Any, hub: HubProcess) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{hub.url.replace('http', 'ws')}/bots/web/ws?lang=vi") as ws,
    ):
        await ws.receive_json(timeout=10)  # {"chat": id}
        await ws.send_json({"text": "tổng đài viên"})
        await ws.send_json({"text": "Tôi cần hỏi về giấy phép xây dựng"})
        item = page.locator("[data-testid^=work-chat-]").first
        await item.wait_for(timeout=15_000)
        await item.locator("[data-queue-item]").click()
        panel = page.get_by_test_id("chat-panel")
        await panel.get_by_text("giấy phép xây dựng").wait_for()
        await page.get_by_test_id("chat-claim").click()
        await page.get_by_test_id("chat-text").fill("Chào anh, tôi là Lan, tôi nghe đây")
        await page.get_by_test_id("chat-send").click()

        seen: list[str] = []

        async def citizen_got_it() -> bool:
            try:
                msg = await ws.receive(timeout=0.5)
            except TimeoutError:
                return False
            if msg.type == aiohttp.WSMsgType.TEXT:
                seen.append(msg.data)
                # {"reply": {"text": "Lan: ..."}, "n": ...}: the payload as the page renders it
                return "tôi nghe đây" in json.dumps(json.loads(msg.data), ensure_ascii=False)
            return False

        await wait_until(citizen_got_it, 15, f"the agent's words at the citizen (saw {seen})")
        await page.get_by_test_id("chat-close").click()
        await page.get_by_test_id("chat-panel").wait_for(state="detached")


async def test_typed_text_survives_an_expired_session_and_a_double_submit_makes_one_incident(
    hub: HubProcess, browser: Any
) -> None:
    """A report without a call: what was typed is still there after the session expired and
    the call-taker signed in again; a double click submits one incident."""
    await asyncio.to_thread(hub.add_user, "minh", "calltaker", extension="2002")
    page = await new_page(browser, hub)
    await sign_in(page, "minh", at="/login?next=%2Fconsole%2F")
    await page.wait_for_url("**/console/")
    await page.get_by_test_id("new-incident").click()
    text = "Đèn đường hỏng cả dãy, tối om từ tối qua"
    await page.get_by_test_id("incident-description").fill(text)
    category = page.get_by_test_id("incident-category")
    options = await category.locator("option").evaluate_all("os => os.map(o => o.value)")
    await category.select_option(next(o for o in options if o))

    await page.context.clear_cookies()  # the session is gone (expired, revoked)
    await page.reload()
    await page.wait_for_url("**/login?next=*")
    await page.get_by_test_id("login-username").fill("minh")
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await page.wait_for_url("**/console/")
    await page.get_by_test_id("new-incident").click()
    assert await page.get_by_test_id("incident-description").input_value() == text

    await page.get_by_test_id("incident-address").fill("Phường")
    await page.locator("[data-testid=area-hits] button").first.click()
    await page.get_by_test_id("submit-incident").dblclick()
    code = await page.get_by_test_id("incident-code").inner_text()
    listed = await (await page.request.get("/api/v1/incidents?limit=50")).json()
    assert [i["code"] for i in listed["items"]] == [code]
    inc = await (await page.request.get(f"/api/v1/incidents/{code}")).json()
    assert inc["state"] == "verified" and inc["description"] == text
