"""Bad input, table-driven: each request is refused with the expected status, `error_id` and a
message naming the problem, and leaves nothing behind (no row in the incident tables or the
outbox, no file or folder under the attachments directory). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from PIL import Image
from sqlalchemy import func, select

from ioc_core.bus import InProcessBus
from ioc_core.config import Settings
from ioc_core.incidents.models import Attachment, Entry, Incident, Reporter, TimelineEntry
from ioc_core.outbox import OutboxRow
from ioc_core.runtime import Core, start_core
from tests.conftest import make_settings
from tests.helpers import auth, image_bytes, make_token, report

MAX_PHOTO = 2000
MAX_PHOTOS = 2
MAX_BODY = 32 * 1024
TABLES = (Incident, Reporter, Attachment, TimelineEntry, OutboxRow, Entry)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Overrides conftest's: small limits, so the limit cases stay small and fast."""
    return make_settings(
        tmp_path / "data",
        database_url,
        max_attachment_bytes=MAX_PHOTO,
        max_attachments=MAX_PHOTOS,
        max_body_bytes=MAX_BODY,
    )


# ------------------------------------------------------------------ what is on record


def paths_under(root: Path) -> list[str]:
    """Every file and folder below `root` (a rejected photo must not leave even a folder)."""
    out = []
    for top, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(top, n), root) for n in dirs + files]
    return sorted(out)


@pytest.fixture
async def core(settings: Settings) -> AsyncIterator[Core]:
    """Overrides conftest's with the outbox relay stopped: it deletes the rows it publishes,
    so with it running a wrongly written outbox row could vanish before it is counted."""
    c = await start_core(settings, bus=InProcessBus(), migrate=False)
    await c.relay.close()
    try:
        yield c
    finally:
        await c.close()


async def footprint(core: Core) -> dict[str, Any]:
    """Row counts of every table a report writes, and every path under the attachments dir."""
    async with core.sessions() as s:
        rows = {
            m.__tablename__: int(await s.scalar(select(func.count()).select_from(m)) or 0)
            for m in TABLES
        }
    return {"rows": rows, "paths": paths_under(core.settings.attachments_dir)}


# ------------------------------------------------------------------ payloads

PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")
GIF = image_bytes("GIF")
NOT_IMAGE = b"%PDF-1.4\n% not a photo at all\n" * 4


def _noise_png(size: int) -> bytes:
    """A real PNG of about `size` bytes or more (random pixels do not compress)."""
    side = int((size / 3) ** 0.5) + 4
    pixels = random.Random(7).randbytes(side * side * 3)
    img = Image.frombytes("RGB", (side, side), pixels)
    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


BIG_PNG = _noise_png(MAX_PHOTO * 2)
assert len(BIG_PNG) > MAX_PHOTO

REPORT = json.dumps(report())


def loc(**over: Any) -> dict[str, Any]:
    return {"lat": 11.5349, "lon": 106.8832, "area_code": "25210"} | over


def reporter(**over: Any) -> dict[str, Any]:
    return {"name": "Nguyễn Văn An", "phone": "0912345678", "email": "an@example.vn"} | over


File = tuple[str, bytes]  # (filename, data)


@dataclass(frozen=True)
class Req:
    """One request. `path` may name `{ref}`: the id of an incident made before the request."""

    method: str = "POST"
    path: str = "/api/v1/incidents"
    json: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    report_part: str | None = None  # multipart: the 'report' field
    files: tuple[File, ...] = ()  # multipart: photos
    fields: tuple[tuple[str, str], ...] = ()  # multipart: other fields
    token: str = "staff"  # staff | citizen | none | raw:<Authorization header>
    setup: str = ""  # "" | incident | full (incident with MAX_PHOTOS photos)

    @property
    def multipart(self) -> bool:
        return self.report_part is not None or bool(self.files) or bool(self.fields)


@dataclass(frozen=True)
class Case:
    id: str
    req: Req
    status: int
    error_id: str
    word: str  # the message must contain it: it names the problem
    marks: tuple[Any, ...] = field(default=())


def create(body: Any) -> Req:
    return Req(json=body)


def form(report_part: str | None = REPORT, *files: File, **kw: Any) -> Req:
    return Req(report_part=report_part, files=files, **kw)


