"""NLU settings from `IOC_*` variables (declared once in `VARIABLES`; the README's
configuration reference is checked against it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ioc_core.config import ConfigError, Variable, variable_reader

VARIABLES: tuple[Variable, ...] = (
    Variable(
        "IOC_RASA",
        "auto",
        "Rasa server: auto (start it when set up), off (bots run menu-driven, no NLU).",
    ),
    Variable(
        "IOC_RASA_PYTHON",
        "(pyenv 3.10)",
        "Python 3.10 interpreter for Rasa's venv (default: pyenv's newest 3.10).",
    ),
    Variable("IOC_RASA_PORT", "5005", "Port of the project's own Rasa server (127.0.0.1).", int),
    Variable(
        "IOC_RASA_URL",
        "",
        "Use this Rasa server instead of starting one (e.g. http://nlu:5005).",
    ),
    Variable(
        "IOC_RASA_TOKEN",
        "(generated)",
        "Rasa API token, also asked of Rasa's calls to the hub's actions; kept in secrets.json "
        "if unset.",
    ),
    Variable(
        "IOC_RASA_CREDENTIALS",
        "",
        "Rasa credentials.yml enabling Rasa's own channels (rest, socketio); unset: none.",
    ),
    Variable(
        "IOC_NLU_TIMEOUT_MS",
        "1500",
        "How long a bot waits for Rasa before answering menu-driven.",
        int,
    ),
    Variable(
        "IOC_NLU_RETRY_S",
        "10",
        "After Rasa failed, seconds before it is asked again (menu-driven meanwhile).",
        int,
    ),
    Variable(
        "IOC_NLU_MIN_CONFIDENCE",
        "0.45",
        "Intent confidence below which the bot asks the citizen to choose.",
        float,
    ),
)


@dataclass(frozen=True)
class NluSettings:
    mode: str
    python: str
    port: int
    url: str
    token: str
    credentials: str
    timeout_ms: int
    retry_s: int
    min_confidence: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NluSettings:
        g = variable_reader(VARIABLES, env)
        mode = g("IOC_RASA")
        if mode not in ("auto", "off"):
            raise ConfigError(f"IOC_RASA must be auto or off, got {mode!r}")
        port = g("IOC_RASA_PORT", 1)
        if port > 65535:
            raise ConfigError(f"IOC_RASA_PORT={port} is out of range")
        confidence = g("IOC_NLU_MIN_CONFIDENCE", 0)
        if confidence > 1:
            raise ConfigError("IOC_NLU_MIN_CONFIDENCE must be between 0 and 1")
        return cls(
            mode=mode,
            python=g("IOC_RASA_PYTHON"),
            port=port,
            url=g("IOC_RASA_URL").rstrip("/"),
            token=g("IOC_RASA_TOKEN"),
            credentials=g("IOC_RASA_CREDENTIALS"),
            timeout_ms=g("IOC_NLU_TIMEOUT_MS", 1),
            retry_s=g("IOC_NLU_RETRY_S", 0),
            min_confidence=confidence,
        )
