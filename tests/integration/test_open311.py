"""Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2) under /open311/v2, on SQLite and
PostgreSQL: service discovery, creating and reading service requests, the spec's error format
(a list of {code, description}) and the XML variants."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ioc_core.config import Settings
from ioc_core.incidents.models import Incident
from ioc_core.runtime import Core
from tests.conftest import make_settings
from tests.helpers import auth, make_token

BASE = "/open311/v2"
CODE = re.compile(r"^PA-\d{4}-\d{6}$")
SERVICE_KEYS = {
    "service_code",
    "service_name",
    "description",
    "metadata",
    "type",
    "keywords",
    "group",
}
REQUEST_KEYS = {
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
}
MAX_BODY = 64 * 1024


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Overrides conftest's with a small body limit, so the 413 case stays cheap."""
    return make_settings(tmp_path / "data", database_url, max_body_bytes=MAX_BODY)


def form(key: str | None, /, **over: str | None) -> dict[str, str]:
    """A valid POST requests body; a keyword set to None drops that parameter."""
    body: dict[str, str | None] = {
        "api_key": key,
        "service_code": "moi_truong.rac_thai",
        "lat": "11.5349",
        "long": "106.8832",
        "address_string": "Hẻm 12, Đồng Xoài",
        "email": "an@example.vn",
        "first_name": "An",
        "last_name": "Nguyễn",
        "phone": "0912345678",
        "description": "Rác thải đổ trộm đầu hẻm",
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


async def post(client: Any, data: dict[str, str], fmt: str = "json", **kw: Any) -> Any:
    return await client.post(f"{BASE}/requests.{fmt}", data=data, **kw)


async def create(client: Any, key: str, **over: str | None) -> dict[str, Any]:
    r = await post(client, form(key, **over))
    assert r.status in (200, 201), await r.text()
    body = await r.json()
    assert isinstance(body, list) and len(body) == 1, body
    return dict(body[0])


async def spec_error(r: Any, status: int) -> str:
    """Assert the spec's JSON error format and return the description."""
    text = await r.text()
    assert r.status == status, text
    assert r.content_type == "application/json", r.content_type
    body = await r.json()
    assert isinstance(body, list) and len(body) == 1, body
    assert set(body[0]) == {"code", "description"}, body
    assert body[0]["code"] == status and body[0]["description"], body
    return str(body[0]["description"])


async def incident_count(core: Core) -> int:
    async with core.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Incident)) or 0)


async def xml(r: Any, status: int = 200) -> ET.Element:
    raw = await r.read()
    assert r.status == status, raw
    assert r.content_type == "text/xml", r.content_type
    assert raw.startswith(b"<?xml") and b'encoding="utf-8"' in raw[:60].lower()
    return ET.fromstring(raw)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------ services


async def test_services_lists_leaf_categories_in_either_language(client: Any) -> None:
    r = await client.get(f"{BASE}/services.json")
    assert r.status == 200, await r.text()
    services = await r.json()
    assert isinstance(services, list) and services
    for s in services:
        assert set(s) == SERVICE_KEYS, s
        assert s["metadata"] is False and s["type"] == "realtime"
        assert isinstance(s["keywords"], str) and s["service_name"] and s["description"]

    cats = (await (await client.get("/api/v1/categories")).json())["items"]
    parents = {c["parent"] for c in cats if c["parent"]}
    leaves = {c["code"] for c in cats if c["code"] not in parents}
    assert {s["service_code"] for s in services} == leaves
    assert "moi_truong" not in leaves and "khac" in leaves  # a heading is not requestable

    by_code = {s["service_code"]: s for s in services}
    rac = by_code["moi_truong.rac_thai"]
    assert rac["service_name"] == "Rác thải, vệ sinh môi trường"
    assert rac["group"] == "moi_truong" and "rác" in rac["keywords"]

    en = await (
        await client.get(f"{BASE}/services.json", headers={"Accept-Language": "en-GB,en;q=0.9"})
    ).json()
    assert {s["service_code"]: s["service_name"] for s in en}["moi_truong.rac_thai"] == (
        "Waste and sanitation"
    )

    r = await client.get(f"{BASE}/services.json?jurisdiction_id=ioc.local")
    assert r.status == 200 and len(await r.json()) == len(services)
    r = await client.get(f"{BASE}/services.json?jurisdiction_id=elsewhere.gov")
    assert "elsewhere.gov" in await spec_error(r, 404)


