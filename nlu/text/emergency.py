"""The emergency pre-check's matching: 113/114/115 written on their own, and the words of
emergency.json with or without diacritics. The hub (nlu/safety.py, nlu/keywords.py) and
Rasa's own pipeline (components/precheck.py) run this same code: one word list, one
behaviour."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from nlu.text.vietnamese import fold, has_marks, normalise

DATA = Path(__file__).with_name("emergency.json")
# Emergency numbers in priority order when words of several match (fire first: it spreads).
PRIORITY = ("114", "115", "113")
INTENT_OF = {"113": "emergency_police", "114": "emergency_fire", "115": "emergency_medical"}
NUMBER_OF = {intent: number for number, intent in INTENT_OF.items()}
# 113/114/115 written on their own ("gọi 115", "114!!"), not inside a longer number such as a
# phone number, a house number (115/3 Lê Lợi) or a tracking code.
_NUMBER = re.compile(r"(?<![\w/-])(11[345])(?![\w/-])")


def padded(text: str, *, keep_marks: bool = False) -> str:
    """The text as a haystack for whole-word search: lower case, abbreviations spelled out
    ("nha t bi chay" -> "nha tôi bi chay"), runs of non-letters -> one space, padded with
    spaces; without `keep_marks` also folded (no diacritics, đ -> d)."""
    text = normalise(text)
    if not keep_marks:
        text = fold(text)
    return " " + re.sub(r"[\W_]+", " ", text).strip() + " "


@cache
def _data() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads(DATA.read_text("utf-8"))
    return data


def emergency_words() -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in _data().items() if k.isdigit()}


@cache
def _ambiguous_bare() -> frozenset[str]:
    return frozenset(padded(w).strip() for w in _data().get("_ambiguous_bare", []))


def matches(text: str, words: Iterable[str]) -> list[str]:
    """The words and phrases found whole in `text`, as matched."""
    # Written with diacritics, they are meant: "chạy" (run) is not "cháy" (fire). Text
    # typed without any is matched folded, and may then match both.
    keep = has_marks(text)
    haystack = padded(text, keep_marks=keep)
    found = []
    for word in words:
        needle = padded(word, keep_marks=keep).strip()
        if needle and f" {needle} " in haystack:
            found.append(needle)
    return found


def emergency_service(text: str) -> str | None:
    """The emergency number the text calls for (113/114/115), or None. In text typed without
    diacritics, a word that is also an everyday word there ("chay": run, flow, fire) counts
    only beside another word of the same emergency ("bi chay", "chay nha")."""
    bare_text = not has_marks(text)
    ambiguous = _ambiguous_bare()
    for phrase in _data().get("_not_emergency", []):
        for found in matches(text, [phrase]):
            text = padded(text, keep_marks=not bare_text).replace(f" {found} ", " ")
    for number in PRIORITY:
        hits = matches(text, emergency_words().get(number, ()))
        if bare_text and all(h in ambiguous for h in hits) and len(hits) < 2:
            continue
        if hits:
            return number
    return None


def emergency_number(text: str) -> str | None:
    """The emergency number `text` calls for (113 police, 114 fire, 115 ambulance), or None."""
    numbers = _NUMBER.findall(text)
    if numbers:
        return str(numbers[0])
    return emergency_service(text)
