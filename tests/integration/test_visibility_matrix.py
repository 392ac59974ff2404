"""Who sees what, through every endpoint that returns incident data, on SQLite and PostgreSQL.

One scenario is seeded per test: a confidential report filed by a citizen ("owner"), a
non-confidential report filed by a channel service, both assigned to SNNMT with an internal
note, and an unassigned staff report used as a merge target. Every viewer then calls every
endpoint of a table and the raw body is searched for sentinel values:

                          non-confidential reporter   confidential reporter   notes, internal
    viewer                name/uid     phone/email    name/uid  phone/email   timeline notes
    public                -            -              -         -             -
    citizen (not owner)   -            -              -         -             -
    citizen (owner)       -            -              own       own           -
    agency SNNMT          yes          yes            -         -             -
    agency SXD            404          404            404       404           404
    service               yes          -              -         -             -
    staff (4 roles)       yes          yes            yes       yes           yes

Bodies of refused calls (403/404) must show no sentinel at all. Each detail view that shows a
confidential reporter to staff adds one `access_log` row; no other call adds any.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import FormData
from sqlalchemy import func, select

from ioc_core.incidents.models import AccessLog, Incident
from ioc_core.incidents.verify import verify_all
from ioc_core.runtime import Core
from tests.helpers import auth, image_bytes, make_token, report

# ---------------------------------------------------------------- sentinels

CONF = {
    "name": "SENTINEL-NAME-CONF",
    "uid": "SENTINEL-UID-CONF",
    "phone": "0999000111",
    "email": "sentinel-conf@example.vn",
}
OPEN = {
    "name": "SENTINEL-NAME-OPEN",
    "uid": "SENTINEL-UID-OPEN",
    "phone": "0999000222",
    "email": "sentinel-open@example.vn",
}
NOTE = "SENTINEL-NOTE"  # an internal note (incident_entries, kind "note")
TNOTE = "SENTINEL-TNOTE"  # the reason given with internal actions (assign, merge, escalate)
DRAFT = "SENTINEL-DRAFT"

IDENTITY = ("name", "uid")
CONTACT = ("phone", "email")
ALL_FIELDS = IDENTITY + CONTACT
EVERY_SENTINEL = frozenset([*CONF.values(), *OPEN.values(), NOTE, TNOTE, DRAFT])

IMMEDIATE = "ha_tang.cay_xanh"  # immediate track, priority high: escalation applies
STAFF_ROLES = ("calltaker", "supervisor", "leader", "admin")


# ---------------------------------------------------------------- viewers and rules


@dataclass(frozen=True)
class Viewer:
    key: str
    role: str | None  # None: no token
    agency: str | None = None
    subject: str = ""

    @property
    def staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def name(self) -> str:
        return f"vis-{self.key}"


VIEWERS: tuple[Viewer, ...] = (
    Viewer("public", None),
    Viewer("citizen_owner", "citizen", subject="zalo:owner-1"),
    Viewer("citizen_other", "citizen", subject="zalo:other-2"),
    Viewer("agency", "agency", agency="SNNMT"),
    Viewer("agency_other", "agency", agency="SXD"),
    Viewer("service", "service"),
    *(Viewer(r, r) for r in STAFF_ROLES),
)
BY_KEY = {v.key: v for v in VIEWERS}

# viewer role -> fields shown of a (non-confidential, confidential) reporter, and whether
# internal notes are shown. A citizen's own report shows everything they gave.
RULES: dict[str | None, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    None: ((), (), False),
    "citizen": ((), (), False),
    "agency": (ALL_FIELDS, (), False),
    "service": (IDENTITY, (), False),
    **{r: (ALL_FIELDS, ALL_FIELDS, True) for r in STAFF_ROLES},
}


def shown(viewer: Viewer, *, confidential: bool, own: bool) -> tuple[str, ...]:
    """Reporter fields `viewer` may see of one reporter."""
    if own:
        return ALL_FIELDS
    open_fields, conf_fields, _notes = RULES[viewer.role]
    return conf_fields if confidential else open_fields


def sees_internal(viewer: Viewer) -> bool:
    return RULES[viewer.role][2]


# ---------------------------------------------------------------- the scenario


@dataclass
class Inc:
    key: str  # conf | open | target
    id: str
    code: str
    confidential: bool = False
    owner: str | None = None  # viewer key of the citizen who filed it
    agency: str | None = None

    @property
    def sentinels(self) -> dict[str, str]:
        return {"conf": CONF, "open": OPEN}.get(self.key, {})


@dataclass
class Scenario:
    core: Core
    client: Any
    tokens: dict[str, str | None]
    incs: dict[str, Inc] = field(default_factory=dict)

    def token(self, viewer: Viewer) -> str | None:
        return self.tokens[viewer.key]

    def allowed(self, viewer: Viewer, inc: Inc | None = None) -> frozenset[str]:
        """Sentinels `viewer` may be shown: of `inc`, or of every seeded incident."""
        out: set[str] = set()
        for i in [inc] if inc else list(self.incs.values()):
            fields = shown(viewer, confidential=i.confidential, own=i.owner == viewer.key)
            out |= {i.sentinels[f] for f in fields if f in i.sentinels}
            if sees_internal(viewer) and i.sentinels:  # the seeded reports have notes
                out |= {NOTE, TNOTE}
        return frozenset(out)

    def in_scope(self, viewer: Viewer, inc: Inc) -> bool:
        return viewer.role != "agency" or inc.agency == viewer.agency


def loc(lat: float) -> dict[str, Any]:
    return {"lat": lat, "lon": 106.8832, "address": "Đồng Xoài", "area_code": "25210"}


def reporter(values: dict[str, str], *, confidential: bool) -> dict[str, Any]:
    return {
        "name": values["name"],
        "phone": values["phone"],
        "email": values["email"],
        "channel_user_id": values["uid"],
        "confidential": confidential,
    }


async def _ok(resp: Any, status: int) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, text
    return json.loads(text)  # type: ignore[no-any-return]


async def seed(core: Core, client: Any) -> Scenario:
    tokens: dict[str, str | None] = {}
    for v in VIEWERS:
        tokens[v.key] = (
            await make_token(core, v.role, agency=v.agency, subject=v.subject, name=v.name)
            if v.role
            else None
        )
    sc = Scenario(core, client, tokens)
    staff = tokens["calltaker"]

    async def create(who: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post("/api/v1/incidents", json=body, headers=auth(tokens[who]))
        return await _ok(r, 201)

    conf = await create(
        "citizen_owner",
        report(
            category=IMMEDIATE,
            channel="zalo",
            location=loc(11.50),
            reporter=reporter(CONF, confidential=True),
        ),
    )
    sc.incs["conf"] = Inc("conf", conf["id"], conf["code"], True, "citizen_owner")
    opened = await create(
        "service",
        report(
            category=IMMEDIATE,
            channel="zalo",
            location=loc(11.60),
            reporter=reporter(OPEN, confidential=False),
        ),
    )
    sc.incs["open"] = Inc("open", opened["id"], opened["code"])
    target = await create(
        "calltaker",
        report(category=IMMEDIATE, channel="phone", location=loc(11.70), reporter={"name": "B"}),
    )
    sc.incs["target"] = Inc("target", target["id"], target["code"])

    for key in ("conf", "open"):
        inc = sc.incs[key]
        base = f"/api/v1/incidents/{inc.id}"
        await _ok(
            await client.post(
                f"{base}/transitions",
                json={"action": "assign", "agency": "SNNMT", "note": TNOTE},
                headers=auth(staff),
            ),
            200,
        )
        inc.agency = "SNNMT"
        await _ok(await client.post(f"{base}/notes", json={"body": NOTE}, headers=auth(staff)), 201)
        await _ok(
            await client.post(
                f"{base}/replies", json={"body": "Đã chuyển Sở NN&MT"}, headers=auth(staff)
            ),
            201,
        )
        await _ok(
            await client.post(
                f"{base}/escalation",
                json={"escalated": True, "note": TNOTE},
                headers=auth(staff),
            ),
            200,
        )
    return sc


async def access_rows(core: Core) -> list[AccessLog]:
    async with core.sessions() as s:
        return list((await s.scalars(select(AccessLog).order_by(AccessLog.id))).all())


# ---------------------------------------------------------------- the checks

CREATED = "<the incident this call creates>"


@dataclass(frozen=True)
class Call:
    """One request and what its body may show."""

    label: str
    method: str
    url: str
    viewer: Viewer
    status: int
    allowed: frozenset[str]  # sentinels the body may contain (when the call succeeds)
    required: frozenset[str] = frozenset()  # sentinels the body must contain
    # Incident id whose confidential reporter staff are shown (CREATED: the one created).
    audited: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    open311_key: bool = False  # pass the token as Open311's api_key query parameter


async def check(sc: Scenario, call: Call) -> str:
    token = sc.token(call.viewer)
    url, headers = call.url, auth(token)
    if call.open311_key:  # Open311 clients send api_key: in the query, or in the form (POST)
        headers = {}
        if token and call.method == "GET":
            url += f"{'&' if '?' in url else '?'}api_key={token}"
    before = len(await access_rows(sc.core))
    resp = await sc.client.request(call.method, url, headers=headers, **call.kwargs)
    text: str = await resp.text()
    what = f"{call.label} as {call.viewer.key}"
    assert resp.status == call.status, (what, text)
    ok = resp.status < 400
    allowed = call.allowed if ok else frozenset()  # a refusal shows nothing at all
    leaked = sorted(s for s in EVERY_SENTINEL - allowed if s in text)
    assert not leaked, (what, leaked, text)
    missing = sorted(s for s in call.required if s not in text) if ok else []
    assert not missing, (what, missing, text)

    rows = await access_rows(sc.core)
    if call.audited and ok:
        assert len(rows) == before + 1, (what, "one access_log row expected")
        row = rows[-1]
        audited = json.loads(text)["id"] if call.audited == CREATED else call.audited
        assert (row.principal, row.role, row.incident_id, row.what) == (
            f"{call.viewer.role}:{call.viewer.name}",
            call.viewer.role,
            audited,
            "incident",
        ), what
    else:
        assert len(rows) == before, (what, "no access_log row expected")
    return text


# Read endpoints, as data: (label, url template, shape). Shapes: "detail" renders reporters and
# notes under the rules; "timeline" carries internal action notes for staff; "other" never
# renders reporters or notes.
READS_ONE: tuple[tuple[str, str, str], ...] = (
    ("GET incident by id", "/api/v1/incidents/{id}", "detail"),
    ("GET incident by code", "/api/v1/incidents/{code}", "detail"),
    ("GET timeline", "/api/v1/incidents/{id}/timeline", "timeline"),
    ("Open311 GET request json", "/open311/v2/requests/{code}.json", "other"),
    ("Open311 GET request xml", "/open311/v2/requests/{code}.xml", "other"),
)
READS_LIST: tuple[tuple[str, str], ...] = (
    ("GET incidents", "/api/v1/incidents?total=true&limit=500"),
    ("GET incidents q", "/api/v1/incidents?q=Rác"),
    ("Open311 GET requests json", "/open311/v2/requests.json"),
    ("Open311 GET requests xml", "/open311/v2/requests.xml"),
    ("Open311 GET requests by id json", "/open311/v2/requests.json?service_request_id={codes}"),
    ("Open311 GET requests by id xml", "/open311/v2/requests.xml?service_request_id={codes}"),
)


async def test_read_endpoints(client: Any, core: Core) -> None:
    sc = await seed(core, client)
    codes = ",".join(i.code for i in sc.incs.values())
    for viewer in VIEWERS:
        for inc in sc.incs.values():
            for label, template, shape in READS_ONE:
                allowed = sc.allowed(viewer, inc)
                required: frozenset[str] = frozenset()
                if shape == "detail":
                    required = allowed - {TNOTE}  # action notes live in the timeline only
                elif shape == "timeline" and sees_internal(viewer) and inc.agency:
                    required = frozenset({TNOTE})
                await check(
                    sc,
                    Call(
                        f"{label} [{inc.key}]",
                        "GET",
                        template.format(id=inc.id, code=inc.code),
                        viewer,
                        200 if sc.in_scope(viewer, inc) else 404,
                        allowed,
                        required,
                        audited=inc.id
                        if shape == "detail" and inc.confidential and viewer.staff
                        else None,
                        open311_key=template.startswith("/open311"),
                    ),
                )
        for label, template in READS_LIST:
            text = await check(
                sc,
                Call(
                    label,
                    "GET",
                    template.format(codes=codes),
                    viewer,
                    200,
                    sc.allowed(viewer),
                    open311_key=template.startswith("/open311"),
                ),
            )
            for inc in sc.incs.values():  # agencies list only their own assignments
                assert (inc.code in text) is sc.in_scope(viewer, inc), (label, viewer, inc.key)


@dataclass(frozen=True)
class Mutation:
    label: str
    method: str
    path: str  # under /api/v1/incidents/{id}
    may: frozenset[str]  # viewer keys that may call it ("owner": the citizen who filed it)
    status: int  # on success
    detail: bool  # the response is the incident's detail view
    body: Callable[[Viewer, Scenario], dict[str, Any]]
    not_found: frozenset[str] = frozenset()  # allowed role, but the incident is out of scope


STAFF_KEYS = frozenset(STAFF_ROLES)


def _photo(*_: Any) -> dict[str, Any]:
    form = FormData()
    form.add_field("photo", image_bytes("PNG"), filename="cay-do.png", content_type="image/png")
    return {"data": form}


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "PATCH",
        "PATCH",
        "",
        STAFF_KEYS,
        200,
        True,
        lambda v, sc: {"json": {"description": f"Cây đổ (sửa bởi {v.key})"}},
    ),
    Mutation(
        "POST transitions",
        "POST",
        "/transitions",
        STAFF_KEYS | {"agency"},
        200,
        True,
        # The agency starts work; staff (re)assign, which is allowed from either state.
        lambda v, sc: {
            "json": {"action": "start"}
            if v.role == "agency"
            else {"action": "assign", "agency": "SNNMT", "note": TNOTE}
        },
        not_found=frozenset({"agency_other"}),
    ),
    Mutation(
        "POST replies",
        "POST",
        "/replies",
        STAFF_KEYS | {"agency"},
        201,
        False,
        lambda v, sc: {"json": {"body": f"Trả lời từ {v.key}"}},
        not_found=frozenset({"agency_other"}),
    ),
    Mutation(
        "POST notes",
        "POST",
        "/notes",
        STAFF_KEYS,
        201,
        False,
        lambda v, sc: {"json": {"body": f"{NOTE} thêm từ {v.key}"}},
    ),
    Mutation(
        "POST attachments",
        "POST",
        "/attachments",
        STAFF_KEYS | {"agency", "service", "owner"},
        201,
        True,
        _photo,
        not_found=frozenset({"agency_other"}),
    ),
    Mutation(
        "POST merge",
        "POST",
        "/merge",
        STAFF_KEYS,
        200,
        True,
        lambda v, sc: {"json": {"primary": sc.incs["target"].code, "note": TNOTE}},
    ),
    Mutation(
        "POST unmerge",
        "POST",
        "/unmerge",
        STAFF_KEYS,
        200,
        True,
        lambda v, sc: {"json": {"note": TNOTE}},
    ),
    Mutation(
        "POST escalation",
        "POST",
        "/escalation",
        STAFF_KEYS,
        200,
        True,
        lambda v, sc: {"json": {"escalated": True, "note": TNOTE}},
    ),
)


async def test_mutation_endpoints(client: Any, core: Core) -> None:
    """Each viewer calls each mutation on each reported incident, in table order (staff last,
    so the agency finds the incident assigned; merge is undone by the next row, unmerge)."""
    sc = await seed(core, client)
    for key in ("conf", "open"):
        inc = sc.incs[key]
        for viewer in VIEWERS:
            for m in MUTATIONS:
                may = viewer.key in m.may or ("owner" in m.may and inc.owner == viewer.key)
                status = m.status if may else 404 if viewer.key in m.not_found else 403
                allowed = sc.allowed(viewer, inc)
                await check(
                    sc,
                    Call(
                        f"{m.label} [{key}]",
                        m.method,
                        f"/api/v1/incidents/{inc.id}{m.path}",
                        viewer,
                        status,
                        allowed,
                        required=allowed - {TNOTE} if m.detail else frozenset(),
                        audited=inc.id if m.detail and inc.confidential and viewer.staff else None,
                        kwargs=m.body(viewer, sc),
                    ),
                )
    async with core.sessions() as s:
        states = dict((await s.execute(select(Incident.code, Incident.state))).all())
    assert states[sc.incs["conf"].code] == states[sc.incs["open"].code] == "assigned"


async def test_create_endpoints(client: Any, core: Core) -> None:
    """The response of a new report shows its own reporter under the same rules."""
    sc = await seed(core, client)
    creators = STAFF_KEYS | {"citizen_owner", "citizen_other", "service"}
    lat = 12.0
    for viewer in VIEWERS:
        own = viewer.role == "citizen"  # a citizen's new report is their own
        for confidential, values in ((True, CONF), (False, OPEN)):
            lat += 0.05  # ~5 km apart: no duplicate merging
            fields = shown(viewer, confidential=confidential, own=own)
            allowed = frozenset(values[f] for f in fields)
            body = report(location=loc(lat), reporter=reporter(values, confidential=confidential))
            await check(
                sc,
                Call(
                    f"POST incidents (confidential={confidential})",
                    "POST",
                    "/api/v1/incidents",
                    viewer,
                    201 if viewer.key in creators else 403,
                    allowed,
                    required=allowed,
                    audited=CREATED if confidential and viewer.staff else None,
                    kwargs={"json": body},
                ),
            )
        # Open311 has no confidentiality flag: the form carries the non-confidential sentinels
        # and the response echoes only account_id (the channel user id).
        for fmt in ("json", "xml"):
            lat += 0.05
            form = {
                "service_code": "moi_truong.rac_thai",
                "lat": str(lat),
                "long": "106.8832",
                "description": "Rác thải",
                "first_name": OPEN["name"],
                "phone": OPEN["phone"],
                "email": OPEN["email"],
                "account_id": OPEN["uid"],
            }
            token = sc.token(viewer)
            if token:
                form["api_key"] = token
            await check(
                sc,
                Call(
                    f"Open311 POST requests.{fmt}",
                    "POST",
                    f"/open311/v2/requests.{fmt}",
                    viewer,
                    201 if viewer.key in creators else 403,
                    frozenset(OPEN[f] for f in shown(viewer, confidential=False, own=own)),
                    kwargs={"data": form},
                    open311_key=True,
                ),
            )


async def test_drafts_are_staff_only(client: Any, core: Core) -> None:
    """A call-taker's draft, and a cancelled one, exist only for staff (404 / absent)."""
    sc = await seed(core, client)
    staff = auth(sc.tokens["calltaker"])
    drafts = []
    for lat in (11.80, 11.85):
        body = report(draft=True, title=DRAFT, description=f"Rác {DRAFT}", location=loc(lat))
        r = await client.post("/api/v1/incidents", json=body, headers=staff)
        drafts.append(await _ok(r, 201))
    r = await client.post(
        f"/api/v1/incidents/{drafts[1]['id']}/transitions",
        json={"action": "cancel", "note": "Gọi nhầm"},
        headers=staff,
    )
    drafts[1] = await _ok(r, 200)
    assert drafts[1]["state"] == "cancelled"
    codes = ",".join(d["code"] for d in drafts)

    for viewer in VIEWERS:
        allowed = frozenset({DRAFT}) if viewer.staff else frozenset()
        for d in drafts:
            for label, template, _shape in READS_ONE:
                await check(
                    sc,
                    Call(
                        f"{label} [{d['state']}]",
                        "GET",
                        template.format(id=d["id"], code=d["code"]),
                        viewer,
                        200 if viewer.staff else 404,
                        allowed,
                        required=allowed if "timeline" not in template else frozenset(),
                        open311_key=template.startswith("/open311"),
                    ),
                )
        for label, template in (
            *READS_LIST,
            ("GET incidents state=draft", "/api/v1/incidents?state=draft"),
            ("GET incidents state=cancelled", "/api/v1/incidents?state=cancelled"),
        ):
            text = await check(
                sc,
                Call(
                    label,
                    "GET",
                    template.format(codes=codes),
                    viewer,
                    200,
                    allowed,
                    open311_key=template.startswith("/open311"),
                ),
            )
            for d in drafts:
                if not viewer.staff:
                    assert d["code"] not in text, (label, viewer.key)
                elif template.startswith("/api") and (
                    "state=" not in template or template.endswith(f"state={d['state']}")
                ):
                    assert d["code"] in text, (label, viewer.key)  # staff list drafts

    # Roles that may act on public incidents find no draft to act on.
    draft = drafts[0]
    for key, path, kwargs in (
        ("service", "/transitions", {"json": {"action": "submit"}}),
        ("service", "/attachments", _photo()),
        ("citizen_owner", "/attachments", _photo()),
        ("agency", "/replies", {"json": {"body": "Đã nhận"}}),
    ):
        viewer = BY_KEY[key]
        await check(
            sc,
            Call(
                f"POST {path} [draft]",
                "POST",
                f"/api/v1/incidents/{draft['id']}{path}",
                viewer,
                404,
                frozenset(),
                kwargs=kwargs,
            ),
        )


