"""The bots' settings from `IOC_*` variables (declared once in `VARIABLES`; the README's
configuration reference is checked against it). Secrets have no default: a channel without
its secrets is simply not served (its webhook answers 404)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ioc_core.config import ConfigError, Variable, variable_reader

VARIABLES: tuple[Variable, ...] = (
    Variable("IOC_TELEGRAM_TOKEN", "", "Telegram bot token (from @BotFather); unset: no Telegram."),
    Variable(
        "IOC_TELEGRAM_WEBHOOK_SECRET",
        "",
        "Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token (required with a token).",
    ),
    Variable("IOC_TELEGRAM_API_BASE", "https://api.telegram.org", "Telegram Bot API base URL."),
    Variable("IOC_ZALO_APP_ID", "", "Zalo app id (signs webhooks); unset: no Zalo."),
    Variable("IOC_ZALO_OA_SECRET", "", "Zalo OA secret key: verifies X-ZEvent-Signature."),
    Variable("IOC_ZALO_APP_SECRET", "", "Zalo app secret key: refreshes the OA access token."),
    Variable("IOC_ZALO_OA_ACCESS_TOKEN", "", "Zalo OA access token (first one; refreshed)."),
    Variable("IOC_ZALO_REFRESH_TOKEN", "", "Zalo OA refresh token (first one; rotated)."),
    Variable("IOC_ZALO_API_BASE", "https://openapi.zalo.me", "Zalo OA API base URL."),
    Variable("IOC_ZALO_OAUTH_BASE", "https://oauth.zaloapp.com", "Zalo OAuth base URL."),
    Variable("IOC_BOT_SESSION_TTL_S", "1800", "Idle seconds before a chat starts over.", int),
    Variable(
        "IOC_BOT_CHAT_RATE", "1", "Messages per second to one chat (Telegram's limit).", float
    ),
    Variable("IOC_BOT_GLOBAL_RATE", "30", "Messages per second per channel overall.", float),
    Variable("IOC_BOT_SEND_ATTEMPTS", "5", "Attempts to deliver a message before it is dead.", int),
)


@dataclass(frozen=True)
class BotSettings:
    telegram_token: str
    telegram_secret: str
    telegram_api: str
    zalo_app_id: str
    zalo_oa_secret: str
    zalo_app_secret: str
    zalo_access_token: str
    zalo_refresh_token: str
    zalo_api: str
    zalo_oauth: str
    session_ttl_s: int
    chat_rate: float
    global_rate: float
    send_attempts: int

    @property
    def telegram(self) -> bool:
        return bool(self.telegram_token)

    @property
    def zalo(self) -> bool:
        return bool(self.zalo_app_id and self.zalo_oa_secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BotSettings:
        g = variable_reader(VARIABLES, env)
        token, secret = g("IOC_TELEGRAM_TOKEN"), g("IOC_TELEGRAM_WEBHOOK_SECRET")
        if token and not secret:
            # Telegram signs nothing: without the secret anyone could post fake updates.
            raise ConfigError("IOC_TELEGRAM_WEBHOOK_SECRET is required with IOC_TELEGRAM_TOKEN")
        if (secret and not all(c.isalnum() or c in "_-" for c in secret)) or len(secret) > 256:
            raise ConfigError(
                "IOC_TELEGRAM_WEBHOOK_SECRET may hold only A-Z, a-z, 0-9, _ and - (1-256)"
            )
        return cls(
            telegram_token=token,
            telegram_secret=secret,
            telegram_api=g("IOC_TELEGRAM_API_BASE").rstrip("/"),
            zalo_app_id=g("IOC_ZALO_APP_ID"),
            zalo_oa_secret=g("IOC_ZALO_OA_SECRET"),
            zalo_app_secret=g("IOC_ZALO_APP_SECRET"),
            zalo_access_token=g("IOC_ZALO_OA_ACCESS_TOKEN"),
            zalo_refresh_token=g("IOC_ZALO_REFRESH_TOKEN"),
            zalo_api=g("IOC_ZALO_API_BASE").rstrip("/"),
            zalo_oauth=g("IOC_ZALO_OAUTH_BASE").rstrip("/"),
            session_ttl_s=g("IOC_BOT_SESSION_TTL_S", 1),
            chat_rate=g("IOC_BOT_CHAT_RATE", 0.01),
            global_rate=g("IOC_BOT_GLOBAL_RATE", 0.01),
            send_attempts=g("IOC_BOT_SEND_ATTEMPTS", 1),
        )