def attach(*files: File, **kw: Any) -> Req:
    kw.setdefault("setup", "incident")
    kw.setdefault("path", "/api/v1/incidents/{ref}/attachments")
    return Req(files=files, **kw)


def get(query: str) -> Req:
    return Req(method="GET", path=f"/api/v1/incidents?{query}")


CASES: list[Case] = [
    # --- location
    Case("missing-location", create(report(location=None)), 422, "validation-failed", "location"),
    Case(
        "location-absent",
        create({k: v for k, v in report().items() if k != "location"}),
        422,
        "validation-failed",
        "location",
    ),
    Case(
        "lat-without-lon", create(report(location={"lat": 11.5})), 422, "validation-failed", "lon"
    ),
    Case(
        "lon-without-lat", create(report(location={"lon": 106.8})), 422, "validation-failed", "lat"
    ),
    Case("empty-location", create(report(location={})), 422, "validation-failed", "area_code"),
    Case("lat-91", create(report(location=loc(lat=91))), 422, "validation-failed", "location.lat"),
    Case(
        "lat-minus-91",
        create(report(location=loc(lat=-91))),
        422,
        "validation-failed",
        "location.lat",
    ),
    Case(
        "lon-181", create(report(location=loc(lon=181))), 422, "validation-failed", "location.lon"
    ),
    Case(
        "lat-nan-string",
        create(report(location=loc(lat="NaN"))),
        422,
        "validation-failed",
        "location.lat",
    ),
    Case(
        "lon-infinity-string",
        create(report(location=loc(lon="Infinity"))),
        422,
        "validation-failed",
        "location.lon",
    ),
    Case(
        "lat-nan-json-token",
        Req(raw=json.dumps(report(location=loc(lat=float("nan")))).encode()),
        422,
        "validation-failed",
        "location.lat",
    ),
    Case(
        "lat-not-a-number",
        create(report(location=loc(lat="north"))),
        422,
        "validation-failed",
        "location.lat",
    ),
    Case(
        "unknown-area-code",
        create(report(location=loc(area_code="99999"))),
        422,
        "unknown-area",
        "area_code",
    ),
    Case(
        "area-code-only-unknown",
        create(report(location={"area_code": "nowhere"})),
        422,
        "unknown-area",
        "nowhere",
    ),
    Case(
        "address-501",
        create(report(location=loc(address="a" * 501))),
        422,
        "validation-failed",
        "location.address",
    ),
    # --- category and enums
    Case(
        "unknown-category", create(report(category="khong_co")), 422, "unknown-category", "khong_co"
    ),
    Case("empty-category", create(report(category="   ")), 422, "validation-failed", "category"),
    Case("bad-channel", create(report(channel="pigeon")), 422, "validation-failed", "channel"),
    Case("bad-priority", create(report(priority="asap")), 422, "validation-failed", "priority"),
    Case("title-not-string", create(report(title=5)), 422, "validation-failed", "title"),
    # --- body shape
    Case(
        "malformed-json",
        Req(raw=b'{"category": "moi_truong.rac_thai", '),
        400,
        "malformed-json",
        "JSON",
    ),
    Case("empty-body", Req(raw=b""), 400, "malformed-json", "JSON"),
    Case("not-utf8", Req(raw=b'{"title": "\xff\xfe"}'), 400, "malformed-json", "UTF-8"),
    Case("json-list", create([report()]), 422, "validation-failed", "dictionary"),
    Case("json-null", Req(raw=b"null"), 422, "validation-failed", "dictionary"),
    Case(
        "text-plain",
        Req(raw=REPORT.encode(), content_type="text/plain"),
        415,
        "unsupported-media-type",
        "application/json",
    ),
    Case(
        "form-urlencoded",
        Req(raw=b"category=x", content_type="application/x-www-form-urlencoded"),
        415,
        "unsupported-media-type",
        "application/json",
    ),
    Case("unknown-top-field", create(report(colour="red")), 422, "validation-failed", "colour"),
    Case(
        "unknown-nested-field",
        create(report(location=loc(foo=1))),
        422,
        "validation-failed",
        "location.foo",
    ),
    Case(
        "unknown-reporter-field",
        create(report(reporter=reporter(age=30))),
        422,
        "validation-failed",
        "reporter.age",
    ),
    # --- lengths and formats
    Case("title-201", create(report(title="t" * 201)), 422, "validation-failed", "title"),
    Case(
        "description-5001",
        create(report(description="d" * 5001)),
        422,
        "validation-failed",
        "description",
    ),
    Case(
        "reporter-name-201",
        create(report(reporter=reporter(name="n" * 201))),
        422,
        "validation-failed",
        "reporter.name",
    ),
    Case(
        "external-ref-101",
        create(report(external_ref="r" * 101)),
        422,
        "validation-failed",
        "external_ref",
    ),
    Case(
        "bad-phone",
        create(report(reporter=reporter(phone="09-12-ab"))),
        422,
        "validation-failed",
        "reporter.phone",
    ),
    Case(
        "phone-too-long",
        create(report(reporter=reporter(phone="+" + "9" * 16))),
        422,
        "validation-failed",
        "reporter.phone",
    ),
    Case(
        "bad-email",
        create(report(reporter=reporter(email="an at example"))),
        422,
        "validation-failed",
        "reporter.email",
    ),
    Case(
        "email-no-tld",
        create(report(reporter=reporter(email="an@example"))),
        422,
        "validation-failed",
        "reporter.email",
    ),
    Case(
        "email-255",
        create(report(reporter=reporter(email="a" * 64 + "@" + "b" * 186 + ".com"))),
        422,
        "validation-failed",
        "reporter.email",
    ),
    # --- body size
    Case(
        "json-body-over-limit",
        create(report(description="x" * (MAX_BODY + 1000))),
        413,
        "payload-too-large",
        "too large",
    ),
    Case(
        "multipart-body-over-limit",
        form(REPORT, *((f"p{i}.png", b"x" * (MAX_PHOTO - 100)) for i in range(20))),
        413,
        "payload-too-large",
        "too large",
    ),
    # --- photos on create (multipart)
    Case(
        "oversized-photo",
        form(REPORT, ("big.png", BIG_PNG)),
        413,
        "attachment-too-large",
        "big.png",
    ),
    Case(
        "not-an-image-jpg", form(REPORT, ("fake.jpg", NOT_IMAGE)), 415, "not-an-image", "fake.jpg"
    ),
    Case("gif-not-allowed", form(REPORT, ("anim.gif", GIF)), 415, "not-an-image", "GIF"),
    Case("empty-file", form(REPORT, ("empty.png", b"")), 422, "empty-file", "empty"),
    Case(
        "too-many-photos",
        form(REPORT, *((f"p{i}.png", PNG) for i in range(MAX_PHOTOS + 1))),
        422,
        "too-many-attachments",
        "photos",
    ),
    Case(
        "good-photo-then-bad-photo",
        form(REPORT, ("good.jpg", JPEG), ("bad.jpg", NOT_IMAGE)),
        415,
        "not-an-image",
        "bad.jpg",
    ),
    Case(
        "bad-photo-then-good-photo",
        form(REPORT, ("anim.gif", GIF), ("good.png", PNG)),
        415,
        "not-an-image",
        "GIF",
    ),
    Case(
        "good-photo-invalid-report",
        form(json.dumps(report(category="khong_co")), ("good.png", PNG)),
        422,
        "unknown-category",
        "khong_co",
    ),
    Case(
        "multipart-report-malformed-json",
        form('{"category": ', ("good.png", PNG)),
        400,
        "malformed-json",
        "report",
    ),
    Case(
        "multipart-report-is-list",
        form(json.dumps([report()])),
        422,
        "validation-failed",
        "dictionary",
    ),
    Case(
        "multipart-without-report",
        form(None, ("good.png", PNG)),
        422,
        "validation-failed",
        "report",
    ),
    Case(
        "multipart-unknown-field",
        form(REPORT, fields=(("colour", "red"),)),
        422,
        "validation-failed",
        "colour",
    ),
    Case(
        "multipart-broken",
        Req(
            raw=b"--xyz\r\nContent-Disposition: form-data; name=report\r\n\r\n{}",
            content_type="multipart/form-data; boundary=xyz",
        ),
        400,
        "malformed-multipart",
        "multipart",
    ),
    # --- who is calling
    Case("no-token", Req(json=report(), token="none"), 403, "forbidden", "public"),
    Case(
        "basic-auth-header",
        Req(json=report(), token="raw:Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
        401,
        "bad-authorization-header",
        "Bearer",
    ),
    Case(
        "bearer-without-token",
        Req(json=report(), token="raw:Bearer"),
        401,
        "bad-authorization-header",
        "Bearer",
    ),
    Case(
        "unknown-token",
        Req(json=report(), token="raw:Bearer ioc_not-a-real-token"),
        401,
        "invalid-token",
        "token",
    ),
    Case(
        "citizen-draft",
        Req(json=report(draft=True), token="citizen"),
        403,
        "draft-not-allowed",
        "draft",
    ),
    # --- commands on an existing incident
    Case(
        "transition-unknown-action",
        Req(path="/api/v1/incidents/{ref}/transitions", json={"action": "fly"}, setup="incident"),
        422,
        "unknown-action",
        "fly",
    ),
    Case(
        "transition-unknown-field",
        Req(
            path="/api/v1/incidents/{ref}/transitions",
            json={"action": "verify", "colour": "red"},
            setup="incident",
        ),
        422,
        "validation-failed",
        "colour",
    ),
    Case(
        "transition-unknown-incident",
        Req(path="/api/v1/incidents/PA-1999-999999/transitions", json={"action": "verify"}),
        404,
        "incident-not-found",
        "PA-1999-999999",
    ),
    Case(
        "update-lat-91",
        Req(
            method="PATCH",
            path="/api/v1/incidents/{ref}",
            json={"location": loc(lat=91)},
            setup="incident",
        ),
        422,
        "validation-failed",
        "location.lat",
    ),
    Case(
        "update-severity-null",
        Req(
            method="PATCH",
            path="/api/v1/incidents/{ref}",
            json={"severity": None, "title": None},
            setup="incident",
        ),
        422,
        "validation-failed",
        "severity, title: null is not a value",
    ),
    Case(
        "update-nothing",
        Req(method="PATCH", path="/api/v1/incidents/{ref}", json={}, setup="incident"),
        422,
        "empty-update",
        "nothing",
    ),
    Case(
        "reply-empty",
        Req(path="/api/v1/incidents/{ref}/replies", json={"body": "  "}, setup="incident"),
        422,
        "validation-failed",
        "body",
    ),
    # --- attachments on an existing incident
    Case("attach-not-an-image", attach(("fake.jpg", NOT_IMAGE)), 415, "not-an-image", "fake.jpg"),
    Case("attach-gif", attach(("anim.gif", GIF)), 415, "not-an-image", "GIF"),
    Case("attach-empty", attach(("empty.jpg", b"")), 422, "empty-file", "empty"),
    Case("attach-oversized", attach(("big.png", BIG_PNG)), 413, "attachment-too-large", "big.png"),
    Case(
        "attach-good-and-bad",
        attach(("good.png", PNG), ("fake.jpg", NOT_IMAGE)),
        415,
        "not-an-image",
        "fake.jpg",
    ),
    Case(
        "attach-over-the-count",
        attach(("one-more.png", PNG), setup="full"),
        422,
        "too-many-attachments",
        "photos",
    ),
    Case("attach-unknown-field", attach(fields=(("note", "x"),)), 422, "validation-failed", "note"),
    Case(
        "attach-no-photo",
        Req(
            path="/api/v1/incidents/{ref}/attachments",
            raw=b"--xyz--\r\n",
            content_type="multipart/form-data; boundary=xyz",
            setup="incident",
        ),
        422,
        "attachment-missing",
        "photo",
    ),
    Case(
        "attach-json-body",
        Req(path="/api/v1/incidents/{ref}/attachments", json={"photo": "x"}, setup="incident"),
        415,
        "unsupported-media-type",
        "multipart/form-data",
    ),
    Case(
        "attach-public",
        attach(("good.png", PNG), token="none"),
        403,
        "forbidden",
        "public",
    ),
    Case(
        "attach-unknown-incident",
        attach(("good.png", PNG), path="/api/v1/incidents/PA-1999-999999/attachments", setup=""),
        404,
        "incident-not-found",
        "PA-1999-999999",
    ),
    # --- list queries
    Case("list-unknown-param", get("colour=red"), 422, "validation-failed", "colour"),
    Case("list-limit-0", get("limit=0"), 422, "validation-failed", "limit"),
    Case("list-limit-100000", get("limit=100000"), 422, "validation-failed", "limit"),
    Case("list-limit-not-int", get("limit=many"), 422, "validation-failed", "limit"),
    Case("list-bad-phase", get("phase=sleeping"), 422, "validation-failed", "phase"),
    Case("list-bad-since", get("since=yesterday"), 422, "validation-failed", "since"),
    Case("list-unknown-area", get("area=99999"), 422, "unknown-area", "99999"),
    Case("list-bad-cursor", get("cursor=zzz"), 422, "bad-cursor", "cursor"),
    Case("list-mine-without-citizen", get("mine=true"), 422, "mine-needs-citizen", "citizen"),
]


def _params() -> list[Any]:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return [pytest.param(c, id=c.id, marks=c.marks) for c in CASES]


# ------------------------------------------------------------------ running a case


async def _setup(client: Any, staff: str, what: str) -> str:
    if not what:
        return ""
    if what == "incident":
        r = await client.post("/api/v1/incidents", json=report(), headers=auth(staff))
    else:
        body = FormData()
        body.add_field("report", REPORT, content_type="application/json")
        for i in range(MAX_PHOTOS):
            body.add_field("photo", PNG, filename=f"p{i}.png", content_type="image/png")
        r = await client.post("/api/v1/incidents", data=body, headers=auth(staff))
    assert r.status == 201, await r.text()
    return str((await r.json())["id"])


def _headers(req: Req, tokens: dict[str, str]) -> dict[str, str]:
    if req.token == "none":
        return {}
    if req.token.startswith("raw:"):
        return {"Authorization": req.token.removeprefix("raw:")}
    return auth(tokens[req.token])


async def send(client: Any, req: Req, tokens: dict[str, str], ref: str) -> Any:
    headers = _headers(req, tokens)
    path = req.path.format(ref=ref)
    if req.multipart:
        body = FormData()
        if req.report_part is not None:
            body.add_field("report", req.report_part, content_type="application/json")
        for name, value in req.fields:
            body.add_field(name, value, content_type="text/plain")
        for filename, data in req.files:
            body.add_field(
                "photo", data, filename=filename, content_type="application/octet-stream"
            )
        return await client.request(req.method, path, data=body, headers=headers)
    if req.method == "GET":
        return await client.get(path, headers=headers)
    raw = req.raw if req.raw is not None else json.dumps(req.json).encode()
    headers["Content-Type"] = req.content_type
    return await client.request(req.method, path, data=raw, headers=headers)


@pytest.mark.parametrize("case", _params())
async def test_bad_request_is_refused_and_writes_nothing(
    case: Case, client: Any, core: Core
) -> None:
    tokens = {
        "staff": await make_token(core, "calltaker"),
        "citizen": await make_token(core, "citizen", subject="zalo:42"),
    }
    ref = await _setup(client, tokens["staff"], case.req.setup)
    before = await footprint(core)

    r = await send(client, case.req, tokens, ref)
    text = await r.text()
    assert r.status == case.status, text
    body = json.loads(text)
    assert set(body) == {"error_id", "message", "details"}, body
    assert body["error_id"] == case.error_id, body
    assert case.word.lower() in body["message"].lower(), body

    assert await footprint(core) == before


# ------------------------------------------------------------------ controls and boundaries


async def test_the_footprint_sees_a_good_report(client: Any, core: Core) -> None:
    """The check above is not vacuous: a good multipart report shows up in every table and on
    disk, and a good attachment adds a row, a timeline row, an event and a file."""
    staff = await make_token(core, "calltaker")
    empty = await footprint(core)
    r = await send(client, form(REPORT, ("good.jpg", JPEG)), {"staff": staff}, "")
    assert r.status == 201, await r.text()
    ref = (await r.json())["id"]
    after = await footprint(core)
    grown = {t for t in after["rows"] if after["rows"][t] > empty["rows"][t]}
    assert grown == {"incidents", "reporters", "attachments", "timeline", "outbox"}
    assert any(p.endswith(".jpg") for p in after["paths"])

    r = await send(client, attach(("more.png", PNG)), {"staff": staff}, ref)
    assert r.status == 201, await r.text()
    last = await footprint(core)
    assert {t: last["rows"][t] - after["rows"][t] for t in last["rows"]} == {
        "incidents": 0,
        "reporters": 0,
        "attachments": 1,
        "timeline": 1,
        "outbox": 1,
        "incident_entries": 0,
    }
    assert len([p for p in last["paths"] if p.endswith(".png")]) == 1


async def test_limits_are_inclusive(client: Any, core: Core) -> None:
    """Exactly at every limit is accepted: the refusals above are one past the edge."""
    staff = await make_token(core, "calltaker")
    body = report(
        title="t" * 200,
        description="d" * 5000,
        location={"lat": 90, "lon": -180, "address": "a" * 500},
        reporter=reporter(name="n" * 200, phone="+" + "9" * 15),
        external_ref="r" * 100,
    )
    r = await client.post("/api/v1/incidents", json=body, headers=auth(staff))
    assert r.status == 201, await r.text()
    photos = form(REPORT, *((f"p{i}.png", PNG) for i in range(MAX_PHOTOS)))
    r = await send(client, photos, {"staff": staff}, "")
    assert r.status == 201, await r.text()
    assert len((await r.json())["attachments"]) == MAX_PHOTOS


async def test_longest_valid_email_is_stored(
    client: Any, core: Core, backend: str, request: pytest.FixtureRequest
) -> None:
    """ReporterIn.email allows 254 characters (the RFC 5321 path limit); the column must too."""
    staff = await make_token(core, "calltaker")
    email = "a" * 64 + "@" + "b" * 185 + ".com"
    assert len(email) == 254
    r = await client.post(
        "/api/v1/incidents", json=report(reporter=reporter(email=email)), headers=auth(staff)
    )
    assert r.status == 201, await r.text()
    inc = await (
        await client.get(f"/api/v1/incidents/{(await r.json())['id']}", headers=auth(staff))
    ).json()
    assert inc["reporters"][0]["email"] == email


def _fail_in_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the last write of every incident transaction fail, after the photos are on disk."""

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("simulated database failure")

    async def async_boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("simulated database failure")

    # A new report's rows go in through insert_new; changes to stored ones through add_events.
    monkeypatch.setattr("ioc_core.incidents.commands.add_events", boom)
    monkeypatch.setattr("ioc_core.incidents.reporting.insert_new", async_boom)


async def test_failed_transaction_removes_written_photos(
    client: Any, core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Photos are written before the commit; when the commit fails they are removed again."""
    staff = await make_token(core, "calltaker")
    ref = await _setup(client, staff, "incident")
    _fail_in_transaction(monkeypatch)
    for req in (form(REPORT, ("good.jpg", JPEG)), attach(("good.png", PNG))):
        before = await footprint(core)
        r = await send(client, req, {"staff": staff}, ref)
        assert r.status == 500 and (await r.json())["error_id"] == "internal-error"
        after = await footprint(core)
        assert after["rows"] == before["rows"]
        root = core.settings.attachments_dir
        assert [p for p in after["paths"] if (root / p).is_file()] == []


async def test_failed_transaction_leaves_no_folder(
    client: Any, core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    staff = await make_token(core, "calltaker")
    _fail_in_transaction(monkeypatch)
    before = await footprint(core)
    r = await send(client, form(REPORT, ("good.jpg", JPEG)), {"staff": staff}, "")
    assert r.status == 500
    assert await footprint(core) == before


# ------------------------------------------------------------------ item 14: text no input may hold

DEEP = b"[" * 10_000 + b"]" * 10_000
DEFECT_14: list[Case] = [
    Case(
        "json-nul",
        create(report(description="rác\x00thải")),
        400,
        "forbidden-character",
        "description",
    ),
    Case(
        "json-nul-nested",
        create(report(reporter=reporter(name="An\x00"))),
        400,
        "forbidden-character",
        "reporter.name",
    ),
    Case(
        "json-escape-character",
        create(report(title="Rác\x1b[31m")),
        400,
        "forbidden-character",
        "title",
    ),
    Case(
        "json-c1-control",
        create(report(location=loc(address="Hẻm\x8512"))),
        400,
        "forbidden-character",
        "location.address",
    ),
    Case(
        "json-lone-surrogate",
        Req(raw=json.dumps(report(title="Rác")).replace("R\\u00e1c", "\\ud800", 1).encode()),
        400,
        "forbidden-character",
        "title",
    ),
    Case(
        "json-nul-in-key",
        create(report(location=loc(**{"a\x00": 1}))),
        400,
        "forbidden-character",
        "location",
    ),
    Case(
        "json-nul-in-reply",
        Req(path="/api/v1/incidents/{ref}/replies", json={"body": "ok\x00"}, setup="incident"),
        400,
        "forbidden-character",
        "body",
    ),
    Case(
        "form-nul-in-report-part",
        form(json.dumps(report(description="x\x00"))),
        400,
        "forbidden-character",
        "description",
    ),
    Case(
        "form-nul-field",
        form(REPORT, fields=(("note", "x\x00y"),)),
        400,
        "forbidden-character",
        "note",
    ),
    Case(
        "form-nul-in-file-name",
        Req(  # RFC 5987's filename*= can carry what a plain header may not
            raw=b"--xyz\r\nContent-Disposition: form-data; name=photo; "
            b"filename*=utf-8''a%00.png\r\n\r\n" + PNG + b"\r\n--xyz--\r\n",
            content_type="multipart/form-data; boundary=xyz",
        ),
        400,
        "forbidden-character",
        "photo",
    ),
    Case("query-nul", get("q=r%00c"), 400, "forbidden-character", "q"),
    Case("query-nul-name", get("r%00c=1"), 400, "forbidden-character", "query parameter"),
    Case(
        "path-nul",
        Req(method="GET", path="/api/v1/incidents/PA-%00"),
        400,
        "forbidden-character",
        "ref",
    ),
    Case("json-10000-deep", Req(raw=DEEP), 400, "json-too-deep", "nested"),
    Case(
        "json-10000-deep-in-a-field",
        Req(raw=b'{"category": ' + DEEP + b"}"),
        400,
        "json-too-deep",
        "nested",
    ),
    Case("form-10000-deep-report", form(DEEP.decode()), 400, "json-too-deep", "report"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in DEFECT_14])
async def test_defect_14_control_characters_and_deep_json_are_refused(
    case: Case, client: Any, core: Core
) -> None:
    """NUL (PostgreSQL's text cannot hold it) and the other controls, and JSON deep enough to
    hit Python's recursion limit, were 500s: now a 400 naming the field, and nothing written."""
    await test_bad_request_is_refused_and_writes_nothing(case, client, core)


async def test_defect_14_free_text_keeps_its_lines_and_open311_refuses_nul(
    client: Any, core: Core
) -> None:
    """Newline, tab and carriage return are free text's own: accepted and stored as sent.
    Open311's form fields go through the same check (its own error format)."""
    staff = await make_token(core, "calltaker")
    text = "Dòng một\r\nDòng hai\tcột"
    r = await client.post("/api/v1/incidents", json=report(description=text), headers=auth(staff))
    assert r.status == 201, await r.text()
    assert (await r.json())["description"] == text

    before = await footprint(core)
    r = await client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": staff,
            "service_code": "moi_truong.rac_thai",
            "address_id": "25210",
            "description": "rác\x00",
        },
    )
    assert r.status == 400, await r.text()
    assert "description" in (await r.json())[0]["description"]
    assert await footprint(core) == before


