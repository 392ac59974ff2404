"""Keyword matching for Vietnamese text as people type or say it: with or without diacritics,
any case. Pure functions over data (the catalogue's category keywords; the emergency words
of nlu/text/emergency.json, matched in nlu/text/emergency.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nlu.text.emergency import emergency_service, emergency_words, matches, padded

__all__ = ["emergency_service", "emergency_words", "padded", "suggest_category"]


def _score(text: str, words: Iterable[str]) -> int:
    """Whole-word matches, a phrase of n words weighing n."""
    return sum(len(m.split()) for m in matches(text, words))


def suggest_category(text: str, keywords: Mapping[str, Iterable[str]]) -> str | None:
    """The category code whose keywords the text matches most; None when nothing matches."""
    best, best_score = None, 0
    for code, words in keywords.items():
        score = _score(text, words)
        if score > best_score:
            best, best_score = code, score
    return best
