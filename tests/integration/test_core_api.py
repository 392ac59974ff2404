"""Both CoreApi clients give the same answers as the REST API, role rules included."""

from __future__ import annotations

from typing import Any

import pytest

from ioc_core.access.roles import Principal, Role
from ioc_core.api import CoreApi, CoreApiError, HttpCoreApi, InProcessCoreApi
from ioc_core.runtime import Core
from tests.helpers import image_bytes, make_token, report


@pytest.fixture(params=["in-process", "http"])
async def apis(request: pytest.FixtureRequest, core: Core, client: Any) -> tuple[CoreApi, CoreApi]:
    """(a calltaker's client, a public client) of one kind."""
    if request.param == "in-process":
        return (
            InProcessCoreApi(core=core, principal=Principal(role=Role.CALLTAKER, name="an")),
            InProcessCoreApi(core=core, principal=Principal(role=Role.PUBLIC)),
        )
    base = str(client.make_url("/"))
    staff = HttpCoreApi(
        base_url=base, token=await make_token(core, "calltaker"), session=client.session
    )
    public = HttpCoreApi(base_url=base, token=None, session=client.session)
    return staff, public


async def test_same_commands_same_shapes(apis: tuple[CoreApi, CoreApi]) -> None:
    staff, public = apis
    body = report(reporter={"name": "Trần Thị Bình", "phone": "0987654321", "confidential": True})
    created = await staff.report_incident(body, photos=[("a.png", image_bytes())])
    assert created["state"] == "new" and len(created["attachments"]) == 1
    assert created["reporters"][0]["name"] == "Trần Thị Bình"
    seen = await public.get_incident(created["code"])
    assert seen["reporters"] == [] and "notes" not in seen
    moved = await staff.transition(created["id"], "verify")
    assert moved["state"] == "verified"
    reply = await staff.add_reply(created["id"], "Đã chuyển Sở Nông nghiệp và Môi trường")
    assert reply["kind"] == "reply"
    with pytest.raises(CoreApiError) as err:
        await staff.transition(created["id"], "close")
    assert err.value.status == 409 and err.value.error_id == "invalid-transition"
    with pytest.raises(CoreApiError) as err:
        await staff.report_incident(report(category="khong_co"))
    assert err.value.error_id == "unknown-category"


async def test_caller_incidents_for_the_switchboard(apis: tuple[CoreApi, CoreApi]) -> None:
    staff, public = apis
    assert await staff.caller_incidents("0911222333") == {"open": 0, "latest": None}
    first = await staff.report_incident(report(reporter={"phone": "0911222333"}))
    second = await staff.report_incident(
        report(reporter={"phone": "0911222333"}, location={"area_code": "75"}, category="khac")
    )
    await staff.report_incident(report(reporter={"phone": "0900000000"}))
    found = await staff.calltaker("agent 1001").caller_incidents("0911222333")
    assert found["open"] == 2 and found["latest"] in (first["code"], second["code"])
    with pytest.raises(CoreApiError) as err:
        await public.caller_incidents("0911222333")  # who reported what is not public
    assert err.value.status == 403 and err.value.error_id == "reporter-search-not-allowed"


async def test_the_reporter_rates_a_resolved_report(
    apis: tuple[CoreApi, CoreApi], core: Core
) -> None:
    """CH-4 through both clients: a channel adapter rates for the reporter it knows; only
    once there is a result, only that reporter, 1-5, rating again replaces."""
    staff, public = apis
    bot = InProcessCoreApi(core=core, principal=Principal(role=Role.SERVICE, name="bots"))
    created = await bot.report_incident(
        report(channel="telegram", reporter={"name": "An", "channel_user_id": "tg-42"})
    )
    code = created["code"]
    with pytest.raises(CoreApiError) as err:
        await bot.rate(code, 5, channel="telegram", channel_user_id="tg-42")
    assert (err.value.status, err.value.error_id) == (409, "not-resolved")
    for action, extra in [("verify", {}), ("assign", {"agency": "SXD"}), ("start", {})]:
        await staff.transition(code, action, **extra)
    await staff.transition(code, "resolve", note="Đã thu gom")
    with pytest.raises(CoreApiError) as err:
        await bot.rate(code, 5, channel="telegram", channel_user_id="tg-999")
    assert (err.value.status, err.value.error_id) == (403, "not-reporter")
    with pytest.raises(CoreApiError) as err:
        await bot.rate(code, 6, channel="telegram", channel_user_id="tg-42")
    assert err.value.status == 422
    with pytest.raises(CoreApiError) as err:
        await staff.rate(code, 4, channel="telegram", channel_user_id="tg-42")
    assert err.value.status == 403  # staff do not rate on a citizen's behalf
    await bot.rate(code, 2, channel="telegram", channel_user_id="tg-42", comment="chậm")
    rated = await bot.rate(code, 4, channel="telegram", channel_user_id="tg-42")
    assert rated["score"] == 4
    seen = await public.get_incident(code)
    assert seen["satisfaction"] == {"count": 1, "average": 4.0}
