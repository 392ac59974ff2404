"""Translations: Vietnamese first, English second, from JSON files per language.

The core's texts live in `ioc_core/locales/*.json`; a feature package keeps its own folder
and its own `Translator` over it (telephony/locales, ...)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("vi", "en")
DEFAULT = "vi"


class Translator:
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.catalog = cache(self._load)

    def _load(self, lang: str) -> dict[str, str]:
        data: dict[str, str] = json.loads((self._folder / f"{lang}.json").read_text("utf-8"))
        return data

    def t(self, key: str, lang: str = DEFAULT, **params: Any) -> str:
        """The text for `key` in `lang`, falling back to Vietnamese, then to the key itself."""
        lang = lang if lang in LANGUAGES else DEFAULT
        text = self.catalog(lang).get(key) or self.catalog(DEFAULT).get(key) or key
        return text.format(**params) if params else text

    def both(self, key: str, **params: Any) -> dict[str, str]:
        """{"vi": ..., "en": ...} for payloads a UI renders in either language."""
        return {lang: self.t(key, lang, **params) for lang in LANGUAGES}


_core = Translator(Path(__file__).parent / "locales")
catalog = _core.catalog
t = _core.t
both = _core.both


def pick_language(accept_language: str | None) -> str:
    """First supported language in an Accept-Language header; Vietnamese by default."""
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT
