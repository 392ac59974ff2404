"""The caller look-up: number normalisation (table-driven) and the handler, with fake sources."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from telephony.agi.fastagi import STATUS_VARIABLE, AgiRequest, FastAgiServer, Handler
from telephony.agi.lookups import (
    CALLER_BLOCKED,
    CALLER_CALLS,
    CALLER_FLAGGED,
    CALLER_LAST_REF,
    CALLER_OPEN,
    DEFAULTS,
    SCRIPT,
    VARIABLES,
    make_caller_lookup,
    service_of,
)
from telephony.numbers import normalise_msisdn
from tests.unit.test_fastagi import agi_call, environment, variables


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Mobiles: 0 + 9 digits, written every way callers and carriers write them.
        ("0912345678", "0912345678"),
        ("+84912345678", "0912345678"),
        ("84912345678", "0912345678"),
        ("0084912345678", "0912345678"),
        ("+84 0912 345 678", "0912345678"),  # trunk 0 kept after the country code
        ("+84 (0) 912-345-678", "0912345678"),
        ("091.234.5678", "0912345678"),
        (" 0912345678 ", "0912345678"),
        ("912345678", "0912345678"),  # delivered without the trunk 0
        ("841234567", "0841234567"),  # a Vinaphone 084 number without its 0, not the country
        ("0387654321", "0387654321"),
        ("0587654321", "0587654321"),
        ("0787654321", "0787654321"),
        # Landlines: 02 + 9 digits (Đồng Nai 0251, ex-Bình Phước 0271).
        ("02713123456", "02713123456"),
        ("+842713123456", "02713123456"),
        ("842713123456", "02713123456"),
        ("(0271) 3 123 456", "02713123456"),
        ("2713123456", "02713123456"),
        # Another country's number stays international.
        ("+1 202 555 0143", "+12025550143"),
        ("0012025550143", "+12025550143"),
        # Nothing usable to look up by.
        ("", None),
        ("unknown", None),
        ("anonymous", None),
        ("sipp", None),
        ("113", None),
        ("1022", None),
        ("091234567", None),  # one digit short
        ("09123456789", None),  # one digit long
        ("0112345678", None),  # 01x: no such prefix since 2018
        ("+84", None),
        ("+1234", None),
        ("0912345678;x", None),
        ("٠٩١٢٣٤٥٦٧٨", None),  # non-ASCII digits
    ],
)
def test_normalise_msisdn(raw: str, expected: str | None) -> None:
    assert normalise_msisdn(raw) == expected


class Sources:
    """Fake switchboard sources that record the numbers they were asked about."""

    def __init__(self, *, calls: int = 0, open_: tuple[int, str | None] = (0, None)) -> None:
        self.calls = calls
        self.open = open_
        self.listed: set[str] = set()
        self.asked: list[str] = []

    async def history(self, number: str) -> int:
        self.asked.append(number)
        return self.calls

    async def open_incidents(self, number: str) -> tuple[int, str | None]:
        self.asked.append(number)
        return self.open

    async def blocked(self, number: str) -> bool:
        self.asked.append(number)
        return number in self.listed


def lookup_for(sources: Sources) -> Handler:
    return make_caller_lookup(
        history=sources.history, open_incidents=sources.open_incidents, blocked=sources.blocked
    )


def request(caller: str, *args: str, extension: str = "1022") -> AgiRequest:
    env = environment(agi_callerid=caller, agi_extension=extension)
    env.pop("agi_arg_1")
    env.update({f"agi_arg_{i}": a for i, a in enumerate(args, 1)})
    return AgiRequest.from_env(env)


async def test_history_and_open_incidents() -> None:
    sources = Sources(calls=4, open_=(2, "PA-2026-000123"))
    found = await lookup_for(sources)(request("+84912345678", "1022"))
    assert found == {
        CALLER_CALLS: "4",
        CALLER_OPEN: "2",
        CALLER_LAST_REF: "PA-2026-000123",
        CALLER_BLOCKED: "0",
        CALLER_FLAGGED: "0",
    }
    assert sources.asked == ["0912345678"] * 3  # every source gets the normalised number


@pytest.mark.parametrize(
    ("service", "extension", "blocked"),
    [
        ("1022", "s", "1"),
        ("", "1022", "1"),  # no argument: the channel's extension is the service
        ("113", "1022", "0"),  # the argument wins
        ("113", "113", "0"),
        ("114", "114", "0"),
        ("115", "115", "0"),
        ("", "115", "0"),
    ],
)
async def test_blocking_applies_to_the_hotline_only(
    service: str, extension: str, blocked: str
) -> None:
    sources = Sources()
    sources.listed.add("0912345678")
    args = (service,) if service else ()
    found = await lookup_for(sources)(request("0912345678", *args, extension=extension))
    assert found[CALLER_BLOCKED] == blocked
    assert found[CALLER_FLAGGED] == "1"  # an emergency from a listed number is only flagged


async def test_a_withheld_number_gets_the_defaults_without_asking() -> None:
    sources = Sources(calls=9)
    assert await lookup_for(sources)(request("unknown", "1022")) == DEFAULTS
    assert sources.asked == []


async def test_a_failing_source_fails_the_lookup() -> None:
    sources = Sources()

    async def broken(number: str) -> bool:
        raise ConnectionError("blocked list unreachable")

    lookup = make_caller_lookup(
        history=sources.history, open_incidents=sources.open_incidents, blocked=broken
    )
    with pytest.raises(ExceptionGroup):
        await lookup(request("0912345678", "1022"))


def test_service_of() -> None:
    assert service_of(request("0912345678", " 114 ", extension="s")) == "114"
    assert service_of(request("0912345678", extension="1022")) == "1022"


async def test_through_the_fastagi_server() -> None:
    sources = Sources(calls=1, open_=(1, "PA-2026-000007"))
    sources.listed.add("0912345678")
    async with FastAgiServer(handlers={SCRIPT: lookup_for(sources)}, port=0) as server:
        found: Mapping[str, str] = variables(await agi_call(server.port, environment()))
    assert found == {
        CALLER_CALLS: "1",
        CALLER_OPEN: "1",
        CALLER_LAST_REF: "PA-2026-000007",
        CALLER_BLOCKED: "1",
        CALLER_FLAGGED: "1",
        "IOC_AGI_STATUS": "ok",
    }


EXTENSIONS = Path(__file__).resolve().parents[2] / "dialplans" / "etc" / "extensions.conf"


def test_the_dialplan_uses_only_declared_lookup_variables() -> None:
    text = EXTENSIONS.read_text()
    used = set(re.findall(r"IOC_CALLER_[A-Z_]+|IOC_AGI_[A-Z_]+", text))
    assert used <= {*VARIABLES, STATUS_VARIABLE, "IOC_AGI_PORT"}, "a typo or an undeclared one"
    if f"/{SCRIPT}," in text:  # once the hotline contexts call the look-up:
        for name, default in DEFAULTS.items():  # defaults first, or a failure leaves them unset
            assert f"Set({name}={default})" in text, name
        assert f"Set({STATUS_VARIABLE}=" in text
