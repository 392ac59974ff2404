"""What the flows' steps do (named in bots/data/flows.toml): each handler reads the
citizen's message, talks to the core through `CoreApi`, answers, and returns an outcome that
the flow maps to its next step. Starters run when a flow begins (prefill from what the first
message already said); providers make a step's buttons."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bots.core.engine import Ctx, Handler, Provider, Starter
from bots.messages import Inbound, Reply
from bots.store.service import BotStore
from ioc_core.api import CoreApi, CoreApiError, format_tracking_code
from ioc_core.api.client import leaf_keywords
from nlu.keywords import suggest_category
from nlu.text.vietnamese import fold

logger = logging.getLogger(__name__)

CODE = re.compile(r"\b([A-Za-z]{1,5})[-\s]?(\d{4})[-\s]?(\d{1,6})\b")
RATING = re.compile(r"(?<!\d)([1-5])(?!\d)")
YES = frozenset({"yes", "co", "dong y", "gui", "ok", "u", "vang", "send", "y"})
NO = frozenset({"no", "khong", "huy", "thoi", "cancel", "n", "khong can"})
EDIT = frozenset({"edit", "sua", "sua lai"})
EMERGENCY_CATEGORY = {"113": "an_ninh_trat_tu", "114": "chay_no", "115": "y_te.cap_cuu"}
OTHER_CATEGORY = "khac"  # the catalogue's "Khác / Other"
SUBSCRIPTION_RADIUS_KM = 5.0
MAX_LIST = 8  # buttons offered at once


@dataclass
class Services:
    """Everything a turn may use; `fetch_photo` is the channel's own download."""

    api: CoreApi
    public: CoreApi
    store: BotStore
    faq: Faq
    fetch_photo: Callable[[Inbound], Awaitable[bytes]]
    timezone: str = "Asia/Ho_Chi_Minh"
    max_photos: int = 10
    _categories: list[dict[str, Any]] = field(default_factory=list)

    async def categories(self) -> list[dict[str, Any]]:
        if not self._categories:
            self._categories = await self.api.categories()
        return self._categories

    def local(self, iso: str | None) -> str:
        if not iso:
            return ""
        at = datetime.fromisoformat(iso).astimezone(ZoneInfo(self.timezone))
        return at.strftime("%H:%M %d/%m/%Y")


def services(ctx: Ctx) -> Services:
    s: Services = ctx.services
    return s


# ---------------------------------------------------------------------- FAQ


@dataclass(frozen=True)
class Procedure:
    id: str
    keywords: tuple[str, ...]
    title: Mapping[str, str]
    answer: Mapping[str, str]


class Faq:
    """Procedure answers from a data file (bots/data/procedures.json), found by keywords
    with or without diacritics."""

    def __init__(self, items: list[Procedure]) -> None:
        self.items = {p.id: p for p in items}

    @classmethod
    def load(cls, path: Path) -> Faq:
        raw = json.loads(path.read_text("utf-8"))
        return cls(
            [
                Procedure(p["id"], tuple(p["keywords"]), p["title"], p["answer"])
                for p in raw["procedures"]
            ]
        )

    def best(self, text: str) -> Procedure | None:
        found = suggest_category(text, {p.id: p.keywords for p in self.items.values()})
        return self.items.get(found) if found else None


# ---------------------------------------------------------------------- helpers


def find_code(ctx: Ctx) -> str | None:
    """A tracking code in the message (entity or pattern; "pa 2026 123" is forgiven)."""
    if ctx.msg.choice.startswith("code:"):
        return ctx.msg.choice[5:]
    u = ctx.understood
    if u is not None and (code := u.entity("report_code")):
        return code.upper()
    m = CODE.search(ctx.msg.text)
    if m:
        return format_tracking_code(m.group(1).upper(), int(m.group(2)), int(m.group(3)))
    return None


async def _category_names(s: Services, lang: str) -> dict[str, str]:
    return {c["code"]: c["name"].get(lang) or c["name"]["vi"] for c in await s.categories()}


# ---------------------------------------------------------------------- report


