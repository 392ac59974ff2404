"""The switchboard's texts for operators, from `telephony/locales/*.json` (the IVR's spoken
prompts have their own files)."""

from __future__ import annotations

from pathlib import Path

from ioc_core.i18n import Translator

_texts = Translator(Path(__file__).parent / "locales")
t = _texts.t


def said(key: str, **params: object) -> str:
    """One message in both languages, Vietnamese first ("vi / en"), for API errors."""
    return f"{t(key, 'vi', **params)} / {t(key, 'en', **params)}"
