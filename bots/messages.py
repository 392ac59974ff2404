"""What reaches the engine from any channel, what it answers, and where a conversation stands:
channel-agnostic values shared by the engine (bots.core) and the store beneath it (bots.store),
which keeps them and never imports the engine (an import-linter contract)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

Kind = Literal["text", "photo", "location", "choice", "unsupported"]
MAX_TEXT = 4000  # longer messages are cut (Telegram's own limit is 4096)


@dataclass(frozen=True, kw_only=True)
class Inbound:
    channel: str  # telegram | zalo | web
    chat_id: str
    message_id: str
    kind: Kind
    user_id: str = ""
    name: str = ""
    language: str = "vi"
    text: str = ""  # the text, a photo's caption, or a button's label
    choice: str = ""  # a button's payload
    photo: str = ""  # the channel's reference (Telegram file_id, Zalo URL, web upload id)
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (label, payload)
    ask_location: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.buttons:
            out["buttons"] = [list(b) for b in self.buttons]
        if self.ask_location:
            out["ask_location"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        return cls(
            text=str(data.get("text", "")),
            buttons=tuple((str(a), str(b)) for a, b in data.get("buttons", [])),
            ask_location=bool(data.get("ask_location", False)),
        )


# C0 controls but tab and newline, DEL, and C1 controls: never meant by a citizen, and NUL
# is refused by PostgreSQL in text (and in JSONB as \u0000), which would fail the turn.
_CONTROLS = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (9, 10)}


def clean_text(value: str) -> str:
    """`value` without control characters (tab and newline kept) and with lone surrogates
    (JSON may carry them; UTF-8 cannot) replaced."""
    value = value.translate(_CONTROLS)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def cleaned(msg: Inbound) -> Inbound:
    """`msg` safe to store: what a channel hands over, before any turn sees it."""
    c = clean_text
    return replace(
        msg,
        chat_id=c(msg.chat_id),
        message_id=c(msg.message_id),
        user_id=c(msg.user_id),
        name=c(msg.name),
        text=c(msg.text),
        choice=c(msg.choice),
        photo=c(msg.photo),
    )


@dataclass
class Conversation:
    flow: str | None = None
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    language: str = "vi"
    expired: bool = False  # the loader found the last flow timed out (and cleared it)

    def end(self) -> None:
        self.flow, self.step, self.data = None, None, {}