async def start_report(ctx: Ctx, data: dict[str, Any]) -> str | None:
    """A first message that already tells what happened ("có ổ gà lớn ở đường Lê Lợi") is
    the description; "tôi muốn phản ánh" is only the wish to report."""
    u = ctx.understood
    data["photos"] = []
    if u is None:
        return None
    if code := u.entity("category"):
        data["category"] = code
    if len(ctx.msg.text.split()) >= 6 or u.entity("category"):
        data["description"] = ctx.msg.text.strip()
        return "next"
    return None


async def report_describe(ctx: Ctx) -> str:
    msg = ctx.msg
    if msg.kind == "photo":
        if not await _add_photo(ctx):
            return "more"
        if msg.text.strip():
            _describe(ctx, msg.text)
        if not ctx.data.get("description"):
            ctx.say("report.photo_needs_text")
            return "more"
        ctx.say("report.photo_saved", count=len(ctx.data["photos"]))
        return "next"
    _describe(ctx, msg.text)
    return "next"


def _describe(ctx: Ctx, text: str) -> None:
    text = text.strip()
    before = ctx.data.get("description", "")
    ctx.data["description"] = f"{before}\n{text}".strip() if before else text
    u = ctx.understood
    if u is not None and (code := u.entity("category")) and "category" not in ctx.data:
        ctx.data["category"] = code


async def _add_photo(ctx: Ctx) -> bool:
    s = services(ctx)
    photos: list[str] = ctx.data.setdefault("photos", [])
    if len(photos) >= s.max_photos:
        ctx.say("report.photo_limit", max=s.max_photos)
        return True
    try:
        data = await s.fetch_photo(ctx.msg)
    except Exception:  # a channel's download failing must not end the conversation
        logger.exception("could not fetch photo %s from %s", ctx.msg.photo, ctx.msg.channel)
        ctx.say("report.photo_failed")
        return False
    photos.append(await s.store.save_photo(ctx.msg, data))
    return True


async def report_location(ctx: Ctx) -> str:
    msg = ctx.msg
    if msg.kind == "photo":
        if await _add_photo(ctx):
            ctx.say("report.photo_saved", count=len(ctx.data["photos"]))
        return "again"
    if msg.kind == "location":
        ctx.data.update(lat=msg.lat, lon=msg.lon, place=f"{msg.lat:.5f}, {msg.lon:.5f}")
    elif not await _area_from_text(ctx):
        return "again"
    return await _category_next(ctx)


async def _area_from_text(ctx: Ctx) -> bool:
    """A ward or commune named in text; asks again when none or several match."""
    s = services(ctx)
    if ctx.msg.choice.startswith("area:"):
        code, _, name = ctx.msg.choice[5:].partition("|")
        ctx.data.update(area_code=code, place=name or code)
        return True
    u = ctx.understood
    query = (u.entity("location") if u else None) or ctx.msg.text.strip()
    found = await s.api.find_areas(query, limit=MAX_LIST) if query else []
    exact = [a for a in found if fold(a["name"]).endswith(fold(query))]
    found = exact or found
    if len(found) == 1:
        ctx.data.update(area_code=found[0]["code"], place=found[0]["name"], address=query)
        return True
    if not found:
        ctx.say("report.location_not_found", query=query[:80])
        return False
    buttons = tuple((a["name"], f"area:{a['code']}|{a['name']}") for a in found)
    ctx.say("report.location_choose", buttons=buttons)
    return False


async def _category_next(ctx: Ctx) -> str:
    s = services(ctx)
    names = await _category_names(s, ctx.lang)
    if ctx.data.get("category") in names:
        ctx.data["category_name"] = names[ctx.data["category"]]
        _summary(ctx)
        return "skip_category"
    keywords = leaf_keywords(await s.categories())
    suggested = suggest_category(ctx.data.get("description", ""), keywords)
    if suggested:
        ctx.data["suggested"] = suggested
    return "next"


def _summary(ctx: Ctx) -> None:
    d = ctx.data
    d["photo_count"] = len(d.get("photos", []))
    d.setdefault("place", d.get("address", ""))