async def test_service_definition(client: Any) -> None:
    r = await client.get(f"{BASE}/services/moi_truong.rac_thai.json")
    assert r.status == 200, await r.text()
    assert await r.json() == {"service_code": "moi_truong.rac_thai", "attributes": []}
    r = await client.get(f"{BASE}/services/khong_co.json")
    assert "khong_co" in await spec_error(r, 404)


# ------------------------------------------------------------------ POST requests


async def test_post_request_then_read_it_back(client: Any, core: Core) -> None:
    key = await make_token(core, "service", name="portal")
    before = datetime.now(UTC)
    created = await create(
        client, key, media_url="https://example.vn/p.jpg", **{"attribute[ward]": "Tân Phú"}
    )
    code = created["service_request_id"]
    assert CODE.match(code), code
    assert code in created["service_notice"] and "Mã tra cứu" in created["service_notice"]

    r = await client.get(f"{BASE}/requests/{code}.json")
    assert r.status == 200, await r.text()
    records = await r.json()
    assert isinstance(records, list) and len(records) == 1
    rec = records[0]
    assert set(rec) >= REQUEST_KEYS, set(rec) ^ REQUEST_KEYS
    assert rec["service_request_id"] == code and rec["status"] == "open"
    assert rec["service_code"] == "moi_truong.rac_thai"
    assert rec["service_name"] == "Rác thải, vệ sinh môi trường"
    assert rec["lat"] == pytest.approx(11.5349) and rec["long"] == pytest.approx(106.8832)
    assert rec["address"] == "Hẻm 12, Đồng Xoài"
    assert "Rác thải đổ trộm" in rec["description"] and "p.jpg" in rec["description"]
    requested = datetime.fromisoformat(rec["requested_datetime"])
    assert requested.tzinfo is not None, "the spec requires a time zone on every date-time"
    assert before - timedelta(seconds=5) <= requested <= datetime.now(UTC) + timedelta(seconds=5)
    assert datetime.fromisoformat(rec["expected_datetime"]) > requested

    # The reporter's details reach the incident, for staff.
    staff = await make_token(core, "calltaker")
    inc = await (await client.get(f"/api/v1/incidents/{code}", headers=auth(staff))).json()
    assert inc["channel"] == "web" and inc["code"] == code
    assert inc["reporters"][0]["name"] == "An Nguyễn"
    assert inc["reporters"][0]["phone"] == "0912345678"
    assert inc["reporters"][0]["email"] == "an@example.vn"

    # An area code alone places a request too (address_id).
    by_area = await create(client, key, lat=None, long=None, address_id="25210")
    r = await client.get(f"{BASE}/requests/{by_area['service_request_id']}.json")
    rec = (await r.json())[0]
    assert rec["address_id"] == "25210" and rec["lat"] is None


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ({"api_key": None}, 403, ["api_key"]),
        ({"api_key": ""}, 403, ["api_key"]),
        ({"api_key": "ioc_not-a-real-key"}, 401, ["token"]),
        ({"api_key": "@agency"}, 403, ["agency"]),
        ({"service_code": "khong_co"}, 404, ["khong_co"]),
        ({"service_code": None}, 422, ["service_code"]),
        ({"lat": None, "long": None}, 422, ["lat", "long"]),
        ({"long": None}, 422, ["lat", "long"]),
        ({"lat": "north"}, 422, ["lat"]),
        ({"lat": "91"}, 422, ["lat"]),
        ({"long": "nan"}, 422, ["lon"]),
        ({"colour": "red"}, 422, ["colour"]),
        ({"jurisdiction_id": "elsewhere.gov"}, 404, ["jurisdiction_id"]),
        ({"email": "an at example"}, 422, ["email"]),
        ({"phone": "09-ab"}, 422, ["phone"]),
        ({"description": "d" * 5001}, 422, ["description"]),
        ({"address_id": "99999", "lat": None, "long": None}, 422, ["area_code"]),
    ],
    ids=lambda v: (
        "-".join(f"{k}={str(x)[:12]}" for k, x in v.items()) if isinstance(v, dict) else None
    ),
)
async def test_post_request_errors_use_the_spec_format(
    client: Any, core: Core, case: dict[str, str | None], status: int, words: list[str]
) -> None:
    key = await make_token(core, "service", name="portal")
    over = dict(case)
    if over.get("api_key") == "@agency":
        over["api_key"] = await make_token(core, "agency", agency="SNNMT")
    r = await post(client, form(key, **over))
    description = await spec_error(r, status)
    for word in words:
        assert word in description, description
    assert await incident_count(core) == 0


async def test_post_request_needs_a_form_body(client: Any, core: Core) -> None:
    key = await make_token(core, "service", name="portal")
    r = await client.post(f"{BASE}/requests.json", json=form(key))
    assert "form" in await spec_error(r, 415)
    assert await incident_count(core) == 0


async def test_post_request_body_over_the_limit(client: Any, core: Core) -> None:
    key = await make_token(core, "service", name="portal")
    r = await post(client, form(key, description="d" * (MAX_BODY + 1)))
    assert "too large" in await spec_error(r, 413)
    assert await incident_count(core) == 0


async def test_duplicate_request_names_the_primary(client: Any, core: Core) -> None:
    key = await make_token(core, "service", name="zalo")
    first = await create(client, key)
    # ~15 m away, same category group, within the window: a duplicate.
    second = await create(client, key, lat="11.5350", long="106.8833")
    primary = first["service_request_id"]
    assert second["service_request_id"] != primary
    assert primary in second["service_notice"]
    assert second["service_request_id"] in second["service_notice"]
    third = await (
        await post(
            client,
            form(key, lat="11.5350", long="106.8831", service_code="moi_truong.tieng_on"),
            headers={"Accept-Language": "en"},
        )
    ).json()
    assert f"matches report {primary}" in third[0]["service_notice"]
    staff = await make_token(core, "supervisor")
    p = await (await client.get(f"/api/v1/incidents/{primary}", headers=auth(staff))).json()
    assert p["reporter_count"] == 3

    # A merged duplicate follows its primary: open while the primary is open, then closed.
    dup = second["service_request_id"]
    rec = (await (await client.get(f"{BASE}/requests/{dup}.json")).json())[0]
    assert rec["status"] == "open" and primary in rec["status_notes"]
    await _resolve(client, core, primary, close=True)
    rec = (await (await client.get(f"{BASE}/requests/{dup}.json")).json())[0]
    assert rec["status"] == "closed"


# ------------------------------------------------------------------ GET requests


async def _resolve(client: Any, core: Core, code: str, *, close: bool) -> None:
    staff = await make_token(core, "supervisor")
    agency = await make_token(core, "agency", agency="SNNMT")
    steps = [
        (staff, {"action": "verify"}),
        (staff, {"action": "assign", "agency": "SNNMT"}),
        (agency, {"action": "start"}),
        (agency, {"action": "resolve", "note": "Đã thay bóng đèn"}),
    ] + ([(staff, {"action": "close"})] if close else [])
    for token, body in steps:
        r = await client.post(
            f"/api/v1/incidents/{code}/transitions", json=body, headers=auth(token)
        )
        assert r.status == 200, (body, await r.text())


async def test_list_requests_filters(client: Any, core: Core) -> None:
    key = await make_token(core, "service", name="portal")
    start = datetime.now(UTC) - timedelta(minutes=1)
    a = (await create(client, key, lat="11.50", long="106.80"))["service_request_id"]
    b = (await create(client, key, service_code="ha_tang.chieu_sang", lat="11.60", long="106.90"))[
        "service_request_id"
    ]
    c = (
        await create(
            client, key, service_code="giao_thong.den_tin_hieu", lat="11.70", long="107.00"
        )
    )["service_request_id"]
    await _resolve(client, core, b, close=False)

    async def codes(**params: str) -> list[str]:
        r = await client.get(f"{BASE}/requests.json", params=params)
        assert r.status == 200, await r.text()
        return [x["service_request_id"] for x in await r.json()]

    assert set(await codes()) == {a, b, c}
    assert set(await codes(status="open")) == {a, c}
    assert await codes(status="closed") == [b]  # resolved counts as closed in Open311
    assert set(await codes(status="open,closed")) == {a, b, c}
    assert await codes(service_code="ha_tang.chieu_sang") == [b]
    assert await codes(service_code="ha_tang.chieu_sang", status="open") == []
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert set(await codes(start_date=iso(start), end_date=iso(later))) == {a, b, c}
    assert await codes(start_date=iso(later)) == []
    assert await codes(end_date=iso(start)) == []
    assert await codes(service_request_id=f"{c},{a}") == [c, a]
    assert await codes(service_request_id=f"{a},PA-1999-999999") == [a]
    assert await codes(jurisdiction_id="ioc.local", status="closed") == [b]

    rec = (await (await client.get(f"{BASE}/requests/{b}.json")).json())[0]
    assert rec["status"] == "closed" and rec["service_code"] == "ha_tang.chieu_sang"
    agencies = (await (await client.get("/api/v1/agencies")).json())["items"]
    name = next(x["name"] for x in agencies if x["code"] == "SNNMT")
    assert rec["agency_responsible"] == name["vi"]
    en = await client.get(f"{BASE}/requests/{b}.json", headers={"Accept-Language": "en"})
    assert (await en.json())[0]["agency_responsible"] == name["en"]
    await _resolve_close(client, core, b)
    rec = (await (await client.get(f"{BASE}/requests/{b}.json")).json())[0]
    assert rec["status"] == "closed"


async def _resolve_close(client: Any, core: Core, code: str) -> None:
    sup = await make_token(core, "supervisor")
    r = await client.post(
        f"/api/v1/incidents/{code}/transitions", json={"action": "close"}, headers=auth(sup)
    )
    assert r.status == 200, await r.text()


@pytest.mark.parametrize(
    ("query", "status", "word"),
    [
        ("status=pending", 422, "status"),
        ("start_date=yesterday", 422, "start_date"),
        ("end_date=2026-13-45", 422, "end_date"),
        ("colour=red", 422, "colour"),
        ("jurisdiction_id=elsewhere.gov", 404, "jurisdiction_id"),
        ("service_code=khong_co", 422, "khong_co"),
        ("api_key=ioc_not-a-real-key", 401, "token"),
    ],
)
async def test_list_requests_errors(client: Any, query: str, status: int, word: str) -> None:
    r = await client.get(f"{BASE}/requests.json?{query}")
    assert word in await spec_error(r, status)


async def test_get_unknown_request(client: Any) -> None:
    r = await client.get(f"{BASE}/requests/PA-1999-999999.json")
    assert "PA-1999-999999" in await spec_error(r, 404)


