"""HTTP infrastructure: the error middleware, request-id context and body parsing helpers."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from ioc_core.errors import (
    IocError,
    MalformedRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMedia,
    ValidationFailed,
)
from ioc_core.sockets import is_long_lived

logger = logging.getLogger(__name__)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)

Renderer = Callable[[web.Request, IocError], web.Response]
# Path prefix -> error renderer, for APIs with a published error format of their own (Open311).
ERROR_RENDERERS: web.AppKey[dict[str, Renderer]] = web.AppKey("error_renderers")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=str), status=status, content_type="application/json"
    )


def concurrency_limit(*, limit: int, max_wait_ms: int, exempt: frozenset[str]) -> Any:
    """At most `limit` requests in progress; others wait up to `max_wait_ms`, then get 503.

    Without it an overloaded worker keeps accepting work whose clients have given up, and
    everyone's latency collapses; with it the excess is refused fast and honestly.
    Long-lived connections (`sockets.long_lived`) are not requests in this sense: one would
    hold a slot for its whole life, so they pass, and `sockets.SocketGate` limits them.
    """
    slots = asyncio.Semaphore(limit)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt or is_long_lived(request):
            return await handler(request)
        try:
            await asyncio.wait_for(slots.acquire(), max_wait_ms / 1000)
        except TimeoutError:
            raise ServiceUnavailable(
                "the server is busy; retry shortly",
                details={"retry_after_s": 1},
                error_id="server-busy",
            ) from None
        try:
            return await handler(request)
        finally:
            slots.release()

    return middleware


def render_error(_request: web.Request, err: IocError) -> web.Response:
    return json_response(err.as_dict(), status=err.status)


def _renderer(request: web.Request) -> Renderer:
    for prefix, renderer in request.config_dict.get(ERROR_RENDERERS, {}).items():
        if request.path.startswith(prefix):
            return renderer
    return render_error


def _as_error(exc: BaseException, rid: str) -> IocError:
    """Anything a handler raised, as one of our typed errors."""
    if isinstance(exc, IocError):
        return exc
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(f"request body is too large: {exc.text}")
    if isinstance(exc, web.HTTPException):
        ids = {404: "not-found", 405: "method-not-allowed"}
        return IocError(exc.reason, error_id=ids.get(exc.status, "http-error")).with_status(
            exc.status
        )
    logger.error("unhandled error (request %s)", rid, exc_info=exc)
    return IocError(
        "internal error; the request id names it in the server log",
        details={"request_id": rid},
        error_id="internal-error",
    ).with_status(500)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    request_id.set(rid)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _renderer(request)(request, _as_error(exc, rid))
    except Exception as exc:
        response = _renderer(request)(request, _as_error(exc, rid))
    response.headers["X-Request-Id"] = rid
    if response.status in (429, 503):
        response.headers.setdefault("Retry-After", "1")
    return response


# ------------------------------------------------------------------ text every input may hold

# Refused in any text a client sends (JSON strings and keys, form fields, query parameters, path
# segments): PostgreSQL's text cannot hold NUL at all (asyncpg raises, the request ended in a
# 500), and lone surrogates (JSON's "\ud800") cannot be encoded as UTF-8 for either database.
# The other C0 controls, DEL and the C1 block (U+0080-U+009F, what mojibake of Windows-1252
# leaves) are never part of a report, a name or an address, but they corrupt what the consoles,
# CSV exports, SMS and the Open311 XML show (XML 1.0 cannot carry C0 controls at all).
# U+FFFE/U+FFFF are Unicode noncharacters, a byte-order mark read the wrong way round.
# Newline, tab and carriage return stay allowed: free text (a description, a note) has lines.
FORBIDDEN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Deeper than any body the API takes (a report is 3 levels); the limit is checked before
# parsing, without recursion, because json.loads and pydantic recurse once per level and a
# 10,000-deep array hit Python's recursion limit (a 500).
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class ForbiddenCharacter(MalformedRequest):
    error_id = "forbidden-character"


class JsonTooDeep(MalformedRequest):
    error_id = "json-too-deep"


def refuse_forbidden_text(value: str, field: str) -> None:
    """400 naming `field` if `value` holds a character no input may hold (see above)."""
    if (bad := FORBIDDEN_TEXT.search(value)) is not None:
        code = f"U+{ord(bad.group()):04X}"
        raise ForbiddenCharacter(
            f"{field}: character {code} is not allowed (control characters other than "
            "newline, tab and carriage return are refused)",
            details={"errors": [{"field": field, "problem": f"character {code} is not allowed"}]},
        )


def refuse_forbidden_fields(pairs: Iterable[tuple[str, str]], *, where: str = "") -> None:
    """Every (name, value) of a form, a query string or a path; the name is checked too."""
    for name, value in pairs:
        refuse_forbidden_text(name, f"{where}{name!r}")
        refuse_forbidden_text(value, f"{where}{name}")


def json_depth(raw: bytes) -> int:
    """Nesting depth of a JSON text, without parsing it and without recursion: strings are
    cut out, then the running sum of opening and closing brackets is taken at C speed."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    return max(itertools.accumulate(_DEPTH_STEP[b] for b in brackets), default=0)