async def category_options(ctx: Ctx) -> list[tuple[str, str]]:
    """The suggested category first, then the catalogue's groups."""
    s = services(ctx)
    cats = await s.categories()
    names = await _category_names(s, ctx.lang)
    out = []
    if (code := ctx.data.get("suggested")) in names:
        out.append((names[code], f"cat:{code}"))
    out += [(names[c["code"]], f"cat:{c['code']}") for c in cats if not c.get("parent")]
    return out


async def report_category(ctx: Ctx) -> str:
    s = services(ctx)
    names = await _category_names(s, ctx.lang)
    answer = ctx.answer
    code = answer[4:] if answer.startswith("cat:") else None
    if code is None:
        by_name = {fold(n): c for c, n in names.items()}
        code = by_name.get(fold(answer)) or suggest_category(
            answer, leaf_keywords(await s.categories())
        )
    if code not in names:
        ctx.say("report.category_fallback")
        return "again"
    ctx.data.update(category=code, category_name=names[code])
    _summary(ctx)
    return "next"


async def report_confirm(ctx: Ctx) -> str:
    word = fold(ctx.answer).strip()
    if word in EDIT:
        ctx.data.pop("description", None)
        return "edit"
    if word in NO:
        await _drop_photos(ctx)
        ctx.say("report.cancelled")
        return "cancelled"
    if word not in YES:
        return "again"
    return await _submit(ctx)


async def report_collected(ctx: Ctx) -> str:
    """A report whose description and place were collected elsewhere (Rasa's reporting form,
    bots/rasa/actions.py), sent without the confirm step: the place found by its name, the
    category as named or suggested by the words, else "other". Outcomes: sent; place (not
    found or ambiguous, the citizen told); again (the core refused, the citizen told)."""
    if not await _area_from_text(ctx):
        return "place"
    if await _category_next(ctx) == "next":
        names = await _category_names(services(ctx), ctx.lang)
        code = ctx.data.pop("suggested", None) or OTHER_CATEGORY
        ctx.data.update(category=code, category_name=names.get(code, code))
    return await _submit(ctx)


async def _submit(ctx: Ctx, *, priority: str | None = None, number: str = "") -> str:
    s, d, msg = services(ctx), ctx.data, ctx.msg
    location: dict[str, Any] = {}
    if d.get("lat") is not None:
        location = {"lat": d["lat"], "lon": d["lon"], "address": d.get("address", "")[:500]}
    elif d.get("area_code"):
        location = {"area_code": d["area_code"], "address": d.get("address", "")[:500]}
    report: dict[str, Any] = {
        "category": d["category"],
        "description": d.get("description", "")[:5000],
        "channel": msg.channel,
        "language": ctx.lang,
        "location": location,
        "reporter": {"name": msg.name[:200], "channel_user_id": msg.user_id or msg.chat_id},
    }
    if priority:
        report["priority"] = priority
    photos = await _photos_kept(s, d.get("photos", []))
    try:
        # Keyed by the inbound message: if the hub dies after the core filed the report and
        # before this update is marked seen, the redelivered update files nothing new and
        # the citizen is told the same tracking code.
        created = await s.api.report_incident(report, photos, idempotency_key=report_key(msg))
    except CoreApiError as exc:
        logger.warning("report from %s:%s refused: %s", msg.channel, msg.chat_id, exc)
        ctx.say("report.failed", reason=exc.message)
        return "again"
    await _drop_photos(ctx)
    await s.store.remember_report(created["id"], created["code"], msg)
    if number:
        ctx.say("emergency.reported", code=created["code"], number=number)
        return "reported"
    due = s.local(created.get("due_at"))
    ctx.say(
        "report.sent",
        code=created["code"],
        due=ctx.t("report.due", due=due) if due else "",
    )
    return "sent"


def report_key(msg: Inbound) -> str | None:
    """The report's idempotency key: one report per inbound message of a chat. A digest, so
    whatever the channel's ids hold, the key is short printable ASCII (as the core asks)."""
    if not msg.message_id:
        return None
    ids = json.dumps([msg.channel, msg.chat_id, msg.message_id])
    return f"chat:{hashlib.sha256(ids.encode()).hexdigest()}"


async def _photos_kept(s: Services, paths: list[str]) -> list[tuple[str, bytes]]:
    """The report's photos still on disk. A photo is dropped once its report is filed: when
    the same message is handled again after a crash, the core already has it."""
    out = []
    for p in paths:
        try:
            out.append((Path(p).name, await s.store.read_photo(p)))
        except FileNotFoundError:
            logger.warning("photo %s already handed over", p)
    return out