async def test_status_filter_agrees_with_the_status_shown(client: Any, core: Core) -> None:
    key = await make_token(core, "service", name="zalo")
    first = (await create(client, key))["service_request_id"]
    dup = (await create(client, key, lat="11.5350", long="106.8833"))["service_request_id"]
    shown = {
        x["service_request_id"]: x["status"]
        for x in await (await client.get(f"{BASE}/requests.json")).json()
    }
    assert shown == {first: "open", dup: "open"}
    for status in ("open", "closed"):
        r = await client.get(f"{BASE}/requests.json", params={"status": status})
        listed = {x["service_request_id"]: x["status"] for x in await r.json()}
        assert listed == {c: s for c, s in shown.items() if s == status}, status


# ------------------------------------------------------------------ formats


async def test_xml_variants(client: Any, core: Core) -> None:
    key = await make_token(core, "service", name="portal")

    root = await xml(await client.get(f"{BASE}/services.xml"))
    assert root.tag == "services" and len(root) > 10
    assert {el.tag for el in root} == {"service"}
    rac = next(el for el in root if el.findtext("service_code") == "moi_truong.rac_thai")
    assert {child.tag for child in rac} == SERVICE_KEYS
    assert rac.findtext("metadata") == "false" and rac.findtext("type") == "realtime"
    assert rac.findtext("service_name") == "Rác thải, vệ sinh môi trường"

    root = await xml(await client.get(f"{BASE}/services/moi_truong.rac_thai.xml"))
    assert root.tag == "service_definition"
    assert root.findtext("service_code") == "moi_truong.rac_thai"
    assert root.find("attributes") is not None

    root = await xml(await post(client, form(key), fmt="xml"), status=201)
    assert root.tag == "service_requests" and [el.tag for el in root] == ["request"]
    code = root.findtext("request/service_request_id") or ""
    assert CODE.match(code) and code in (root.findtext("request/service_notice") or "")

    root = await xml(await client.get(f"{BASE}/requests/{code}.xml"))
    assert root.tag == "service_requests" and [el.tag for el in root] == ["request"]
    req = root.find("request")
    assert req is not None and {child.tag for child in req} >= REQUEST_KEYS
    assert req.findtext("status") == "open" and req.findtext("service_request_id") == code
    assert float(req.findtext("lat") or "nan") == pytest.approx(11.5349)
    assert float(req.findtext("long") or "nan") == pytest.approx(106.8832)
    assert datetime.fromisoformat(req.findtext("requested_datetime") or "").tzinfo is not None

    root = await xml(await client.get(f"{BASE}/requests.xml?status=open"))
    assert root.tag == "service_requests"
    assert [el.findtext("service_request_id") for el in root] == [code]

    # Errors in XML: errors/error with code and description.
    for r, status in (
        (await client.get(f"{BASE}/requests/PA-1999-999999.xml"), 404),
        (await post(client, form(None), fmt="xml"), 403),
        (await post(client, form("ioc_not-a-real-key"), fmt="xml"), 401),
        (await client.get(f"{BASE}/services/khong_co.xml"), 404),
    ):
        root = await xml(r, status=status)
        assert root.tag == "errors" and [el.tag for el in root] == ["error"]
        assert root.findtext("error/code") == str(status)
        assert root.findtext("error/description")


async def test_unknown_format_is_not_found(client: Any, core: Core) -> None:
    key = await make_token(core, "service", name="portal")
    code = (await create(client, key))["service_request_id"]
    for path in (
        "services.csv",
        "services/moi_truong.rac_thai.csv",
        "requests.csv",
        f"requests/{code}.csv",
    ):
        r = await client.get(f"{BASE}/{path}")
        assert "csv" in await spec_error(r, 404), path
    r = await post(client, form(key), fmt="csv")
    assert "csv" in await spec_error(r, 404)
    assert await incident_count(core) == 1  # the csv POST wrote nothing
    # Errors the router raises under /open311/v2/ use the spec's format too.
    await spec_error(await client.get(f"{BASE}/nothing-here.json"), 404)
    await spec_error(await client.delete(f"{BASE}/requests.json"), 405)