# ---------------------------------------------------------------- regressions


async def test_a_merge_never_reveals_a_draft(client: Any, core: Core) -> None:
    sc = await seed(core, client)
    staff = auth(sc.tokens["supervisor"])
    draft = await _ok(
        await client.post(
            "/api/v1/incidents",
            json=report(draft=True, title=DRAFT, location=loc(11.9)),
            headers=staff,
        ),
        201,
    )
    inc = sc.incs["open"]
    r = await client.post(
        f"/api/v1/incidents/{inc.id}/merge", json={"primary": draft["code"]}, headers=staff
    )
    assert r.status in (200, 409), await r.text()
    for key in ("public", "citizen_other", "service", "agency"):
        for url in (
            f"/api/v1/incidents/{inc.id}",
            f"/api/v1/incidents/{inc.id}/timeline",
            f"/open311/v2/requests/{inc.code}.json",
        ):
            resp = await client.get(url, headers=auth(sc.token(BY_KEY[key])))
            text = await resp.text()
            assert resp.status == 200, text
            assert draft["code"] not in text and draft["id"] not in text, (key, url, text)


async def test_a_service_draft_is_answered_truthfully(client: Any, core: Core) -> None:
    token = await make_token(core, "service", name="zalo")
    r = await client.post("/api/v1/incidents", json=report(draft=True), headers=auth(token))
    text = await r.text()
    async with core.sessions() as s:
        stored = await s.scalar(select(func.count()).select_from(Incident))
    assert r.status != 404, text
    assert (r.status == 201) == (stored == 1), (r.status, stored, text)


async def test_an_agency_decline_is_answered_truthfully(client: Any, core: Core) -> None:
    sc = await seed(core, client)
    inc = sc.incs["open"]
    r = await client.post(
        f"/api/v1/incidents/{inc.id}/transitions",
        json={"action": "decline", "note": "Không thuộc thẩm quyền"},
        headers=auth(sc.tokens["agency"]),
    )
    text = await r.text()
    assert not set(OPEN.values()) & {s for s in EVERY_SENTINEL if s in text}  # never a leak
    assert 200 <= r.status < 300, text


# ---------------------------------------------------------------- searching by a reporter

# Searching incidents by a reporter's contact tells whether that person reported: the roles
# that may see confidential reporters may search (each search logged), every other role gets
# 403 and learns nothing, not even a count. (filter, value, the seeded incident it matches)
CONTACT_SEARCHES: tuple[tuple[str, str, str | None], ...] = (
    ("reporter_phone", CONF["phone"], "conf"),
    ("reporter_phone", OPEN["phone"], "open"),
    ("reporter_phone", "0999000333", None),
)
MAY_SEARCH_CONTACTS = STAFF_KEYS


async def test_defect_02_reporter_contact_search_by_role(client: Any, core: Core) -> None:
    sc = await seed(core, client)
    for viewer in VIEWERS:
        for name, value, key in CONTACT_SEARCHES:
            what = (viewer.key, name, key)
            before = len(await access_rows(core))
            resp = await client.get(
                "/api/v1/incidents",
                params={name: value, "total": "true"},
                headers=auth(sc.token(viewer)),
            )
            body = json.loads(await resp.text())
            rows = (await access_rows(core))[before:]
            if viewer.key not in MAY_SEARCH_CONTACTS:
                assert resp.status == 403, (what, body)
                assert body["error_id"] == "reporter-search-not-allowed", (what, body)
                assert body["details"]["field"] == name, (what, body)
                assert "total" not in body and "items" not in body, (what, body)
                assert rows == [], (what, "a refused search is not an access")
                continue
            assert resp.status == 200, (what, body)
            expected = [sc.incs[key].code] if key else []
            assert [i["code"] for i in body["items"]] == expected, (what, body)
            assert body["total"] == len(expected), (what, body)
            # Every search is in the access log, with the incidents it matched (none: "").
            assert [(r.principal, r.role, r.incident_id, r.what) for r in rows] == [
                (
                    f"{viewer.role}:{viewer.name}",
                    viewer.role,
                    sc.incs[key].id if key else "",
                    f"reporter-search:{name}",
                )
            ], what


