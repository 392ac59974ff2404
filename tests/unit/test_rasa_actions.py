"""Rasa's action protocol as the hub reads and writes it (bots/rasa/actions.py): requests are
checked saying what is wrong, slots fill what the latest message did not say, and replies
become Rasa responses. Pure; the actions themselves run in tests/integration."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from bots.messages import Reply
from bots.rasa.actions import (
    PUSHED,
    ActionError,
    RasaActions,
    rasa_response,
    read_call,
    relayed_reply,
)
from nlu.server import PROJECT

TRACKER: dict[str, Any] = {
    "sender_id": "c1",
    "slots": {"report_code": "PA-2026-000123", "location": None},
    "latest_message": {
        "text": "cho tôi 5 sao",
        "intent": {"name": "rate_service", "confidence": 0.93},
        "entities": [{"entity": "rating", "value": "5", "start": 8, "end": 9}],
        "message_id": "m1",
        "metadata": {"language": "en"},
    },
}


def request(**over: Any) -> dict[str, Any]:
    return {"next_action": "action_rate_service", "sender_id": "c1", "tracker": TRACKER, **over}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ([], 400, "JSON object"),
        ({"sender_id": "c1", "tracker": {}}, 400, "next_action"),
        (request(sender_id=""), 400, "sender_id"),
        (request(sender_id="x" * 65), 400, "longer than 64"),
        (request(tracker=None), 400, "tracker"),
        (request(tracker={"latest_message": "hi"}), 400, "latest_message must be"),
        (request(tracker={"slots": [1]}), 400, "slots must be"),
        (request(tracker={"latest_message": {"text": 5}}), 400, "text is text"),
        (request(tracker={"latest_message": {"entities": "x"}}), 400, "entities a list"),
    ],
)
def test_a_bad_request_is_refused_saying_what_is_wrong(body: Any, status: int, says: str) -> None:
    with pytest.raises(ActionError) as caught:
        read_call(body)
    assert caught.value.status == status and says in caught.value.message
    # Rasa's action client reads exactly these two keys of a 400.
    assert set(caught.value.as_dict()) == {"error", "action_name"}


def test_a_request_is_read_with_its_slots_and_language() -> None:
    call = read_call(request())
    assert (call.action, call.sender_id, call.language, call.message_id) == (
        "action_rate_service",
        "c1",
        "en",
        "m1",
    )
    u = call.understanding()
    assert (u.intent, u.entity("rating")) == ("rate_service", "5")
    # The code was given two messages earlier: the slot fills in for it.
    assert u.entity("report_code") == "PA-2026-000123"
    assert u.entity("location") is None


def test_an_unknown_language_keeps_the_chats_own() -> None:
    tracker = {**TRACKER, "latest_message": {**TRACKER["latest_message"], "metadata": {}}}
    assert read_call(request(tracker=tracker)).language == ""
    tracker["latest_message"]["metadata"] = {"language": "fr"}
    assert read_call(request(tracker=tracker)).language == ""


def test_the_pre_check_runs_on_what_rasa_passes_on() -> None:
    """An emergency Rasa read as something else still names the number."""
    latest = {"text": "cháy nhà rồi cứu với", "intent": {"name": "greet", "confidence": 0.6}}
    u = read_call(request(tracker={"latest_message": latest})).understanding()
    assert (u.intent, u.emergency) == ("emergency_fire", "114")


def test_buttons_send_their_label_back_for_rasa_to_understand() -> None:
    reply = Reply("Chọn phường", (("Phường Tân Phú", "area:25213|Phường Tân Phú"),))
    assert rasa_response(reply) == {
        "text": "Chọn phường",
        "buttons": [{"title": "Phường Tân Phú", "payload": "Phường Tân Phú"}],
    }
    assert rasa_response(Reply("Xin chào")) == {"text": "Xin chào"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            json.dumps({"text": "Hồ sơ đã xử lý", "buttons": [["Đánh giá", "flow:rate"]]}),
            Reply("Hồ sơ đã xử lý", (("Đánh giá", "flow:rate"),)),
        ),
        ("văn bản thường", Reply("văn bản thường")),
        ("[1, 2]", Reply("[1, 2]")),
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_a_pushed_reply_is_read_back(value: Any, expected: Reply | None) -> None:
    assert relayed_reply(value) == expected


def test_the_domain_names_every_action_the_hub_serves() -> None:
    """Both ways: an action Rasa may call that the hub lacks is a 404 at run time, and one
    the hub serves that the domain lacks is never called."""
    import yaml

    domain = yaml.safe_load((PROJECT / "domain.yml").read_text("utf-8"))
    custom = {a for a in domain["actions"] if not a.startswith("utter_")}
    nothing = cast(Any, None)  # the table is made without touching its parts
    served = RasaActions(engine=nothing, store=nothing, services=nothing, channel=nothing).names
    assert custom == served
    assert PUSHED in domain["intents"]
