"""`CoreApi`: commands that need an answer, for packages outside the core."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aiohttp

from ioc_core.access.roles import ANONYMOUS, Principal, Role
from ioc_core.catalogue.service import category_json, list_areas
from ioc_core.errors import IocError
from ioc_core.http import parse_model
from ioc_core.incidents import commands, queries, reporting
from ioc_core.incidents.attachments import Upload
from ioc_core.incidents.keys import FIELD as IDEMPOTENCY_KEY
from ioc_core.incidents.schemas import EntryIn, RatingIn, ReportIn, TransitionIn
from ioc_core.incidents.views import render_rating
from ioc_core.runtime import Core


class CoreApiError(Exception):
    """The core refused a command; `error_id` and `status` say why (same as the REST API)."""

    def __init__(self, status: int, error_id: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {error_id}: {message}")
        self.status, self.error_id, self.message, self.details = status, error_id, message, details


class CoreApi(Protocol):
    async def report_incident(
        self,
        report: Mapping[str, Any],
        photos: Sequence[tuple[str, bytes]] = (),
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """File a report. `idempotency_key`: the caller's name for this report (a chat's
        inbound message, a call's draft): sent again with the same key, the report is not
        filed twice and the first one's incident comes back (see incidents/keys.py)."""
        ...

    async def get_incident(self, ref: str) -> dict[str, Any]: ...

    async def transition(
        self, ref: str, action: str, *, note: str = "", agency: str | None = None
    ) -> dict[str, Any]: ...

    async def add_reply(self, ref: str, body: str) -> dict[str, Any]: ...

    async def add_note(self, ref: str, body: str) -> dict[str, Any]:
        """An internal note (staff only, never shown to the public)."""
        ...

    async def category_keywords(self) -> dict[str, list[str]]:
        """Keywords (vi/en) of every leaf category, by code: for suggesting a category."""
        ...

    async def categories(self) -> list[dict[str, Any]]:
        """The catalogue's categories as `GET /categories` lists them."""
        ...

    async def caller_incidents(self, phone: str) -> dict[str, Any]:
        """Open incidents reported from `phone`: {"open": n, "latest": code or None}."""
        ...

    async def rate(
        self, ref: str, score: int, *, channel: str, channel_user_id: str, comment: str = ""
    ) -> dict[str, Any]:
        """The reporter known on `channel` as `channel_user_id` rates the handling (1-5)."""
        ...

    async def find_areas(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Areas (wards, communes, ...) whose name matches `query`, best first."""
        ...

    async def timeline(self, ref: str) -> list[dict[str, Any]]:
        """The incident's timeline as this API's principal may see it, oldest first."""
        ...

    def calltaker(self, name: str) -> CoreApi:
        """The same API acting as call-taker `name` (drafts are created as the agent who
        answered the call)."""
        ...

    def public(self) -> CoreApi:
        """The same API as the public sees it (status look-ups shown to citizens)."""
        ...


OPEN_PHASES = ("open", "active")


def _rating(score: int, *, channel: str, channel_user_id: str, comment: str) -> dict[str, Any]:
    return {
        "score": score,
        "comment": comment,
        "channel": channel,
        "channel_user_id": channel_user_id,
    }


def leaf_keywords(categories: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """{code: keywords} of the categories nobody names as parent (a suggestion should be as
    specific as the catalogue allows). Keywords come comma-separated or as a list."""
    parents = {c.get("parent") for c in categories}
    out: dict[str, list[str]] = {}
    for c in categories:
        raw = c.get("keywords") or []
        words = raw.split(",") if isinstance(raw, str) else list(raw)
        words = [w.strip() for w in words if w.strip()]
        if c["code"] not in parents and words:
            out[c["code"]] = words
    return out


class InProcessCoreApi:
    """Calls the service layer directly, as `principal`."""

    def __init__(self, *, core: Core, principal: Principal) -> None:
        self._core = core
        self._principal = principal

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except IocError as err:
            raise CoreApiError(err.status, err.error_id, err.message, err.details) from err

    async def report_incident(
        self,
        report: Mapping[str, Any],
        photos: Sequence[tuple[str, bytes]] = (),
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            data = parse_model(ReportIn, dict(report))
            uploads = [Upload(filename=n, data=b) for n, b in photos]
            d = await reporting.report_incident(
                self._core,
                data,
                principal=self._principal,
                uploads=uploads,
                idempotency_key=idempotency_key,
            )
            return await queries.render(self._core, d, principal=self._principal)

        result: dict[str, Any] = await self._call(go())
        return result

    async def get_incident(self, ref: str) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            d = await queries.get_detail(self._core, ref, principal=self._principal)
            return await queries.render(self._core, d, principal=self._principal)

        result: dict[str, Any] = await self._call(go())
        return result

    async def transition(
        self, ref: str, action: str, *, note: str = "", agency: str | None = None
    ) -> dict[str, Any]:
        cmd = TransitionIn(action=action, note=note, agency=agency)
        inc = await self._call(commands.transition(self._core, ref, cmd, principal=self._principal))
        return await self.get_incident(inc.id)

    async def add_reply(self, ref: str, body: str) -> dict[str, Any]:
        return await self._entry(ref, body, "reply")

    async def add_note(self, ref: str, body: str) -> dict[str, Any]:
        return await self._entry(ref, body, "note")

    async def _entry(self, ref: str, body: str, kind: str) -> dict[str, Any]:
        entry = await self._call(
            commands.add_entry(
                self._core, ref, EntryIn(body=body), kind=kind, principal=self._principal
            )
        )
        return {
            "id": entry.id,
            "kind": entry.kind,
            "body": entry.body,
            "created_at": entry.created_at.isoformat(),
        }

    async def category_keywords(self) -> dict[str, list[str]]:
        return leaf_keywords(await self.categories())

    async def categories(self) -> list[dict[str, Any]]:
        return [category_json(c) for c in await self._core.catalogue.categories()]

    async def caller_incidents(self, phone: str) -> dict[str, Any]:
        f = queries.ListFilter(phase=list(OPEN_PHASES), reporter_phone=phone, limit=1)
        rows, _cursor, total = await self._call(
            queries.list_incidents(self._core, f, principal=self._principal, with_total=True)
        )
        return {"open": total or 0, "latest": rows[0].code if rows else None}

    async def rate(
        self, ref: str, score: int, *, channel: str, channel_user_id: str, comment: str = ""
    ) -> dict[str, Any]:
        body = _rating(score, channel=channel, channel_user_id=channel_user_id, comment=comment)

        async def go() -> dict[str, Any]:
            cmd = parse_model(RatingIn, body)
            r = await commands.rate(self._core, ref, cmd, principal=self._principal)
            return render_rating(r)

        result: dict[str, Any] = await self._call(go())
        return result

    async def find_areas(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        async with self._core.sessions() as s:
            rows, _total = await list_areas(s, parent=None, q=query, limit=limit, offset=0)
        return [{"code": a.code, "name": a.name, "kind": a.kind, "level": a.level} for a in rows]

    async def timeline(self, ref: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call(
            queries.render_timeline(self._core, ref, principal=self._principal)
        )
        return result

    def calltaker(self, name: str) -> InProcessCoreApi:
        return InProcessCoreApi(
            core=self._core, principal=Principal(role=Role.CALLTAKER, name=name)
        )

    def public(self) -> InProcessCoreApi:
        return InProcessCoreApi(core=self._core, principal=ANONYMOUS)


class HttpCoreApi:
    """The same commands over the REST API, for roles running on other machines."""

    def __init__(
        self, *, base_url: str, token: str | None, session: aiohttp.ClientSession | None = None
    ) -> None:
        """`token=None` acts as the public role."""
        self._root = base_url.rstrip("/")
        self._base = self._root + "/api/v1"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = session
        self._own_session = session is None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> dict[str, Any]:
        http = await self._http()
        sent = {**self._headers, **(headers or {})}
        async with http.request(method, self._base + path, headers=sent, **kw) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                raise CoreApiError(
                    r.status,
                    data.get("error_id", "http-error"),
                    data.get("message", r.reason or ""),
                    data.get("details"),
                )
            result: dict[str, Any] = data
            return result

    async def report_incident(
        self,
        report: Mapping[str, Any],
        photos: Sequence[tuple[str, bytes]] = (),
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {IDEMPOTENCY_KEY: idempotency_key} if idempotency_key is not None else {}
        if not photos:
            return await self._request("POST", "/incidents", headers=headers, json=dict(report))
        form = aiohttp.FormData()
        form.add_field("report", json.dumps(dict(report)), content_type="application/json")
        for name, data in photos:
            form.add_field("photo", data, filename=name)
        return await self._request("POST", "/incidents", headers=headers, data=form)

    async def get_incident(self, ref: str) -> dict[str, Any]:
        return await self._request("GET", f"/incidents/{ref}")

    async def transition(
        self, ref: str, action: str, *, note: str = "", agency: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"action": action, "note": note}
        if agency:
            body["agency"] = agency
        return await self._request("POST", f"/incidents/{ref}/transitions", json=body)

    async def add_reply(self, ref: str, body: str) -> dict[str, Any]:
        return await self._request("POST", f"/incidents/{ref}/replies", json={"body": body})

    async def add_note(self, ref: str, body: str) -> dict[str, Any]:
        return await self._request("POST", f"/incidents/{ref}/notes", json={"body": body})

    async def category_keywords(self) -> dict[str, list[str]]:
        return leaf_keywords(await self.categories())

    async def categories(self) -> list[dict[str, Any]]:
        data = await self._request("GET", "/categories")
        return list(data.get("items", []))

    async def caller_incidents(self, phone: str) -> dict[str, Any]:
        query = [("reporter_phone", phone), ("limit", "1"), ("total", "true")]
        query += [("phase", p) for p in OPEN_PHASES]
        data = await self._request("GET", "/incidents", params=query)
        items = data.get("items", [])
        return {"open": data.get("total", 0), "latest": items[0]["code"] if items else None}

    async def rate(
        self, ref: str, score: int, *, channel: str, channel_user_id: str, comment: str = ""
    ) -> dict[str, Any]:
        body = _rating(score, channel=channel, channel_user_id=channel_user_id, comment=comment)
        return await self._request("POST", f"/incidents/{ref}/rating", json=body)

    async def find_areas(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        data = await self._request("GET", "/areas", params={"q": query, "limit": str(limit)})
        return list(data.get("items", []))

    async def timeline(self, ref: str) -> list[dict[str, Any]]:
        data = await self._request("GET", f"/incidents/{ref}/timeline")
        return list(data.get("items", []))

    def public(self) -> HttpCoreApi:
        return HttpCoreApi(base_url=self._root, token=None, session=self._session)

    def calltaker(self, name: str) -> HttpCoreApi:
        # Over HTTP the token is the identity: the switchboard role runs with a call-taker
        # token (`ioc token create --role calltaker --name switchboard`), so drafts are
        # attributed to it; the answering agent is named in the draft and on the call.
        return self
