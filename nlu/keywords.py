"""Keyword matching for Vietnamese text as people type or say it: with or without diacritics,
any case. Pure functions over data (`nlu/data/emergency.json`, the catalogue's category
keywords); the safety net that works when no NLU model does."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data" / "emergency.json"
# Emergency numbers in priority order when words of several match (fire first: it spreads).
PRIORITY = ("114", "115", "113")


def fold(text: str, *, keep_marks: bool = False) -> str:
    """Lower case, runs of non-letters -> one space, padded with spaces for whole-word search;
    without `keep_marks` also no diacritics and đ -> d."""
    text = unicodedata.normalize("NFC", text.lower())
    if not keep_marks:
        bare = unicodedata.normalize("NFD", text.replace("đ", "d"))
        text = "".join(c for c in bare if unicodedata.category(c) != "Mn")
    return " " + re.sub(r"[\W_]+", " ", text).strip() + " "


def _marked(text: str) -> bool:
    """Written with Vietnamese diacritics? Then they are meant: "chạy" (run) is not "cháy"
    (fire). Text typed without any is matched folded, and may then match both."""
    return fold(text) != fold(text, keep_marks=True)


@cache
def emergency_words() -> dict[str, tuple[str, ...]]:
    data = json.loads(DATA.read_text("utf-8"))
    return {k: tuple(v) for k, v in data.items() if k.isdigit()}


def _score(text: str, words: Iterable[str]) -> int:
    """Whole-word matches, a phrase of n words weighing n."""
    keep = _marked(text)
    haystack = fold(text, keep_marks=keep)
    total = 0
    for word in words:
        needle = fold(word, keep_marks=keep).strip()
        if needle and f" {needle} " in haystack:
            total += len(needle.split())
    return total


def emergency_service(text: str) -> str | None:
    """The emergency number the text calls for (113/114/115), or None."""
    found = {n: _score(text, ws) for n, ws in emergency_words().items()}
    return next((n for n in PRIORITY if found.get(n)), None)


def suggest_category(text: str, keywords: Mapping[str, Iterable[str]]) -> str | None:
    """The category code whose keywords the text matches most; None when nothing matches."""
    best, best_score = None, 0
    for code, words in keywords.items():
        score = _score(text, words)
        if score > best_score:
            best, best_score = code, score
    return best
