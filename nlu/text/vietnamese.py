"""Vietnamese text as people type it: with or without diacritics, in chat abbreviations and
southern speech. The hub (bots, the safety net) and the Rasa components (tokenizer, e5) share
it; `fold` is the one folding of the project."""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

ABBREVIATIONS = Path(__file__).with_name("abbreviations.json")
# A tracking code stays one token (PA-2026-000123); otherwise runs of letters and digits.
TOKEN = re.compile(r"[A-Za-z]{1,5}-\d{4}-\d{1,6}|\w+")


def fold(text: str) -> str:
    """Lower case without diacritics, đ -> d: how people type on a phone without a
    Vietnamese keyboard ("chay nha" for "cháy nhà")."""
    bare = unicodedata.normalize("NFD", unicodedata.normalize("NFC", text).lower())
    return "".join(c for c in bare if unicodedata.category(c) != "Mn").replace("đ", "d")


def has_marks(text: str) -> bool:
    """Written with Vietnamese diacritics? Then they are meant: "chạy" (run) is not "cháy"."""
    return fold(text) != unicodedata.normalize("NFC", text).lower()


@cache
def abbreviations() -> dict[str, str]:
    data = json.loads(ABBREVIATIONS.read_text("utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def words(text: str, *, lower: bool = True) -> list[tuple[str, int, int]]:
    """(word, start, end) with offsets into `text`, in NFC, with chat abbreviations and
    southern forms spelled out ("ko" -> "không", "dzậy" -> "vậy"), so "bn" and "bao nhiêu"
    read the same. Offsets keep pointing at what was typed. `lower=False` keeps the case of
    words as typed (capitals mark names: entity extractors use them)."""
    out = []
    # NFC keeps offsets stable for text typed in either normal form: most keyboards send NFC,
    # some (macOS, older Android) decomposed marks, which NFC folds into the same letters.
    nfc = unicodedata.normalize("NFC", text)
    expand = abbreviations()
    for m in TOKEN.finditer(nfc):
        typed = m.group()
        word = expand.get(typed.lower())
        out.append((word or (typed.lower() if lower else typed), m.start(), m.end()))
    return out


def normalise(text: str) -> str:
    """The text as one line of spelled-out, lower-case words (for matching and embeddings)."""
    return " ".join(w for w, _s, _e in words(text))
