"""What a phone call's draft makes public: a call-taker who completes, submits and verifies the
draft as the switchboard opened it must not publish the caller's number, history or words
(REST, Open311, the public view of the in-process API); staff with the right role still read
them as internal notes. Runs on both databases, without Asterisk: the draft is opened by the
switchboard's own code from a call recorded the way the AMI observer records it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from ioc_core.access.roles import SYSTEM
from ioc_core.api import InProcessCoreApi
from ioc_core.runtime import Core
from telephony.asterisk.config import AsteriskSettings
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.role import build_switchboard
from telephony.settings import SwitchboardSettings
from telephony.switchboard.draft import Description
from tests.helpers import auth, make_token, report

ANI = "0912777888"
SAID = "nhà ông Bảy ở hẻm 5 đang cháy"


async def test_defect_01_a_verified_phone_draft_publishes_no_caller_data(
    core: Core, client: TestClient[Any, Any], tmp_path: Path
) -> None:
    settings = SwitchboardSettings.from_env({})
    store = CallStore(sessions=core.sessions, settings=settings, on_commit=core.relay.notify)
    api = InProcessCoreApi(core=core, principal=SYSTEM)
    sb = build_switchboard(
        store=store,
        settings=settings,
        asterisk=AsteriskSettings.from_env(tmp_path / "asterisk", {}),
        api=api,
    )
    # The caller reported something else before; it is still open.
    earlier = await api.report_incident(report(reporter={"phone": ANI}, channel="phone"))
    uid = "1700000100.1"
    await store.record(uid, Fact.ARRIVED, ani=ANI, service="1022", caller_calls=3)
    await store.record(uid, Fact.IVR_STARTED)
    await store.record(uid, Fact.IVR_DONE, language="vi", ivr_choices=[["service", "1"]])
    await store.record(uid, Fact.QUEUED, queue="hotline-1022", position=1)
    await store.record(uid, Fact.AGENT_RINGING, agent="1001")
    await store.record(uid, Fact.ANSWERED, agent="1001")
    call = await store.get_call(uid)
    assert call is not None

    async def said() -> Description:
        return Description(text=SAID, emergency="114", category=None)

    sb._descriptions[uid] = asyncio.ensure_future(said())  # the caller's words, transcribed
    await sb.drafts.make(uid, key=str(uuid.uuid4()))  # as its `call.answered` consumer does
    code = (await store.get_call(uid) or {})["incident_code"]
    assert code

    # The call-taker completes the place only, then submits and verifies it as it came.
    staff = auth(await make_token(core, "calltaker", name="Lê Thị Cúc"))
    place = {"location": report()["location"]}
    assert (await client.patch(f"/api/v1/incidents/{code}", json=place, headers=staff)).ok
    for action in ("submit", "verify"):
        done = await client.post(
            f"/api/v1/incidents/{code}/transitions", json={"action": action}, headers=staff
        )
        assert done.status == 200, await done.text()

    secrets = (ANI, "912777888", earlier["code"], "Bảy", "hẻm 5")
    public = [
        await client.get(f"/api/v1/incidents/{code}"),
        await client.get("/api/v1/incidents?limit=50"),
        await client.get(f"/open311/v2/requests/{code}.json"),
        await client.get("/open311/v2/requests.json"),
    ]
    for answer in public:
        assert answer.status == 200, (answer.url, await answer.text())
        data = await answer.json()
        rows = data if isinstance(data, list) else data.get("items", [data])
        ours = [r for r in rows if code in (r.get("code"), r.get("service_request_id"))]
        assert len(ours) == 1, (answer.url, data)  # the verified draft is public now
        body = json.dumps(ours, ensure_ascii=False)
        for secret in secrets:
            assert secret not in body, (answer.url, secret)
    shown = await api.public().get_incident(code)
    assert shown["title"] == "Khác"  # the category's name, not a person
    assert all(s not in json.dumps(shown, ensure_ascii=False) for s in secrets)

    # Staff who may see reporters and internal notes still have all of it.
    seen = await (await client.get(f"/api/v1/incidents/{code}", headers=staff)).json()
    notes = "\n".join(n["body"] for n in seen["notes"])
    assert ANI in notes and earlier["code"] in notes and SAID in notes
    assert "3" in notes  # the earlier calls
    assert seen["reporters"][0]["phone"] == ANI
    agency = auth(await make_token(core, "agency", agency="CA-TINH"))
    as_agency = await client.get(f"/api/v1/incidents/{code}", headers=agency)
    if as_agency.status == 200:  # in its scope or not, an agency never sees internal notes
        assert SAID not in await as_agency.text()


async def test_defect_01_only_staff_write_an_internal_note_with_a_report(
    core: Core, client: TestClient[Any, Any]
) -> None:
    citizen = auth(await make_token(core, "citizen", subject="zalo:9"))
    body = report(internal_note="ghi chú nội bộ")
    refused = await client.post("/api/v1/incidents", json=body, headers=citizen)
    assert refused.status == 403, await refused.text()
    staff = auth(await make_token(core, "calltaker"))
    made = await (await client.post("/api/v1/incidents", json=body, headers=staff)).json()
    assert [n["body"] for n in made["notes"]] == ["ghi chú nội bộ"]
    shown = await (await client.get(f"/api/v1/incidents/{made['code']}")).json()
    assert "notes" not in shown and "ghi chú" not in json.dumps(shown, ensure_ascii=False)
