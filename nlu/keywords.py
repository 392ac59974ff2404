"""Keyword matching for Vietnamese text as people type or say it: with or without diacritics,
any case. Pure functions over data (`nlu/data/emergency.json`, the catalogue's category
keywords); the safety net that works when no NLU model does."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from nlu.rasa.components.vietnamese import fold as bare
from nlu.rasa.components.vietnamese import has_marks, normalise

DATA = Path(__file__).parent / "data" / "emergency.json"
# Emergency numbers in priority order when words of several match (fire first: it spreads).
PRIORITY = ("114", "115", "113")


def fold(text: str, *, keep_marks: bool = False) -> str:
    """Lower case, abbreviations spelled out ("nha t bi chay" -> "nha tôi bi chay"), runs of
    non-letters -> one space, padded with spaces for whole-word search; without `keep_marks`
    also no diacritics and đ -> d."""
    text = normalise(text)
    if not keep_marks:
        text = bare(text)
    return " " + re.sub(r"[\W_]+", " ", text).strip() + " "


@cache
def _data() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads(DATA.read_text("utf-8"))
    return data


def emergency_words() -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in _data().items() if k.isdigit()}


@cache
def _ambiguous_bare() -> frozenset[str]:
    return frozenset(fold(w).strip() for w in _data().get("_ambiguous_bare", []))


def _matches(text: str, words: Iterable[str]) -> list[str]:
    """The words and phrases found whole in `text`, as matched."""
    # Written with diacritics, they are meant: "chạy" (run) is not "cháy" (fire). Text
    # typed without any is matched folded, and may then match both.
    keep = has_marks(text)
    haystack = fold(text, keep_marks=keep)
    found = []
    for word in words:
        needle = fold(word, keep_marks=keep).strip()
        if needle and f" {needle} " in haystack:
            found.append(needle)
    return found


def _score(text: str, words: Iterable[str]) -> int:
    """Whole-word matches, a phrase of n words weighing n."""
    return sum(len(m.split()) for m in _matches(text, words))


def emergency_service(text: str) -> str | None:
    """The emergency number the text calls for (113/114/115), or None. In text typed without
    diacritics, a word that is also an everyday word there ("chay": run, flow, fire) counts
    only beside another word of the same emergency ("bi chay", "chay nha")."""
    bare_text = not has_marks(text)
    ambiguous = _ambiguous_bare()
    for phrase in _data().get("_not_emergency", []):
        for found in _matches(text, [phrase]):
            text = fold(text, keep_marks=not bare_text).replace(f" {found} ", " ")
    for number in PRIORITY:
        hits = _matches(text, emergency_words().get(number, ()))
        if bare_text and all(h in ambiguous for h in hits) and len(hits) < 2:
            continue
        if hits:
            return number
    return None


def suggest_category(text: str, keywords: Mapping[str, Iterable[str]]) -> str | None:
    """The category code whose keywords the text matches most; None when nothing matches."""
    best, best_score = None, 0
    for code, words in keywords.items():
        score = _score(text, words)
        if score > best_score:
            best, best_score = code, score
    return best
