"""The automatic call-back decision (telephony.calls.callback_policy.decide), table-driven."""

from __future__ import annotations

import pytest

from telephony.calls.callback_policy import (
    NATIONAL_DEFAULT,
    Refusal,
    Verdict,
    compile_allowed,
    decide,
)

NATIONAL = compile_allowed(NATIONAL_DEFAULT)


@pytest.mark.parametrize(
    ("number", "placed", "expected"),
    [
        ("0912345678", 0, Verdict(dial="0912345678")),  # a mobile
        ("0387654321", 3, Verdict(dial="0387654321")),  # the fourth call-back of the hour
        ("02513123456", 0, Verdict(dial="02513123456")),  # a landline (Đồng Nai)
        ("0912345678", 4, Verdict(dial=None, refusal=Refusal.TOO_OFTEN)),
        ("0912345678", 40, Verdict(dial=None, refusal=Refusal.TOO_OFTEN)),
        ("+12025550123", 0, Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)),  # international
        ("+84912345678", 0, Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)),  # never "+"
        ("++0912345678", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),
        ("12025550123", 0, Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)),
        ("0084912345678", 0, Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)),
        ("1900123456", 0, Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)),  # premium rate
        ("113", 0, Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)),  # a short code
        ("091234567", 0, Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)),  # one digit short
        ("09123456789", 0, Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)),  # one too many
        ("", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),  # withheld
        ("anonymous", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),
        ("0912345678@evil", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),
        ("0912345678&PJSIP/1001", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),
        ("0912 345 678", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),
        ("０９１２３４５６７８", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),  # full-width
        ("091234567８", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),
        ("0912345678\n", 0, Verdict(dial=None, refusal=Refusal.NOT_DIGITS)),
    ],
)
def test_defect_12_callback_decision(number: str, placed: int, expected: Verdict) -> None:
    assert decide(number, allowed=NATIONAL, placed_last_hour=placed, max_per_hour=4) == expected


def test_defect_12_a_configured_allow_list_replaces_the_default() -> None:
    only_mobiles = compile_allowed([r"09[0-9]{8}"])
    assert decide("0912345678", allowed=only_mobiles, placed_last_hour=0, max_per_hour=1).dial
    refused = decide("0312345678", allowed=only_mobiles, placed_last_hour=0, max_per_hour=1)
    assert refused.refusal == Refusal.NOT_NATIONAL
    # No pattern at all: nothing is dialled automatically.
    assert decide("0912345678", allowed=(), placed_last_hour=0, max_per_hour=9).dial is None
    with pytest.raises(ValueError, match="call-back pattern"):
        compile_allowed(["0[9"])


def test_defect_12_the_allow_list_and_rate_are_settings() -> None:
    from ioc_core.config import ConfigError
    from telephony.settings import SwitchboardSettings

    default = SwitchboardSettings.from_env({}).callback
    assert [p.pattern for p in default.allowed] == list(NATIONAL_DEFAULT)
    assert default.max_per_hour == 4
    tuned = SwitchboardSettings.from_env(
        {"IOC_CALLBACK_ALLOWED": "09[0-9]{8} 08[0-9]{8}", "IOC_CALLBACK_MAX_PER_HOUR": "2"}
    ).callback
    assert [p.pattern for p in tuned.allowed] == ["09[0-9]{8}", "08[0-9]{8}"]
    assert tuned.max_per_hour == 2
    with pytest.raises(ConfigError, match="IOC_CALLBACK_ALLOWED"):
        SwitchboardSettings.from_env({"IOC_CALLBACK_ALLOWED": "0[9"})
