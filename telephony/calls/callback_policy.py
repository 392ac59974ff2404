"""Whether the switchboard may call a number back by itself: a pure decision.

An automatic call-back is the hub placing a call on the province's trunk with nobody deciding
it; so it dials only what is certainly a citizen of the national numbering plan, never a raw
caller id that could not be normalised (it reaches the trunk as a PJSIP dial string, where
`@`, `/`, `&` or `,` change what is dialled), never an international number (cost, fraud),
and never the same number again and again (a caller who keeps hanging up, a spoofed id).
What is refused is not dropped: the item waits for a person, with the reason."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Vietnam's plan since 2018 (the form `normalise_msisdn` keeps): mobiles 0[35789] + 8 digits,
# landlines 02 + 9 digits.
NATIONAL_DEFAULT: tuple[str, ...] = (r"0[35789][0-9]{8}", r"02[0-9]{9}")
MAX_PER_HOUR_DEFAULT = 4


class Refusal:
    """Why an automatic call-back was not placed (kebab-case ids; locale `callback.refused.*`)."""

    NOT_DIGITS = "not-digits"
    NOT_NATIONAL = "not-national"
    TOO_OFTEN = "too-often"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    dial: str | None  # the digits to dial; None when refused
    refusal: str | None = None


def compile_allowed(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """The allow-list's patterns, each matched against the whole number; a bad one is a
    ValueError naming it (configuration is checked at start)."""
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise ValueError(f"call-back pattern {p!r}: {exc}") from exc
    return tuple(out)


def decide(
    number: str,
    *,
    allowed: Sequence[re.Pattern[str]],
    placed_last_hour: int,
    max_per_hour: int,
) -> Verdict:
    """`placed_last_hour`: automatic call-backs already placed to `number` in the last hour."""
    digits = number.removeprefix("+")  # another country's number, as normalise_msisdn keeps it
    if not (digits.isascii() and digits.isdigit()):
        return Verdict(dial=None, refusal=Refusal.NOT_DIGITS)
    if digits != number or not any(p.fullmatch(number) for p in allowed):
        # An international number never reaches the dial string: its "+" is no digit.
        return Verdict(dial=None, refusal=Refusal.NOT_NATIONAL)
    if placed_last_hour >= max_per_hour:
        return Verdict(dial=None, refusal=Refusal.TOO_OFTEN)
    return Verdict(dial=number)
