"""Text no input may hold, and JSON nesting, checked without parsing (item 14 of issue 11)."""

from __future__ import annotations

import pytest

from bots.web import Malformed, parse_json
from ioc_core.http import (
    MAX_JSON_DEPTH,
    ForbiddenCharacter,
    JsonTooDeep,
    json_depth,
    loads_json,
    refuse_forbidden_text,
)


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["]]]]", "[[[["]', 1),  # brackets inside strings do not count
        (b'["\\"[[["]', 1),  # nor after an escaped quote
        (b"[" * 10_000 + b"]" * 10_000, 10_000),
    ],
)
def test_json_depth(raw: bytes, depth: int) -> None:
    assert json_depth(raw) == depth


@pytest.mark.parametrize("ok", ["Tiếng Việt", "dòng 1\ndòng 2", "a\tb\r\n", "😀", "\u00a0"])
def test_free_text_passes(ok: str) -> None:
    refuse_forbidden_text(ok, "f")


@pytest.mark.parametrize(
    "bad", ["\x00", "\x01", "\x0b", "\x1b", "\x7f", "\x85", "\ud800", "\ufffe"]
)
def test_controls_are_refused(bad: str) -> None:
    with pytest.raises(ForbiddenCharacter, match="note"):
        refuse_forbidden_text(f"a{bad}b", "note")


def test_defect_14_bot_webhook_json_limits_depth_and_keeps_the_citizens_words() -> None:
    """The bots' webhooks read JSON through the core's reader: a 10,000-deep body refused
    before parsing (it was a RecursionError), bad JSON still theirs; a NUL in a citizen's text
    is not refused here (the cloud would drop the update unanswered): the channel cleans it."""
    update = parse_json(b'{"update_id": 1, "message": {"text": "xin ch\\u0000ao"}}')
    assert update["message"]["text"] == "xin ch\x00ao"
    with pytest.raises(ForbiddenCharacter, match=r"message\.text"):
        loads_json(b'{"message": {"text": "xin ch\\u0000ao"}}')
    with pytest.raises(JsonTooDeep):
        parse_json(b'{"update_id": 1, "message": ' + b"[" * 10_000 + b"]" * 10_000 + b"}")
    with pytest.raises(Malformed):
        parse_json(b"{not json")
    assert parse_json(b'{"update_id": 1, "message": {"text": "a\\nb"}}')["update_id"] == 1
    assert loads_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