def check_json_text(data: Any) -> Any:
    """Every key and string of parsed JSON checked, walking with a stack (no recursion);
    a refusal names the field as a dotted path (`reporter.name`, `photos.0`)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            refuse_forbidden_text(value, path or "(body)")
        elif isinstance(value, dict):
            for key, item in value.items():
                refuse_forbidden_text(key, f"{path}.{key!r}" if path else repr(key))
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(value))
    return data


def loads_json(raw: bytes | str, *, what: str = "body", check_text: bool = True) -> Any:
    """JSON from a client: depth-limited, then parsed, then its text checked; 400s say why.

    `check_text=False` is for bodies that carry a citizen's own words relayed by a cloud
    (Telegram, Zalo, Rasa): refusing them would leave the citizen unanswered (Telegram drops an
    update after a few refused retries), so the channel cleans the text instead."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if (depth := json_depth(data)) > MAX_JSON_DEPTH:
        raise JsonTooDeep(
            f"{what} is nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted",
            details={"field": what, "limit": MAX_JSON_DEPTH},
        )
    try:
        parsed = json.loads(raw)
    except UnicodeDecodeError:
        raise MalformedRequest(f"{what} is not UTF-8", error_id="malformed-json") from None
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"malformed JSON in {what}: {exc.msg} at line {exc.lineno} column {exc.colno}",
            details={"field": what, "position": exc.pos},
            error_id="malformed-json",
        ) from None
    return check_json_text(parsed) if check_text else parsed


@web.middleware
async def text_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Path segments and query parameters of every route, core and features alike, refused
    before any handler can pass them to the database (a NUL in `/incidents/{ref}` would be a
    500)."""
    refuse_forbidden_fields(request.match_info.items(), where="path parameter ")
    refuse_forbidden_fields(request.query.items(), where="query parameter ")
    return await handler(request)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"])
        problem = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        out.append({"field": loc or "(body)", "problem": problem})
    return out


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        raise ValidationFailed(f"invalid input: {summary}", details={"errors": details}) from None


def parse_query(
    request: web.Request, model: type[BaseModel], *, multi: frozenset[str] = frozenset()
) -> Any:
    """Query parameters into `model` (unknown parameters are errors, like unknown fields)."""
    data: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        if key in multi:
            data[key] = [v for raw in values for v in raw.split(",") if v]
        else:
            data[key] = values[-1]
    return parse_model(model, data)


async def read_json(request: web.Request) -> Any:
    ctype = request.content_type
    if ctype != "application/json":
        raise UnsupportedMedia(
            f"expected application/json, got {ctype or 'nothing'}", details={"content_type": ctype}
        )
    return loads_json(await request.read())


async def read_model(request: web.Request, model: type[M]) -> M:
    return parse_model(model, await read_json(request))
