"""Phone numbers in one form everywhere: the call store, the caller look-up, the blocked list."""

from __future__ import annotations

_SEPARATORS = str.maketrans("", "", " .-()\t")
_COUNTRY = "84"


def normalise_msisdn(raw: str) -> str | None:
    """A Vietnamese number as `0` + national significant number (`+84 912 345 678`,
    `84912345678`, `0084912345678`, `912345678` -> `0912345678`); another country's as
    `+<digits>`; None when it is no usable number (withheld, `anonymous`, a short code)."""
    text = raw.strip().translate(_SEPARATORS)
    international = text.startswith(("+", "00"))
    digits = text[1:] if text.startswith("+") else text[2:] if text.startswith("00") else text
    if not (digits.isascii() and digits.isdigit()):
        return None
    if international:
        if not digits.startswith(_COUNTRY):
            return "+" + digits if 8 <= len(digits) <= 15 else None
        national = digits[len(_COUNTRY) :]
        # "+84 (0) 912 ..." is often written with the trunk prefix kept.
        return _national("0" + national.removeprefix("0"))
    if digits.startswith("0"):
        return _national(digits)
    if digits.startswith(_COUNTRY) and len(digits) in (11, 12):
        return _national("0" + digits[len(_COUNTRY) :])  # country code without the "+"
    if len(digits) in (9, 10):
        return _national("0" + digits)  # some carriers deliver the number without its 0
    return None


def _national(number: str) -> str | None:
    """Vietnam's plan since 2018: mobiles 0[35789] + 8 digits; landlines 02 + 9 digits."""
    if len(number) == 10 and number[1] in "35789":
        return number
    if len(number) == 11 and number[1] == "2":
        return number
    return None
