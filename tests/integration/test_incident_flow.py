"""An incident's whole life through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from ioc_core import events as ev
from ioc_core.bus import Event, InProcessBus
from ioc_core.config import Settings
from ioc_core.incidents.queries import reporters_to_notify
from ioc_core.incidents.verify import verify_all
from ioc_core.runtime import Core, start_core
from ioc_core.web.app import make_app
from tests.helpers import auth, image_bytes, make_token, report, wait_until


async def test_report_verify_assign_resolve_close(client: Any, core: Core) -> None:
    staff = await make_token(core, "calltaker")
    sup = await make_token(core, "supervisor")
    agency = await make_token(core, "agency", agency="SNNMT")

    r = await client.post("/api/v1/incidents", json=report(), headers=auth(staff))
    assert r.status == 201, await r.text()
    inc = await r.json()
    assert inc["code"].startswith("PA-") and inc["state"] == "new" and inc["phase"] == "open"
    assert inc["track"] == "timed" and inc["due_at"] is not None
    assert inc["state_label"] == {"vi": "Mới tiếp nhận", "en": "Received"}

    # The agency cannot see it before assignment (data isolation).
    r = await client.get(f"/api/v1/incidents/{inc['id']}", headers=auth(agency))
    assert r.status == 404

    steps = [
        (staff, {"action": "verify"}, "verified"),
        (staff, {"action": "assign", "agency": "SNNMT"}, "assigned"),
        (agency, {"action": "start"}, "in_progress"),
        (agency, {"action": "resolve", "note": "Đã thu gom rác"}, "resolved"),
        (sup, {"action": "close"}, "closed"),
    ]
    for token, body, state in steps:
        r = await client.post(
            f"/api/v1/incidents/{inc['code']}/transitions", json=body, headers=auth(token)
        )
        assert r.status == 200, (body, await r.text())
        assert (await r.json())["state"] == state
    done = await (await client.get(f"/api/v1/incidents/{inc['id']}")).json()
    assert done["phase"] == "closed" and done["closed_at"] and done["resolved_at"]

    # Public timeline: state changes with the resolution note, no actors.
    tl = await (await client.get(f"/api/v1/incidents/{inc['id']}/timeline")).json()
    kinds = [(row["kind"], row["to_state"]) for row in tl["items"]]
    assert kinds[0] == ("created", "new") and kinds[-1] == ("transition", "closed")
    assert all("actor" not in row for row in tl["items"])
    assert any(row.get("note") == "Đã thu gom rác" for row in tl["items"])
    full = await (
        await client.get(f"/api/v1/incidents/{inc['id']}/timeline", headers=auth(sup))
    ).json()
    assert full["items"][1]["actor"].startswith("calltaker:")

    report_ = await verify_all(core.sessions)
    assert report_.ok and report_.rows == 6


async def test_guards_name_the_problem(client: Any, core: Core) -> None:
    staff = await make_token(core, "calltaker")
    inc = await (await client.post("/api/v1/incidents", json=report(), headers=auth(staff))).json()
    cases = [
        ({"action": "resolve", "note": "x"}, 409, "invalid-transition"),
        ({"action": "reject"}, 422, "note-required"),
        ({"action": "assign"}, 422, "agency-required"),
        ({"action": "assign", "agency": "NOPE"}, 422, "unknown-agency"),
        ({"action": "fly"}, 422, "unknown-action"),
        ({"action": "close"}, 409, "invalid-transition"),
    ]
    for body, status, error_id in cases:
        r = await client.post(
            f"/api/v1/incidents/{inc['id']}/transitions", json=body, headers=auth(staff)
        )
        assert r.status == status, body
        assert (await r.json())["error_id"] == error_id
    # A public caller may not act at all.
    r = await client.post(f"/api/v1/incidents/{inc['id']}/transitions", json={"action": "verify"})
    assert r.status == 403


async def test_replies_notes_attachments(client: Any, core: Core) -> None:
    staff = await make_token(core, "calltaker")
    citizen = await make_token(core, "citizen", subject="zalo:42")
    inc = await (
        await client.post("/api/v1/incidents", json=report(), headers=auth(citizen))
    ).json()
    r = await client.post(
        f"/api/v1/incidents/{inc['id']}/replies",
        json={"body": "Đã tiếp nhận, đang xác minh"},
        headers=auth(staff),
    )
    assert r.status == 201
    r = await client.post(
        f"/api/v1/incidents/{inc['id']}/notes",
        json={"body": "Người phản ánh quen biết chủ bãi"},
        headers=auth(staff),
    )
    assert r.status == 201
    form = FormData()
    form.add_field(
        "photo", image_bytes("JPEG"), filename="hien-truong.jpg", content_type="image/jpeg"
    )
    r = await client.post(
        f"/api/v1/incidents/{inc['id']}/attachments", data=form, headers=auth(citizen)
    )
    assert r.status == 201, await r.text()
    body = await r.json()
    assert [a["content_type"] for a in body["attachments"]] == ["image/jpeg"]
    photo = await client.get(body["attachments"][0]["url"])
    assert photo.status == 200 and (await photo.read())[:2] == b"\xff\xd8"

    public = await (await client.get(f"/api/v1/incidents/{inc['id']}")).json()
    assert [x["body"] for x in public["replies"]] == ["Đã tiếp nhận, đang xác minh"]
    assert "notes" not in public
    staff_view = await (
        await client.get(f"/api/v1/incidents/{inc['id']}", headers=auth(staff))
    ).json()
    assert [x["body"] for x in staff_view["notes"]] == ["Người phản ánh quen biết chủ bãi"]
    mine = await (await client.get("/api/v1/incidents?mine=true", headers=auth(citizen))).json()
    assert [x["id"] for x in mine["items"]] == [inc["id"]]
    assert (await verify_all(core.sessions)).ok


async def test_duplicates_merge_and_unmerge(client: Any, core: Core) -> None:
    staff = await make_token(core, "supervisor")
    service = await make_token(core, "service", name="zalo")
    first = await (
        await client.post("/api/v1/incidents", json=report(), headers=auth(service))
    ).json()
    near = report(location={"lat": 11.5350, "lon": 106.8833})  # ~15 m away
    second = await (await client.post("/api/v1/incidents", json=near, headers=auth(service))).json()
    assert second["state"] == "merged" and second["primary"]["code"] == first["code"]
    other_kind = report(category="giao_thong.den_tin_hieu")
    third = await (
        await client.post("/api/v1/incidents", json=other_kind, headers=auth(service))
    ).json()
    assert third["state"] == "new"  # another category group is not a duplicate
    far = report(location={"lat": 11.60, "lon": 106.88})
    fourth = await (await client.post("/api/v1/incidents", json=far, headers=auth(service))).json()
    assert fourth["state"] == "new"

    primary = await (
        await client.get(f"/api/v1/incidents/{first['id']}", headers=auth(staff))
    ).json()
    assert primary["reporter_count"] == 2
    # Both reporters hear about the primary's progress (RP-8, RP-9).
    linked = await reporters_to_notify(core, first["code"])
    assert [r.incident_id for r in linked] == [first["id"], second["id"]]
    assert [d["code"] for d in primary["duplicates"]] == [second["code"]]

    r = await client.post(
        f"/api/v1/incidents/{second['id']}/unmerge", json={"note": "Khác vụ"}, headers=auth(staff)
    )
    assert r.status == 200 and (await r.json())["state"] == "new"
    primary = await (await client.get(f"/api/v1/incidents/{first['id']}")).json()
    assert primary["reporter_count"] == 1

    r = await client.post(
        f"/api/v1/incidents/{fourth['id']}/merge",
        json={"primary": first["code"]},
        headers=auth(staff),
    )
    assert r.status == 200 and (await r.json())["state"] == "merged"
    r = await client.post(
        f"/api/v1/incidents/{first['id']}/merge",
        json={"primary": third["code"]},
        headers=auth(staff),
    )
    assert r.status == 409 and (await r.json())["error_id"] == "incident-is-primary"
    r = await client.post(
        f"/api/v1/incidents/{second['id']}/unmerge", json={"note": "x"}, headers=auth(staff)
    )
    assert r.status == 409
    assert (await verify_all(core.sessions)).ok


async def test_events_reach_the_bus_through_the_outbox(settings: Settings) -> None:
    seen: list[Event] = []

    async def handler(e: Event) -> None:
        seen.append(e)

    bus = InProcessBus()
    bus.subscribe(group="test-observer", handler=handler)
    core = await start_core(settings, bus=bus, migrate=False)
    async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:
        await _walk_and_check(client, core, seen)
    await core.close()


async def _walk_and_check(client: Any, core: Core, seen: list[Event]) -> None:
    staff = await make_token(core, "calltaker")
    inc = await (await client.post("/api/v1/incidents", json=report(), headers=auth(staff))).json()
    await client.post(
        f"/api/v1/incidents/{inc['id']}/transitions", json={"action": "verify"}, headers=auth(staff)
    )
    await client.post(
        f"/api/v1/incidents/{inc['id']}/replies", json={"body": "Đã nhận"}, headers=auth(staff)
    )
    names = await wait_until(
        lambda: [e.name for e in seen] if len(seen) >= 3 else None, what="three events"
    )
    assert names == [ev.INCIDENT_CREATED, ev.INCIDENT_STATE_CHANGED, ev.INCIDENT_REPLY_ADDED]
    for e in seen:
        version, keys = ev.SCHEMAS[e.name]
        assert e.version == version and keys <= set(e.payload)
        assert e.correlation_id == inc["id"] and e.event_id

    async def published_rows_deleted() -> bool:
        return await core.relay.backlog() == 0

    # The in-process bus runs handlers inside publish(), before the relay's transaction that
    # deletes the published rows commits: the backlog empties just after (CI saw 1 once).
    await wait_until(published_rows_deleted, 5, "the outbox emptied")


async def test_list_filters_and_keyset_pagination(client: Any, core: Core) -> None:
    staff = await make_token(core, "calltaker")
    codes = []
    for i in range(7):
        body = report(
            location={"lat": 11.0 + i, "lon": 106.0, "area_code": "25210"},
            category="ha_tang.chieu_sang" if i % 2 else "moi_truong.rac_thai",
        )
        codes.append(
            (await (await client.post("/api/v1/incidents", json=body, headers=auth(staff))).json())[
                "code"
            ]
        )
    seen, cursor = [], None
    while True:
        url = "/api/v1/incidents?limit=3&total=true" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url)).json()
        assert page["total"] == 7
        seen += [x["code"] for x in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(codes))
    lit = await (await client.get("/api/v1/incidents?category=ha_tang.chieu_sang")).json()
    assert len(lit["items"]) == 3
    grp = await (await client.get("/api/v1/incidents?group=moi_truong&phase=open")).json()
    assert len(grp["items"]) == 4
    area = await (await client.get("/api/v1/incidents?area=75")).json()  # province subtree
    assert len(area["items"]) == 7
    bad = await client.get("/api/v1/incidents?colour=red")
    assert bad.status == 422 and "colour" in (await bad.json())["message"]
    bad = await client.get("/api/v1/incidents?cursor=zzz")
    assert bad.status == 422 and (await bad.json())["error_id"] == "bad-cursor"