async def _drop_photos(ctx: Ctx) -> None:
    await services(ctx).store.drop_photos(ctx.data.get("photos", []))


# ---------------------------------------------------------------------- status


async def _public_incident(ctx: Ctx, code: str) -> dict[str, Any] | None:
    """The report as the public sees it; None (the citizen told) when there is none."""
    try:
        return await services(ctx).public.get_incident(code)
    except CoreApiError as exc:
        if exc.status != 404:
            raise
        ctx.say("status.not_found", code=code)
        return None


async def start_status(ctx: Ctx, data: dict[str, Any]) -> str | None:
    return await status_lookup(ctx) if find_code(ctx) else None


async def status_lookup(ctx: Ctx) -> str:
    s = services(ctx)
    code = find_code(ctx)
    if code is None:
        ctx.say("status.code_fallback")
        return "again"
    inc = await _public_incident(ctx, code)
    if inc is None:
        return "again"
    lang = ctx.lang
    due = s.local(inc.get("due_at"))
    agency = inc.get("agency") or ""
    text = ctx.t(
        "status.shown",
        code=inc["code"],
        title=inc.get("title", ""),
        state=(inc.get("state_label") or {}).get(lang, inc.get("state", "")),
        due=ctx.t("status.due", due=due) if due and inc.get("phase") in ("open", "active") else "",
        agency=ctx.t("status.agency", agency=agency) if agency else "",
    )
    for r in inc.get("replies", [])[-3:]:
        text += ctx.t("status.reply", at=s.local(r.get("created_at")), body=r["body"][:1000])
    ctx.replies.append(Reply(text))
    return "shown"


# ---------------------------------------------------------------------- rate


async def start_rate(ctx: Ctx, data: dict[str, Any]) -> str | None:
    s, msg = services(ctx), ctx.msg
    code = find_code(ctx)
    if code is None:
        mine = await s.store.reports_of(msg.channel, msg.chat_id)
        if len(mine) == 1:
            code = mine[0]
        elif not mine:
            ctx.say("rate.none")
            return "again"
        else:
            return None
    return await _rate_code(ctx, code)


async def my_reports(ctx: Ctx) -> list[tuple[str, str]]:
    mine = await services(ctx).store.reports_of(ctx.msg.channel, ctx.msg.chat_id)
    return [(code, f"code:{code}") for code in mine[:MAX_LIST]]


async def rate_code(ctx: Ctx) -> str:
    code = find_code(ctx)
    if code is None:
        ctx.say("rate.code_fallback")
        return "again"
    return await _rate_code(ctx, code)


async def _rate_code(ctx: Ctx, code: str) -> str:
    inc = await _public_incident(ctx, code)
    if inc is None:
        return "again"
    if inc.get("phase") not in ("resolved", "closed") or inc.get("state") == "rejected":
        state = (inc.get("state_label") or {}).get(ctx.lang, inc.get("state", ""))
        ctx.say("rate.not_resolved", code=inc["code"], state=state)
        return "not_yet"
    ctx.data["code"] = inc["code"]
    u = ctx.understood
    score = u.entity("rating") if u is not None and u.intent == "rate_service" else None
    if score and score.isdigit() and 1 <= int(score) <= 5:
        return await _rate(ctx, int(score))
    return "next"


async def rate_score(ctx: Ctx) -> str:
    u = ctx.understood
    raw = ctx.msg.choice or ((u.entity("rating") if u else None) or "")
    m = RATING.search(raw or ctx.msg.text)
    if not m:
        ctx.say("rate.score_fallback")
        return "again"
    return await _rate(ctx, int(m.group(1)))


async def _rate(ctx: Ctx, score: int) -> str:
    s, msg, code = services(ctx), ctx.msg, ctx.data["code"]
    try:
        await s.api.rate(
            code,
            score,
            channel=msg.channel,
            channel_user_id=msg.user_id or msg.chat_id,
            comment="",
        )
    except CoreApiError as exc:
        if exc.error_id == "not-reporter":
            ctx.say("rate.not_reporter", code=code)
            return "not_yet"
        raise
    ctx.say("rate.thanks", code=code, score=score)
    return "rated"


