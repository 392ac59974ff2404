"""Long-lived connections' own limits (ioc_core.sockets) and what a channel hands over
cleaned (bots.messages): the pure parts, table-driven."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from bots.messages import Inbound, clean_text, cleaned
from ioc_core.errors import Forbidden, ServiceUnavailable
from ioc_core.sockets import SocketGate, SocketLimits, TooManySockets, origin_of


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Portal.Example.gov.vn", "https://portal.example.gov.vn"),
        ("https://portal.example.gov.vn:443/", "https://portal.example.gov.vn"),
        ("http://hub.local:8080", "http://hub.local:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", ""),
        ("", ""),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def _request(origin: str | None, *, host: str = "hub.example.vn", remote: str = "10.0.0.1") -> Any:
    headers = {"Host": host, **({"Origin": origin} if origin is not None else {})}
    req = make_mocked_request("GET", "/bots/web/ws", headers=headers)
    return req.clone(remote=remote)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser page
        ("http://hub.example.vn", True),  # the hub's own page (the portal's iframe)
        ("https://hub.example.vn", True),  # behind a TLS proxy
        ("https://portal.example.gov.vn", True),  # configured
        ("https://public.example.vn", True),  # IOC_PUBLIC_URL
        ("https://evil.example", False),
        ("https://hub.example.vn.evil.example", False),
        ("null", False),  # a sandboxed or file page
    ],
)
def test_origins(origin: str | None, allowed: bool) -> None:
    gate = SocketGate(
        limits=SocketLimits(origins=frozenset({"https://portal.example.gov.vn"})),
        public_url="https://public.example.vn/",
    )
    assert gate.origin_allowed(_request(origin)) is allowed


def test_caps_per_client_and_overall_and_places_given_back() -> None:
    gate = SocketGate(limits=SocketLimits(total=3, per_client=2))
    a1, a2 = gate.admit(_request(None)), gate.admit(_request(None))
    with pytest.raises(TooManySockets):
        gate.admit(_request(None))
    b1 = gate.admit(_request(None, remote="10.0.0.2"))
    with pytest.raises(ServiceUnavailable) as full:
        gate.admit(_request(None, remote="10.0.0.3"))
    assert full.value.error_id == "sockets-full"
    with pytest.raises(Forbidden):
        gate.admit(_request("https://evil.example", remote="10.0.0.4"))
    a1.release()
    a1.release()  # once only
    assert gate.open == 2
    with gate.admit(_request(None)):
        assert gate.open == 3
    for lease in (a2, b1):
        lease.release()
    assert gate.open == 0


def test_message_rate_allows_a_burst_then_the_rate() -> None:
    gate = SocketGate(limits=SocketLimits(messages_per_s=0.001, burst=5))
    lease = gate.admit(_request(None))
    assert [lease.allow() for _ in range(7)] == [True] * 5 + [False] * 2


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Rác\x00 thải", "Rác thải"),
        ("dòng 1\ndòng 2\tcột", "dòng 1\ndòng 2\tcột"),
        ("a\r\nb", "a\nb"),
        ("\x1b[31mđỏ\x7f\x85", "[31mđỏ"),
        ("lẻ \ud800 loi", "lẻ ? loi"),
        ("Bình thường 🙂", "Bình thường 🙂"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_cleaned_message_keeps_its_kind_and_place() -> None:
    msg = Inbound(
        channel="zalo",
        chat_id="u\x001",
        message_id="m1",
        kind="location",
        name="An\x00",
        lat=1.5,
        lon=2.5,
    )
    out = cleaned(msg)
    assert (out.chat_id, out.name, out.kind, out.lat, out.lon) == ("u1", "An", "location", 1.5, 2.5)
