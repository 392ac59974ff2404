"""Vietnamese as typed, the emergency pre-check, and how a parse is combined with it."""

from __future__ import annotations

from typing import Any

import pytest

from nlu.client import understanding
from nlu.examples import parse_example
from nlu.safety import emergency_number
from nlu.text.vietnamese import fold, has_marks, normalise, words


@pytest.mark.parametrize(
    ("typed", "spelled"),
    [
        ("Đường ko có đèn", "đường không có đèn"),
        ("nha t bi ngap r", "nha tôi bi ngap rồi"),
        ("bn ngày thì xong dzậy", "bao nhiêu ngày thì xong vậy"),
        ("tui hổng bít", "tôi không bít"),
        ("mã PA-2026-000123 sao rồi", "mã pa-2026-000123 sao rồi"),
        ("", ""),
    ],
)
def test_typed_text_is_spelled_out(typed: str, spelled: str) -> None:
    assert normalise(typed) == spelled


def test_offsets_point_at_what_was_typed() -> None:
    text = "ổ gà ở đg Lê Lợi ko ai sửa"
    for word, start, end in words(text):
        assert text[start:end].lower() in (word, "đg", "ko")
    # Decomposed marks (some keyboards) read the same as composed ones.
    import unicodedata

    assert normalise(unicodedata.normalize("NFD", "Cháy nhà")) == "cháy nhà"


def test_folding_and_marks() -> None:
    assert fold("ĐỒNG Xoài") == "dong xoai"
    assert has_marks("cháy") and not has_marks("chay nha")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("gọi 115 giúp tôi", "115"),
        ("114!!!", "114"),
        ("nha toi bi chay", "114"),
        ("co nguoi bat tinh", "115"),
        ("bị cướp giật", "113"),
        ("số nhà 115/3 Lê Lợi bị mất điện", None),  # a house number is not a call for help
        ("sđt 0911345678", None),
        ("mã PA-2026-000113", None),
        ("đèn đường hỏng", None),
    ],
)
def test_emergency_number(text: str, number: str | None) -> None:
    assert emergency_number(text) == number


def _parse(intent: str, confidence: float, entities: list[dict[str, Any]] | None = None) -> Any:
    return {"intent": {"name": intent, "confidence": confidence}, "entities": entities or []}


@pytest.mark.parametrize(
    ("text", "parsed", "intent", "source", "emergency"),
    [
        # Rasa down: the pre-check alone; no emergency -> nothing understood.
        ("nhà tôi bị cháy", None, "emergency_fire", "safety", "114"),
        ("đèn đường hỏng", None, None, "unavailable", None),
        # Rasa missed an emergency the pre-check sees: the emergency wins.
        ("cướp! cứu với", _parse("greet", 0.6), "emergency_police", "safety", "113"),
        # Rasa found one the keywords do not know.
        (
            "ông tôi lên cơn co giật",
            _parse("emergency_medical", 0.8),
            "emergency_medical",
            "rasa",
            "115",
        ),
        ("ổ gà to quá", _parse("report_incident", 0.9), "report_incident", "rasa", None),
    ],
)
def test_understanding(
    text: str, parsed: Any, intent: str | None, source: str, emergency: str | None
) -> None:
    u = understanding(text, parsed)
    assert (u.intent, u.source, u.emergency) == (intent, source, emergency)


def test_entities_are_deduplicated_and_codes_upper_case() -> None:
    raw = [
        {"entity": "report_code", "value": "pa-2026-000045", "start": 4, "end": 18},
        {"entity": "report_code", "value": "pa-2026-000045", "start": 4, "end": 18},
        {"entity": "mystery", "value": "x", "start": 0, "end": 1},
    ]
    u = understanding("mã pa-2026-000045", _parse("check_status", 0.9, raw))
    assert u.entities == [
        {"entity": "report_code", "value": "PA-2026-000045", "start": 4, "end": 18}
    ]
    assert u.entity("report_code") == "PA-2026-000045"
    assert u.entity("location") is None


def test_training_markup_is_read_back() -> None:
    ex = parse_example(
        'có [ổ gà]{"entity": "category", "value": "ha_tang.duong_cau"} ở [đường Lê Lợi](location)',
        "report_incident",
    )
    assert ex.text == "có ổ gà ở đường Lê Lợi"
    assert ex.entities == [
        {"entity": "category", "value": "ha_tang.duong_cau", "start": 3, "end": 7},
        {"entity": "location", "value": "đường Lê Lợi", "start": 10, "end": 22},
    ]


def test_an_unsure_model_raises_no_alarm_alone() -> None:
    u = understanding("co o ga lon o duong Le Loi", _parse("emergency_police", 0.42))
    assert (u.intent, u.emergency) == ("emergency_police", None)
    sure = understanding("ông tôi co giật", _parse("emergency_medical", 0.9))
    assert sure.emergency == "115"


def test_the_pre_check_agreeing_with_an_unsure_model_still_alarms() -> None:
    u = understanding("nhà tôi bị cháy", _parse("emergency_fire", 0.3))
    assert (u.intent, u.emergency, u.source) == ("emergency_fire", "114", "rasa")
