"""The front door and the screens' shell, as anyone who opens the hub sees them."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.browser.conftest import HubProcess, new_page, screenshot


async def test_the_front_door_links_every_screen_in_vietnamese_first(
    hub: HubProcess, browser: Any
) -> None:
    page = await new_page(browser, hub)
    await page.goto("/")
    console = page.get_by_test_id("link-console")
    assert await console.inner_text() == "Bàn tiếp nhận cuộc gọi (tổng đài viên)"
    for key, href in (("console", "/console/"), ("board", "/board/"), ("chat", "/chat")):
        assert await page.get_by_test_id(f"link-{key}").get_attribute("href") == href
    await screenshot(page, "front-door", readme=True)
    await page.get_by_test_id("lang-switch").click()
    assert await page.get_by_test_id("link-console").inner_text() == "Call-taker console"
    await page.reload()  # the choice is kept
    assert await page.get_by_test_id("link-console").inner_text() == "Call-taker console"


async def test_screens_are_served_with_a_strict_policy_and_never_framed(hub: HubProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/login"):
            async with http.get(hub.url + path) as r:
                assert r.status == 200, path
                assert r.headers["X-Frame-Options"] == "DENY"
                csp = r.headers["Content-Security-Policy"]
                assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        async with http.get(hub.url + "/static/../../../etc/passwd") as r:
            assert r.status == 404
        async with http.get(hub.url + "/static/login.js") as r:
            assert r.status == 200 and "javascript" in r.headers["Content-Type"]
