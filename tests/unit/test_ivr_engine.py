"""The IVR state machine, table-driven: each case is a call, event by event, with the actions
the engine must answer each event with."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest

from telephony.ivr.engine import (
    Action,
    Digit,
    Event,
    Finish,
    Listen,
    Play,
    PromptDone,
    Record,
    Recorded,
    StopPrompt,
    Timeout,
    start,
    step,
)
from telephony.ivr.menus import HOTLINE_1022, Menu, load_menu, parse_menu

NOON = datetime(2025, 11, 26, 5, 0, tzinfo=UTC)  # Wednesday 12:00 in Hồ Chí Minh City
NIGHT = datetime(2025, 11, 26, 15, 0, tzinfo=UTC)  # Wednesday 22:00 there
HOTLINE = load_menu()


def _office_hours() -> Menu:
    """The 1022 menu with office hours instead of 24/7 (weekdays 07:30-17:00)."""
    data: dict[str, Any] = copy.deepcopy(tomllib.loads(HOTLINE_1022.read_text("utf-8")))
    week = {day: ["07:30-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    data["hours"] = {"closed_prompt": "closed", "closed_outcome": "record", **week}
    return parse_menu(data, name="office")


OFFICE = _office_hours()
NO_RETRY_PROMPTS = parse_menu(
    {
        "menu": {"start": "m"},
        "nodes": {
            "m": {
                "prompt": "service-menu",
                "retries": 1,
                "timeout_s": 2.5,
                "choices": {"1": {"outcome": "record"}},
                "on_invalid": {"outcome": "hangup"},
            }
        },
    },
    name="bare",
)

# The language menu, spoken fully in both languages before the engine listens.
LANG_PROMPTS = [
    Play("welcome", "vi"),
    Play("choose-language", "vi"),
    Play("welcome", "en"),
    Play("choose-language", "en"),
]
VI_MENU = Play("service-menu", "vi")
EN_MENU = Play("service-menu", "en")
DONE = PromptDone()


def _lang_heard() -> list[tuple[Event, list[Action]]]:
    """Events that play the language menu to its end: the engine then listens 4 s."""
    steps: list[tuple[Event, list[Action]]] = [(DONE, [p]) for p in LANG_PROMPTS[1:]]
    return [*steps, (DONE, [Listen(4.0)])]


CASES: list[tuple[str, Menu, datetime, list[Action], list[tuple[Event, list[Action]]]]] = [
    (
        "English, then report an incident, barging in on both menus",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            (Digit("2"), [StopPrompt(), EN_MENU]),
            (Digit("1"), [StopPrompt(), Play("describe", "en")]),
            (Digit("5"), [StopPrompt(), Record(20.0, "en")]),  # a key skips the instructions
            (Digit("#"), []),  # keys while recording are Asterisk's (# ends it)
            (DONE, []),  # a stale PromptDone does not move the caller
            (Recorded(), [Play("connecting", "en")]),
            (DONE, [Finish("queue", "en", (("lang", "2"), ("service", "1")), described=True)]),
        ],
    ),
    (
        "the status of a report: keys cut the prompt short, '*' means nothing, '#' ends it",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            *_lang_heard(),
            (Timeout(), [VI_MENU]),
            (Digit("2"), [StopPrompt(), Play("status-enter", "vi")]),
            (Digit("2"), [StopPrompt(), Listen(6.0)]),
            (DONE, []),  # the stopped prompt reporting
            (Digit("0"), [Listen(6.0)]),
            (Digit("*"), []),
            (
                Digit("#"),
                [Finish("status", "vi", (("service", "2"), ("status", "20")), entered="20")],
            ),
        ],
    ),
    (
        "the status of a report: silence after some keys ends the code",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            *_lang_heard(),
            (Timeout(), [VI_MENU]),
            (Digit("2"), [StopPrompt(), Play("status-enter", "vi")]),
            (DONE, [Listen(6.0)]),
            (Digit("#"), [Listen(6.0)]),  # nothing keyed yet: '#' alone ends nothing
            (Digit("7"), [Listen(6.0)]),
            (
                Timeout(),
                [Finish("status", "vi", (("service", "2"), ("status", "7")), entered="7")],
            ),
        ],
    ),
    (
        "the status of a report: nothing keyed in leads to an operator",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            *_lang_heard(),
            (Timeout(), [VI_MENU]),
            (Digit("2"), [StopPrompt(), Play("status-enter", "vi")]),
            (DONE, [Listen(6.0)]),
            (Timeout(), [Play("connecting", "vi")]),
            (DONE, [Finish("queue", "vi", (("service", "2"),))]),
        ],
    ),
    (
        "report an incident: the instructions play, then the recording; a failed recording "
        "still leads to the queue, without a description",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            *_lang_heard(),
            (Timeout(), [VI_MENU]),
            (Digit("1"), [StopPrompt(), Play("describe", "vi")]),
            (DONE, [Record(20.0, "vi")]),
            (Timeout(), []),  # no Listen period while recording
            (Recorded(saved=False), [Play("connecting", "vi")]),
            (DONE, [Finish("queue", "vi", (("service", "1"),))]),
        ],
    ),
    (
        "silence at the language menu keeps Vietnamese",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [*_lang_heard(), (Timeout(), [VI_MENU])],
    ),
    (
        "a wrong key at the language menu keeps Vietnamese and is not a choice",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            *_lang_heard(),
            (Digit("7"), [VI_MENU]),
            (Digit("0"), [StopPrompt(), Play("connecting", "vi")]),
            (DONE, [Finish("queue", "vi", (("service", "0"),))]),
        ],
    ),
    (
        "pressing 1 keeps Vietnamese explicitly",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            (Digit("1"), [StopPrompt(), VI_MENU]),
            (Digit("0"), [StopPrompt(), Play("connecting", "vi")]),
        ],
    ),
    (
        "a silent caller is offered the menu again, then reaches the queue",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            (Digit("1"), [StopPrompt(), VI_MENU]),
            (DONE, [Listen(6.0)]),
            (Timeout(), [Play("no-input", "vi")]),
            (DONE, [VI_MENU]),
            (DONE, [Listen(6.0)]),
            (Timeout(), [Play("connecting", "vi")]),
            (DONE, [Finish("queue", "vi", (("lang", "1"),))]),
        ],
    ),
    (
        "wrong keys: one more offer (barge-in works on it too), then the queue",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            (Digit("2"), [StopPrompt(), EN_MENU]),
            (Digit("5"), [StopPrompt(), Play("invalid", "en")]),
            (DONE, [EN_MENU]),
            (Digit("8"), [StopPrompt(), Play("connecting", "en")]),
            (Digit("1"), []),  # the announcement is not interrupted, nor the key counted
            (DONE, [Finish("queue", "en", (("lang", "2"),))]),
        ],
    ),
    (
        "a timeout and a wrong key share the retries",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            (Digit("1"), [StopPrompt(), VI_MENU]),
            (DONE, [Listen(6.0)]),
            (Timeout(), [Play("no-input", "vi")]),
            (Digit("6"), [StopPrompt(), Play("connecting", "vi")]),
        ],
    ),
    (
        "procedures, back to the main menu with *, hear it again with 9, then 0",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            (Digit("1"), [StopPrompt(), VI_MENU]),
            (Digit("3"), [StopPrompt(), Play("procedures", "vi")]),
            (DONE, [Listen(6.0)]),
            (Digit("*"), [VI_MENU]),
            (Digit("9"), [StopPrompt(), VI_MENU]),
            (DONE, [Listen(6.0)]),
            (Digit("0"), [Play("connecting", "vi")]),
            (
                DONE,
                [
                    Finish(
                        "queue",
                        "vi",
                        (
                            ("lang", "1"),
                            ("service", "3"),
                            ("procedures", "*"),
                            ("service", "9"),
                            ("service", "0"),
                        ),
                    )
                ],
            ),
        ],
    ),
    (
        "going back to a node gives it its retries again",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            (Digit("1"), [StopPrompt(), VI_MENU]),
            (Digit("4"), [StopPrompt(), Play("invalid", "vi")]),  # 1 of 1 retry used
            (Digit("3"), [StopPrompt(), Play("procedures", "vi")]),
            (Digit("*"), [StopPrompt(), VI_MENU]),
            (Digit("4"), [StopPrompt(), Play("invalid", "vi")]),  # offered again, not given up
        ],
    ),
    (
        "# in procedures says goodbye and hangs up",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [
            (Digit("2"), [StopPrompt(), EN_MENU]),
            (Digit("3"), [StopPrompt(), Play("procedures", "en")]),
            (Digit("#"), [StopPrompt(), Play("goodbye", "en")]),
            (
                DONE,
                [Finish("hangup", "en", (("lang", "2"), ("service", "3"), ("procedures", "#")))],
            ),
            (Digit("1"), []),  # done is done
            (DONE, []),
            (Timeout(), []),
        ],
    ),
    (
        "out of hours the language menu still plays, then the closed message and record",
        OFFICE,
        NIGHT,
        [Play("welcome", "vi")],
        [
            (Digit("2"), [StopPrompt(), Play("closed", "en")]),
            (Digit("0"), []),  # "leave a message after the tone" is heard in full
            (DONE, [Finish("record", "en", (("lang", "2"),))]),
        ],
    ),
    (
        "out of hours, silence still ends in the closed message (Vietnamese)",
        OFFICE,
        NIGHT,
        [Play("welcome", "vi")],
        [*_lang_heard(), (Timeout(), [Play("closed", "vi")]), (DONE, [Finish("record", "vi", ())])],
    ),
    (
        "during office hours the office menu behaves like 1022",
        OFFICE,
        NOON,
        [Play("welcome", "vi")],
        [(Digit("1"), [StopPrompt(), VI_MENU])],
    ),
    (
        "stale events are ignored: a late timer while a prompt plays",
        HOTLINE,
        NOON,
        [Play("welcome", "vi")],
        [(Timeout(), []), (DONE, [Play("choose-language", "vi")])],
    ),
    (
        "a menu without sorry-prompts re-offers directly; an outcome without say ends at once",
        NO_RETRY_PROMPTS,
        NOON,
        [VI_MENU],
        [
            (DONE, [Listen(2.5)]),
            (Timeout(), [VI_MENU]),
            (DONE, [Listen(2.5)]),
            (Digit("1"), [Finish("record", "vi", (("m", "1"),))]),
        ],
    ),
    (
        "give-up targets need no announcement either",
        NO_RETRY_PROMPTS,
        NOON,
        [VI_MENU],
        [
            (Digit("3"), [StopPrompt(), VI_MENU]),
            (Digit("3"), [StopPrompt(), Finish("hangup", "vi", ())]),
        ],
    ),
]


@pytest.mark.parametrize(
    ("menu", "now", "first", "steps"),
    [pytest.param(m, n, f, s, id=name) for name, m, n, f, s in CASES],
)
def test_calls(
    menu: Menu, now: datetime, first: list[Action], steps: list[tuple[Event, list[Action]]]
) -> None:
    state, actions = start(menu, now)
    assert actions == first
    for number, (event, expected) in enumerate(steps, start=1):
        state, actions = step(menu, state, event)
        assert actions == expected, f"step {number}: {event}"


def test_a_closed_start_node_announces_at_once() -> None:
    menu = parse_menu(
        {
            "menu": {"start": "s"},
            "hours": {"closed_prompt": "closed", "mon": ["08:00-17:00"]},
            "nodes": {"s": {"prompt": "service-menu", "during_hours": True}},
        },
        name="closed",
    )
    state, actions = start(menu, NIGHT)
    assert actions == [Play("closed", "vi")]
    assert state.phase == "announcing" and not state.is_open
    assert step(menu, state, DONE)[1] == [Finish("record", "vi", ())]


def test_the_engine_is_pure() -> None:
    """The same state and event always give the same answer; states are values."""
    state, _ = start(HOTLINE, NOON)
    first = step(HOTLINE, state, Digit("2"))
    again = step(HOTLINE, state, Digit("2"))
    assert first == again
    assert state.node == "lang" and state.language == "vi"  # the old state is untouched
    assert first[0].language == "en" and first[0].node == "service"
