"""The voice menu file: the shipped 1022 menu, opening hours, and strict validation."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from telephony.ivr import prompts
from telephony.ivr.menus import HOTLINE_1022, QUEUE, MenuError, Target, load_menu, parse_menu

BASE: dict[str, Any] = tomllib.loads(HOTLINE_1022.read_text("utf-8"))
VN = timezone(timedelta(hours=7))


def test_the_1022_menu_loads() -> None:
    menu = load_menu()
    assert menu.name == "hotline-1022"
    assert menu.start == "lang" and menu.default_language == "vi"
    assert menu.languages == ("vi", "en")
    lang = menu.nodes["lang"]
    assert lang.all_languages and lang.prompts == ("welcome", "choose-language")
    assert lang.choices["1"] == Target(node="service", language="vi")
    assert lang.choices["2"] == Target(node="service", language="en")
    service = menu.nodes["service"]
    assert service.during_hours
    assert {d: t.outcome for d, t in service.choices.items() if t.outcome} == {"0": "queue"}
    assert service.choices["2"].node == "status"
    status = menu.nodes["status"]
    assert status.collect_digits == 12 and status.then == Target(outcome="status")
    assert service.choices["3"].node == "procedures"
    # "Report an incident": the caller says what happened after the tone, then is queued.
    assert service.choices["1"].node == "describe"
    describe = menu.nodes["describe"]
    assert describe.record_s == 20 and not describe.choices
    assert describe.then == Target(outcome="queue", say="connecting")
    assert menu.closed_outcome == "record" and menu.closed_prompt == "closed"


def test_every_prompt_of_the_menu_is_translated_in_both_languages() -> None:
    names = load_menu().prompt_names()
    for language in prompts.LANGUAGES:
        assert names <= set(prompts.catalog(language)), language


def test_silence_and_wrong_keys_never_drop_a_caller() -> None:
    """Every give-up path of the 1022 menu ends in another node or the queue."""
    for node in load_menu().nodes.values():
        for target in (node.on_timeout, node.on_invalid):
            assert target.node is not None or target.outcome == "queue", node.name


def test_1022_is_open_around_the_clock() -> None:
    menu = load_menu()
    start = datetime(2025, 11, 24, tzinfo=VN)  # a Monday
    for hour in range(0, 7 * 24, 5):
        assert menu.is_open(start + timedelta(hours=hour, minutes=59))


def _with(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(sections)
    return data


OFFICE = _with(
    hours={
        "timezone": "Asia/Ho_Chi_Minh",
        "closed_prompt": "closed",
        "mon": ["07:30-11:30", "13:30-17:00"],
        "tue": ["07:30-11:30", "13:30-17:00"],
        "sat": ["08:00-24:00"],
    }
)


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        (datetime(2025, 11, 24, 7, 29, tzinfo=VN), False),  # Monday, before opening
        (datetime(2025, 11, 24, 7, 30, tzinfo=VN), True),  # the first minute
        (datetime(2025, 11, 24, 11, 29, tzinfo=VN), True),
        (datetime(2025, 11, 24, 11, 30, tzinfo=VN), False),  # the end is exclusive: lunch
        (datetime(2025, 11, 24, 13, 30, tzinfo=VN), True),
        (datetime(2025, 11, 24, 17, 0, tzinfo=VN), False),
        (datetime(2025, 11, 26, 9, 0, tzinfo=VN), False),  # Wednesday is not listed: closed
        (datetime(2025, 11, 29, 23, 59, tzinfo=VN), True),  # Saturday until midnight
        (datetime(2025, 11, 30, 0, 0, tzinfo=VN), False),  # ... and not past it
        # UTC in, local time decides: 00:30 UTC is 07:30 in Hồ Chí Minh City.
        (datetime(2025, 11, 24, 0, 30, tzinfo=UTC), True),
        (datetime(2025, 11, 24, 0, 29, tzinfo=UTC), False),
        # Sunday 23:00 UTC is Monday 06:00 local: still closed, and Monday's rule applies.
        (datetime(2025, 11, 23, 23, 0, tzinfo=UTC), False),
        (datetime(2025, 11, 24, 6, 0, tzinfo=UTC), False),  # Monday 13:00 local: lunch
    ],
)
def test_opening_hours_follow_the_local_week(when: datetime, is_open: bool) -> None:
    menu = parse_menu(OFFICE, name="office")
    assert menu.is_open(when) is is_open


def test_opening_hours_need_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        load_menu().is_open(datetime(2025, 11, 24, 9, 0))


def test_a_menu_without_hours_is_always_open_and_a_missing_target_means_the_queue() -> None:
    menu = parse_menu(
        {"menu": {"start": "a"}, "nodes": {"a": {"prompt": "service-menu"}}}, name="tiny"
    )
    assert menu.is_open(datetime(2025, 1, 1, 3, 0, tzinfo=UTC))
    node = menu.nodes["a"]
    assert node.on_timeout == QUEUE and node.on_invalid == QUEUE
    assert (node.timeout_s, node.retries) == (5.0, 2)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to the 1022 file: `path` is dotted, a value of DELETE removes the key."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        if value is DELETE:
            del data[last]
        else:
            data[last] = value

    return change


DELETE = object()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("menu.start", "nowhere"), "[menu] start: unknown node 'nowhere'"),
        (_set("menu.start", DELETE), "[menu] start: must be a non-empty string"),
        (_set("menu.colour", "blue"), "[menu]: unknown key(s) colour"),
        (_set("menu.languages", ["vi", "fr"]), "'fr' has no prompts"),
        (_set("menu.languages", []), "[menu] languages: must be a non-empty list"),
        (_set("menu.languages", ["vi", "vi"]), "listed twice"),
        (_set("menu.invalid_prompt", "oops"), "prompt 'oops' is not in"),
        (_set("nodes", {}), "[nodes]: a menu needs at least one node"),
        (
            _set("nodes.service.choices.3", {"next": "procedure"}),
            "node 'service' choice '3': unknown node 'procedure'",
        ),
        (
            _set("nodes.service.choices.5", {"outcome": "voicemail"}),
            "node 'service' choice '5': outcome 'voicemail' is not one of queue, record, hangup",
        ),
        (
            _set("nodes.service.choices.12", {"outcome": "queue"}),
            "node 'service' choices: '12' is not a DTMF key",
        ),
        (
            _set("nodes.service.choices.A", {"outcome": "queue"}),
            "node 'service' choices: 'A' is not a DTMF key",
        ),
        (
            _set("nodes.service.choices.1", {"next": "procedures", "outcome": "queue"}),
            "node 'service' choice '1': needs exactly one of next",
        ),
        (
            _set("nodes.service.choices.1", {"language": "en"}),
            "node 'service' choice '1': needs exactly one of next",
        ),
        (
            _set("nodes.service.choices.1", {"outcome": "queue", "say": "hold-music"}),
            "node 'service' choice '1' say: prompt 'hold-music' is not in",
        ),
        (
            _set("nodes.service.choices.1", {"outcome": "queue", "language": "fr"}),
            "node 'service' choice '1': language 'fr' is not in [menu] languages",
        ),
        (
            _set("nodes.service.choices.1", {"outcome": "queue", "then": "x"}),
            "node 'service' choice '1': unknown key(s) then",
        ),
        (_set("nodes.service.choices", ["1"]), "node 'service' choices: must be a table"),
        (_set("nodes.service.prompt", "menu-serivce"), "node 'service' prompt: prompt 'menu-"),
        (_set("nodes.service.prompt", []), "node 'service': prompt must name at least one"),
        (_set("nodes.service.prompt", DELETE), "node 'service' prompt: must be a non-empty"),
        (_set("nodes.service.timeout_s", 0), "node 'service' timeout_s: must be above 0"),
        (_set("nodes.service.timeout_s", 600), "node 'service' timeout_s: must be above 0"),
        (_set("nodes.service.timeout_s", "6"), "node 'service' timeout_s: must be a number"),
        (_set("nodes.service.timeout_s", True), "node 'service' timeout_s: must be a number"),
        (_set("nodes.service.retries", -1), "node 'service' retries: must be between 0 and 5"),
        (_set("nodes.service.retries", 1.5), "node 'service' retries: must be a whole number"),
        (_set("nodes.service.during_hours", "yes"), "node 'service' during_hours: must be true"),
        (_set("nodes.service.timeout", 6), "node 'service': unknown key(s) timeout"),
        (_set("nodes.describe.record_s", 0), "node 'describe' record_s: must be above 0"),
        (_set("nodes.status.collect_digits", 0), "node 'status' collect_digits: must be between"),
        (
            _set("nodes.status.collect_digits", "12"),
            "node 'status' collect_digits: must be a whole",
        ),
        (
            _set("nodes.status.choices", {"1": {"outcome": "queue"}}),
            "node 'status': a collecting node takes no choices",
        ),
        (_set("nodes.describe.record_s", 600), "node 'describe' record_s: must be above 0"),
        (_set("nodes.describe.record_s", "20"), "node 'describe' record_s: must be a number"),
        (
            _set("nodes.describe.choices", {"1": {"outcome": "queue"}}),
            "node 'describe': a recording node takes no choices",
        ),
        (
            _set("nodes.describe.then", {"next": "nowhere"}),
            "node 'describe' then: unknown node 'nowhere'",
        ),
        (
            _set("nodes.service.then", {"outcome": "queue"}),
            "node 'service' then: only a recording or collecting node",
        ),
        (
            _set("nodes.service.on_timeout", {"next": "lobby"}),
            "node 'service' on_timeout: unknown node 'lobby'",
        ),
        (
            _set("nodes.lang.on_invalid", "queue"),
            "node 'lang' on_invalid: must be a table",
        ),
        (
            _set("nodes.orphan", {"prompt": "welcome"}),
            "node 'orphan': cannot be reached from start 'lang'",
        ),
        (_set("hours.mon", "08:00-17:00"), "[hours] mon: must be a list"),
        (_set("hours.mon", ["8:00-17:00"]), "[hours] mon: '8:00-17:00' is not a range"),
        (_set("hours.mon", ["17:00-08:00"]), "[hours] mon: '17:00-08:00' ends before it starts"),
        (_set("hours.mon", ["08:00-25:00"]), "[hours] mon: '08:00-25:00' has an impossible time"),
        (_set("hours.mon", ["08:60-09:00"]), "[hours] mon: '08:60-09:00' has an impossible time"),
        (_set("hours.monday", ["08:00-17:00"]), "[hours]: unknown key(s) monday"),
        (_set("hours.timezone", "Asia/Hanoi"), "[hours] timezone: unknown time zone"),
        (_set("hours.closed_outcome", "queue!"), "[hours] closed_outcome: outcome 'queue!'"),
        (_set("hours.closed_prompt", DELETE), "[hours]: closed_prompt is needed"),
        (_set("nodes.service.during_hours", False), None),  # procedures still obeys the hours
        (_set("extra", {}), "file: unknown key(s) extra"),
    ],
)
def test_a_wrong_menu_is_refused_with_a_message_naming_the_place(
    change: Callable[[dict[str, Any]], None], message: str | None
) -> None:
    data = copy.deepcopy(BASE)
    change(data)
    if message is None:
        parse_menu(data, name="hotline-1022", source="hotline-1022.toml")
        return
    with pytest.raises(MenuError) as caught:
        parse_menu(data, name="hotline-1022", source="hotline-1022.toml")
    assert str(caught.value).startswith("hotline-1022.toml: ")
    assert message in str(caught.value)
    assert caught.value.error_id == "ivr-menu-invalid"


def test_hours_that_no_node_obeys_are_a_mistake() -> None:
    data = copy.deepcopy(BASE)
    for node in data["nodes"].values():
        node.pop("during_hours", None)
    with pytest.raises(MenuError, match=r"\[hours\]: no node is marked during_hours"):
        parse_menu(data, name="x")


def test_unreadable_or_broken_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MenuError, match=r"missing\.toml: cannot read the menu"):
        load_menu(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text('[menu]\nstart = "lang\n')
    with pytest.raises(MenuError, match=r"broken\.toml: not valid TOML"):
        load_menu(broken)
