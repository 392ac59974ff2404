"""What a request may cost the hub: SQL statements per Open311 page, bytes read before a
caller is known to be refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from ioc_core.access.roles import SYSTEM, Principal, Role
from ioc_core.incidents import commands, reporting
from ioc_core.incidents.attachments import Upload
from ioc_core.incidents.schemas import EntryIn, MergeIn, ReportIn
from ioc_core.runtime import Core
from tests.helpers import image_bytes, make_token, report

STAFF = Principal(role=Role.SUPERVISOR, name="Giám sát")


# What reading incidents touches. Other work of the hub (the bots' delivery loop, the outbox
# relay) polls its own tables meanwhile and is not the request's cost.
INCIDENT_TABLES = re.compile(
    r"\b(FROM|JOIN|INTO|UPDATE)\s+(incidents|incident_entries|attachments|reporters|ratings"
    r"|timeline|access_log|api_tokens)\b"
)


@contextmanager
def counting(core: Core) -> Iterator[list[str]]:
    """Every SQL statement on the incident tables the engine sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if INCIDENT_TABLES.search(statement):
            seen.append(statement)

    event.listen(core.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(core.engine.sync_engine, "before_cursor_execute", record)


async def add_incidents(core: Core, n: int, start: int) -> list[str]:
    """`n` public incidents, each with what a record shows: replies, a photo, and a merged
    duplicate of the first one."""
    codes = []
    for i in range(start, start + n):
        body = report(location={"lat": 10.0 + i / 10, "lon": 106.0})
        d = await reporting.report_incident(
            core,
            ReportIn.model_validate(body),
            principal=SYSTEM,
            uploads=[Upload(filename="a.png", data=image_bytes())],
        )
        for text in ("Đã tiếp nhận", "Đang xử lý"):
            await commands.add_entry(
                core, d.incident.id, EntryIn(body=text), kind="reply", principal=STAFF
            )
        codes.append(d.incident.code)
    await commands.merge(core, codes[-1], MergeIn(primary=codes[0], note=""), principal=STAFF)
    return codes


async def statements(core: Core, client: Any, url: str) -> tuple[list[list[str]], list[Any]]:
    with counting(core) as seen:
        resp = await client.get(url)
        assert resp.status == 200, await resp.text()
        items = await resp.json()
    return [s.split(None, 4)[:4] for s in seen], items


async def test_defect_15_open311_list_costs_the_same_queries_whatever_its_size(
    core: Core, client: Any
) -> None:
    small = await add_incidents(core, 3, 0)
    # Background work (the relay's polling, consumers of the events) would be counted too.
    await core.relay.close()
    await core.bus.wait_idle()  # type: ignore[attr-defined]
    few, items = await statements(core, client, "/open311/v2/requests.json")
    assert len(items) == 3
    more = await add_incidents(core, 37, 100)
    await core.relay.drain()
    await core.bus.wait_idle()  # type: ignore[attr-defined]
    big = small + more
    many, items = await statements(core, client, "/open311/v2/requests.json")
    assert len(items) == 40
    assert many == few, (few, many)
    assert len(many) <= 4, many
    notes = {r["service_request_id"]: r["status_notes"] for r in items}
    assert notes.pop(small[-1]) == f"Đang xử lý: {small[0]}"  # merged: follows its primary
    assert notes.pop(more[-1]) == f"Đang xử lý: {more[0]}"
    assert set(notes.values()) == {"Đang xử lý"}
    assert all(r["media_url"] for r in items)

    by_code, items = await statements(
        core, client, f"/open311/v2/requests.json?service_request_id={','.join(big)}"
    )
    assert [r["service_request_id"] for r in items] == big
    three, _ = await statements(
        core, client, f"/open311/v2/requests.json?service_request_id={','.join(small)}"
    )
    assert by_code == three, (three, by_code)


async def refused_while_sending(
    client: Any, path: str, headers: dict[str, str], *, length: int = 20_000_000
) -> str:
    """Send a request's headers and the first 64 KiB of a `length`-byte body, then read the
    answer: a server that checks the caller first answers now; one that reads the body
    first waits for bytes that never come."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\n{head}\r\n".encode()
        )
        writer.write(b'--b\r\nContent-Disposition: form-data; name="photo"; filename="a.png"')
        writer.write(b"\r\n\r\n" + b"\0" * 64 * 1024)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout=5)
        return status.decode().strip()
    finally:
        writer.close()


async def test_defect_15_unauthorised_uploads_are_refused_before_the_body_is_read(
    core: Core, client: Any
) -> None:
    d = await reporting.report_incident(core, ReportIn.model_validate(report()), principal=SYSTEM)
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    citizen = await make_token(core, "citizen", subject="zalo:someone-else")
    agency = await make_token(core, "agency", agency="SXD")
    cases = [
        # Anonymous callers may neither report nor add photos.
        ("/api/v1/incidents", multipart, "403"),
        (f"/api/v1/incidents/{d.incident.code}/attachments", multipart, "403"),
        # A citizen adds photos to their own reports only.
        (
            f"/api/v1/incidents/{d.incident.code}/attachments",
            {**multipart, "Authorization": f"Bearer {citizen}"},
            "403",
        ),
        # An agency sees (and adds to) only what is assigned to it.
        (
            f"/api/v1/incidents/{d.incident.code}/attachments",
            {**multipart, "Authorization": f"Bearer {agency}"},
            "404",
        ),
        ("/api/v1/incidents", {**multipart, "Authorization": "Bearer nope"}, "401"),
        (f"/api/v1/incidents/{d.incident.code}/notes", {"Content-Type": "application/json"}, "403"),
        ("/open311/v2/requests.json?api_key=nope", multipart, "401"),
    ]
    for path, headers, status in cases:
        line = await refused_while_sending(client, path, headers)
        assert line.split()[1:2] == [status], (path, headers, line)

    # Open311 takes its key in the form itself: the form is then capped, not read to 20 MB.
    line = await refused_while_sending(
        client,
        "/open311/v2/requests.json",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert line.split()[1:2] == ["413"], line