# ---------------------------------------------------------------------- procedures


async def start_procedure(ctx: Ctx, data: dict[str, Any]) -> str | None:
    if services(ctx).faq.best(ctx.msg.text):
        return await procedure_answer(ctx)
    return None


async def procedure_answer(ctx: Ctx) -> str:
    p = services(ctx).faq.best(ctx.answer)
    if p is None:
        ctx.say("procedure.unknown")
        return "again"
    lang = ctx.lang
    ctx.say(
        "procedure.answer",
        title=p.title.get(lang, p.title["vi"]),
        answer=p.answer.get(lang, p.answer["vi"]),
    )
    return "answered"


# ---------------------------------------------------------------------- subscriptions


async def start_subscribe(ctx: Ctx, data: dict[str, Any]) -> str | None:
    u = ctx.understood
    if u is not None and u.entity("location"):
        return await subscribe_area(ctx)
    return None


async def subscribe_area(ctx: Ctx) -> str:
    s, msg = services(ctx), ctx.msg
    if msg.kind == "location" and msg.lat is not None and msg.lon is not None:
        await s.store.subscribe(msg, lat=msg.lat, lon=msg.lon, radius_km=SUBSCRIPTION_RADIUS_KM)
        area = ctx.t("subscribe.point", radius=f"{SUBSCRIPTION_RADIUS_KM:g}")
    else:
        if not await _area_from_text(ctx):
            return "again"
        area = ctx.data["place"]
        await s.store.subscribe(msg, area_code=ctx.data["area_code"], area_name=area)
    ctx.say("subscribe.done", area=area)
    return "subscribed"


# ---------------------------------------------------------------------- hand-off


async def start_handoff(ctx: Ctx, data: dict[str, Any]) -> str | None:
    context = [ctx.msg.text] if ctx.msg.text else []
    data["handoff_id"] = await services(ctx).store.open_handoff(
        ctx.msg, urgent=False, context=context
    )
    ctx.say("handoff.queued")
    return "relayed"


async def handoff_relay(ctx: Ctx) -> str:
    if await services(ctx).store.relay_to_agent(ctx.msg):
        return "relayed"
    ctx.say("handoff.closed")
    return "closed"


# ---------------------------------------------------------------------- emergencies


async def start_emergency(ctx: Ctx, data: dict[str, Any]) -> str | None:
    number = data.get("number") or "113"
    data.update(
        number=number,
        category=EMERGENCY_CATEGORY[number],
        description=ctx.msg.text.strip() or ctx.t("menu.emergency"),
        photos=[],
    )
    ctx.say(f"emergency.{number}")
    if ctx.msg.kind == "location":
        return await emergency_location(ctx)
    return None


async def emergency_location(ctx: Ctx) -> str:
    msg = ctx.msg
    if msg.choice.startswith("flow:") or (msg.kind == "text" and fold(ctx.answer).strip() in NO):
        ctx.say("emergency.declined", number=ctx.data["number"])
        return "declined"
    if msg.kind == "location":
        ctx.data.update(lat=msg.lat, lon=msg.lon)
    elif not await _area_from_text(ctx):
        return "again"
    return await _submit(ctx, priority="urgent", number=ctx.data["number"])


HANDLERS: dict[str, Handler] = {
    "report_describe": report_describe,
    "report_location": report_location,
    "report_category": report_category,
    "report_confirm": report_confirm,
    "status_lookup": status_lookup,
    "rate_code": rate_code,
    "rate_score": rate_score,
    "procedure_answer": procedure_answer,
    "subscribe_area": subscribe_area,
    "handoff_relay": handoff_relay,
    "emergency_location": emergency_location,
}
PROVIDERS: dict[str, Provider] = {"categories": category_options, "my_reports": my_reports}
STARTERS: dict[str, Starter] = {
    "report": start_report,
    "status": start_status,
    "rate": start_rate,
    "procedure": start_procedure,
    "subscribe": start_subscribe,
    "handoff": start_handoff,
    "emergency": start_emergency,
}