# ---------------------------------------------------------------- changes to a reporter

NEW_PHONE = "0999000555"


async def _reporter_rows(sc: Scenario, viewer: Viewer, inc: Inc) -> tuple[list[Any], str, list]:
    """The timeline's reporter_changed rows as `viewer` sees them, the body, and the
    access_log rows the read added."""
    before = len(await access_rows(sc.core))
    resp = await sc.client.get(
        f"/api/v1/incidents/{inc.id}/timeline", headers=auth(sc.token(viewer))
    )
    text = await resp.text()
    assert resp.status == 200, (viewer.key, text)
    items = json.loads(text)["items"]
    return (
        [i for i in items if i["kind"] == "reporter_changed"],
        text,
        (await access_rows(sc.core))[before:],
    )


async def test_defect_03_reporter_changes_in_timeline(client: Any, core: Core) -> None:
    """Switching confidentiality off and changing the phone leaves the old and new values in
    the timeline for roles that may see the reporter as it was and as it is, the mere fact of
    the change for everyone else, and an access_log row for the change."""
    sc = await seed(core, client)
    conf, opened = sc.incs["conf"], sc.incs["open"]
    before = len(await access_rows(core))
    resp = await client.patch(
        f"/api/v1/incidents/{conf.id}",
        json={"reporter": {"confidential": False, "phone": NEW_PHONE}},
        headers=auth(sc.tokens["supervisor"]),
    )
    assert resp.status == 200, await resp.text()
    logged = [(r.principal, r.role, r.incident_id, r.what) for r in await access_rows(core)]
    assert ("supervisor:vis-supervisor", "supervisor", conf.id, "reporter-changed") in logged[
        before:
    ]
    for viewer in VIEWERS:
        if not sc.in_scope(viewer, conf):
            continue
        rows, text, accessed = await _reporter_rows(sc, viewer, conf)
        assert len(rows) == 1, (viewer.key, text)
        if viewer.staff:
            assert rows[0]["changes"] == {
                "confidential": {"from": True, "to": False},
                "phone": {"from": CONF["phone"], "to": NEW_PHONE},
            }, viewer.key
            # Showing the (formerly) confidential values is an access like any other.
            assert [(a.incident_id, a.what) for a in accessed] == [(conf.id, "timeline")]
        else:
            # Neither the confidential old number nor the new one, nor the flag.
            assert "changes" not in rows[0] and "data" not in rows[0], (viewer.key, rows)
            assert CONF["phone"] not in text and NEW_PHONE not in text, viewer.key
            assert accessed == [], viewer.key

    # A non-confidential reporter: whoever sees its contact reads its old and new phone.
    resp = await client.patch(
        f"/api/v1/incidents/{opened.id}",
        json={"reporter": {"phone": NEW_PHONE}},
        headers=auth(sc.tokens["calltaker"]),
    )
    assert resp.status == 200, await resp.text()
    for viewer in VIEWERS:
        if not sc.in_scope(viewer, opened):
            continue
        rows, text, accessed = await _reporter_rows(sc, viewer, opened)
        assert len(rows) == 1, (viewer.key, text)
        if "phone" in shown(viewer, confidential=False, own=False):
            assert rows[0]["changes"] == {"phone": {"from": OPEN["phone"], "to": NEW_PHONE}}
        else:
            assert "changes" not in rows[0], (viewer.key, rows)
            assert OPEN["phone"] not in text and NEW_PHONE not in text, viewer.key
        assert accessed == [], viewer.key  # never confidential: not an audited view
    assert (await verify_all(core.sessions)).ok
