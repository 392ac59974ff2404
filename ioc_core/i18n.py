"""Translations: Vietnamese first, English second, from `ioc_core/locales/*.json`."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

LANGUAGES = ("vi", "en")
DEFAULT = "vi"


@cache
def catalog(lang: str) -> dict[str, str]:
    text = resources.files("ioc_core.locales").joinpath(f"{lang}.json").read_text("utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def t(key: str, lang: str = DEFAULT, **params: Any) -> str:
    """The text for `key` in `lang`, falling back to Vietnamese, then to the key itself."""
    lang = lang if lang in LANGUAGES else DEFAULT
    text = catalog(lang).get(key) or catalog(DEFAULT).get(key) or key
    return text.format(**params) if params else text


def both(key: str, **params: Any) -> dict[str, str]:
    """{"vi": ..., "en": ...} for payloads a UI renders in either language."""
    return {lang: t(key, lang, **params) for lang in LANGUAGES}


def pick_language(accept_language: str | None) -> str:
    """First supported language in an Accept-Language header; Vietnamese by default."""
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT
