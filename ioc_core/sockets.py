"""Long-lived connections (WebSockets, live feeds): admitted by their own limits, never by
the HTTP request limit.

A socket lives for minutes or hours; counted as a request it would hold one of the worker's
request slots (`http.concurrency_limit`) for all that time, and a few dozen idle ones would
refuse every REST call, webhook and action with 503. So a handler marked `long_lived` skips
the request limit, and `SocketGate.admit` gives it a place under limits of its own, before
the upgrade, with an answer a client can act on:
- 403 `origin-not-allowed`: a browser page from another site (cross-site WebSocket
  hijacking: browsers send cookies with a WebSocket but do not apply CORS to it);
- 429 `too-many-sockets`: this client address holds `per_client` sockets already;
- 503 `sockets-full`: the worker holds `total` sockets.
The `Lease` it returns is given back when the socket ends, and meters what the client sends
(a token bucket: `messages_per_s`, bursts of `burst`); the handler closes a socket that
floods. The largest message is the handler's own (`web.WebSocketResponse(max_msg_size=)`):
only it knows what its messages carry.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from ioc_core.errors import Forbidden, IocError, ServiceUnavailable

H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])
LONG_LIVED = "__ioc_long_lived__"
CLOSE_POLICY = 1008  # RFC 6455: the message broke the endpoint's policy (here: the rate)


class TooManySockets(IocError):
    status = 429
    error_id = "too-many-sockets"


def long_lived(handler: H) -> H:
    """Marks a route's handler as a long-lived connection: the request limit lets it by (it
    must call `SocketGate.admit` itself, before the upgrade)."""
    setattr(handler, LONG_LIVED, True)
    return handler


def is_long_lived(request: web.Request) -> bool:
    return bool(getattr(request.match_info.handler, LONG_LIVED, False))


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-case, default ports left out."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return ""
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port if parts.port not in (None, default) else None
    return f"{scheme}://{host}" + (f":{port}" if port else "")


@dataclass(frozen=True, kw_only=True)
class SocketLimits:
    total: int = 512
    per_client: int = 16
    messages_per_s: float = 2.0
    burst: int = 10
    # Page origins allowed besides the hub's own host (`scheme://host[:port]`).
    origins: frozenset[str] = frozenset()


class Lease:
    """One admitted socket: its place under the limits, and its message meter."""

    def __init__(self, *, gate: SocketGate, client: str) -> None:
        self._gate, self.client = gate, client
        self._tokens = float(gate.limits.burst)
        self._at = time.monotonic()
        self._released = False

    def allow(self) -> bool:
        """One more message from the client: False when it sends faster than the limit."""
        limits = self._gate.limits
        now = time.monotonic()
        self._tokens = min(limits.burst, self._tokens + (now - self._at) * limits.messages_per_s)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._release(self.client)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.release()


class SocketGate:
    """The long-lived connections of one worker: who holds how many, and who may open one."""

    def __init__(self, *, limits: SocketLimits, public_url: str = "") -> None:
        self.limits = limits
        own = origin_of(public_url) if public_url else ""
        self._origins = frozenset(o for o in {*(origin_of(x) for x in limits.origins), own} if o)
        self._by_client: Counter[str] = Counter()
        self.open = 0

    def origin_allowed(self, request: web.Request) -> bool:
        """No Origin: not a browser page (a browser always sends one with a WebSocket), and
        nothing a non-browser client says could be trusted anyway. Otherwise the page must
        come from the host it connects to (the hub's own pages, e.g. the chat page in the
        portal's iframe), IOC_PUBLIC_URL, or a configured origin."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        seen = origin_of(origin)
        if not seen:
            return False
        if seen in self._origins:
            return True
        own = origin_of(f"{request.scheme}://{request.host}")
        # A TLS proxy in front may speak plain HTTP to us: the host is what must match.
        return bool(own) and seen.split("://", 1)[1] == own.split("://", 1)[1]

    def admit(self, request: web.Request) -> Lease:
        """A place for one more socket from this request's client, or the typed refusal."""
        if not self.origin_allowed(request):
            raise Forbidden(
                "this page's origin may not open a connection here",
                details={"origin": request.headers.get("Origin", "")},
                error_id="origin-not-allowed",
            )
        client = request.remote or "-"
        if self._by_client[client] >= self.limits.per_client:
            raise TooManySockets(
                f"at most {self.limits.per_client} open connections per client",
                details={"limit": self.limits.per_client, "retry_after_s": 5},
            )
        if self.open >= self.limits.total:
            raise ServiceUnavailable(
                "the server holds as many connections as it may; retry shortly",
                details={"limit": self.limits.total, "retry_after_s": 5},
                error_id="sockets-full",
            )
        self._by_client[client] += 1
        self.open += 1
        return Lease(gate=self, client=client)

    def _release(self, client: str) -> None:
        self.open -= 1
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]


SOCKETS: web.AppKey[SocketGate] = web.AppKey("sockets", SocketGate)