# ------------------------------------------------------------------ item 17: what fuzzing found

BAD_PART = (
    b'--xyz\r\nContent-Disposition: form-data; name="\x02"\r\n\r\nx\r\n--xyz--\r\n',
    b"--xyz\r\n[{'\x01'\r\n\r\nx\r\n--xyz--\r\n",
    b"--xyz\r\n\r\nno headers at all\r\n--xyz--\r\n",
)


@pytest.mark.parametrize("body", BAD_PART, ids=["control-in-name", "not-a-header", "no-headers"])
@pytest.mark.parametrize("setup", ["", "incident"], ids=["create", "attach"])
async def test_defect_17_multipart_part_with_bad_headers_is_a_400(
    body: bytes, setup: str, client: Any, core: Core
) -> None:
    """A part whose headers HTTP's grammar refuses raised aiohttp's own parser error, which
    the reader did not catch: a 500 on both multipart routes. Now a 400, nothing written."""
    path = "/api/v1/incidents/{ref}/attachments" if setup else "/api/v1/incidents"
    case = Case(
        "bad-part",
        Req(path=path, raw=body, content_type="multipart/form-data; boundary=xyz", setup=setup),
        400,
        "malformed-multipart",
        "multipart",
    )
    await test_bad_request_is_refused_and_writes_nothing(case, client, core)
