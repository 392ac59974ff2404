"""HTTP infrastructure: the error middleware, request-id context and body parsing helpers."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
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
    raw = await request.read()
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise MalformedRequest("body is not UTF-8", error_id="malformed-json") from None
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            details={"position": exc.pos},
            error_id="malformed-json",
        ) from None


async def read_model(request: web.Request, model: type[M]) -> M:
    return parse_model(model, await read_json(request))
