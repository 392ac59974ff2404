"""Voice menus as data: `dialplans/ivr/<name>.toml` (format documented in hotline-1022.toml),
validated strictly when loaded, so a typo fails `ioc setup` with the node's name instead of
stranding a caller at run time.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ioc_core.errors import IocError
from telephony.ivr import prompts

# status: read out the report whose tracking code the caller entered (the switchboard does).
Outcome = Literal["queue", "record", "hangup", "status"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
DIGITS = frozenset("0123456789*#")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
MENUS_DIR = Path(__file__).resolve().parents[2] / "dialplans" / "ivr"
HOTLINE_1022 = MENUS_DIR / "hotline-1022.toml"

_RANGE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
_MENU_KEYS = {"start", "languages", "invalid_prompt", "no_input_prompt"}
_HOURS_KEYS = {"timezone", "closed_prompt", "closed_outcome", *DAYS}
_NODE_KEYS = {
    "prompt",
    "all_languages",
    "timeout_s",
    "retries",
    "choices",
    "on_timeout",
    "on_invalid",
    "during_hours",
    "record_s",
    "collect_digits",
    "then",
}
_TARGET_KEYS = {"next", "outcome", "language", "say"}
MAX_TIMEOUT_S = 60.0
MAX_RETRIES = 5
MAX_RECORD_S = 60.0
MAX_DIGITS = 20


class MenuError(IocError):
    """The menu file is wrong; the message names the file and the node or section."""

    status = 500
    error_id = "ivr-menu-invalid"


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where a key press, a timeout or an invalid key leads: a node or an outcome."""

    node: str | None = None
    outcome: Outcome | None = None
    language: str | None = None  # switch the caller's language
    say: str | None = None  # announcement played in full first


QUEUE = Target(outcome="queue")


@dataclass(frozen=True, kw_only=True)
class Node:
    name: str
    prompts: tuple[str, ...]
    all_languages: bool = False  # speak the prompts in every menu language (the language menu)
    timeout_s: float = 5.0
    retries: int = 2
    choices: Mapping[str, Target] = field(default_factory=lambda: MappingProxyType({}))
    on_timeout: Target = QUEUE
    on_invalid: Target = QUEUE
    during_hours: bool = False
    record_s: float | None = None  # record the caller for at most this long after the prompts
    collect_digits: int | None = None  # gather up to this many digits (ended by # or silence)
    then: Target = QUEUE  # where a recording node leads once the recording has ended

    def targets(self) -> tuple[Target, ...]:
        return (*self.choices.values(), self.on_timeout, self.on_invalid, self.then)


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """Weekly opening hours in a time zone; `days[weekday]` = ((start, end) minutes, ...)."""

    timezone: str = "Asia/Ho_Chi_Minh"
    days: tuple[tuple[tuple[int, int], ...], ...] = tuple(((0, 1440),) for _ in DAYS)

    def is_open(self, now: datetime) -> bool:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("opening hours need an aware datetime (a naive one is ambiguous)")
        local = now.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.days[local.weekday()])


@dataclass(frozen=True, kw_only=True)
class Menu:
    name: str
    start: str
    languages: tuple[str, ...]
    nodes: Mapping[str, Node]
    hours: Schedule = field(default_factory=Schedule)
    closed_prompt: str | None = None
    closed_outcome: Outcome = "record"
    invalid_prompt: str | None = None
    no_input_prompt: str | None = None

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def is_open(self, now: datetime) -> bool:
        return self.hours.is_open(now)

    def prompt_names(self) -> set[str]:
        names = {p for p in (self.closed_prompt, self.invalid_prompt, self.no_input_prompt) if p}
        for node in self.nodes.values():
            names.update(node.prompts)
            for target in node.targets():
                if target.say:
                    names.add(target.say)
        return names


# ---------------------------------------------------------------------------------- loading


def load_menu(path: Path = HOTLINE_1022) -> Menu:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise MenuError(f"{path}: cannot read the menu ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MenuError(f"{path}: not valid TOML: {exc}") from exc
    return parse_menu(data, name=path.stem, source=str(path))


def parse_menu(
    data: Mapping[str, Any],
    *,
    name: str,
    source: str = "<menu>",
    known_prompts: Callable[[str], Collection[str]] = prompts.catalog,
) -> Menu:
    """Build and check a menu; `known_prompts(language)` lists the prompt names that exist."""
    return _Parser(source=source, known_prompts=known_prompts).menu(data, name)


class _Parser:
    def __init__(self, *, source: str, known_prompts: Callable[[str], Collection[str]]) -> None:
        self.source = source
        self.known_prompts = known_prompts
        self.languages: tuple[str, ...] = ()

    def fail(self, where: str, message: str) -> MenuError:
        return MenuError(f"{self.source}: {where}: {message}", details={"where": where})

    def table(self, value: Any, where: str, allowed: Collection[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a table")
        if unknown := sorted(set(value) - set(allowed)):
            raise self.fail(where, f"unknown key(s) {', '.join(unknown)}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "must be a non-empty string")
        return value

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value

    def seconds(self, value: Any, where: str, most: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, "must be a number of seconds")
        if not 0 < value <= most:
            raise self.fail(where, f"must be above 0 and at most {most:g}")
        return float(value)

    def whole(self, value: Any, where: str, least: int, most: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, "must be a whole number")
        if not least <= value <= most:
            raise self.fail(where, f"must be between {least} and {most}")
        return value

    def outcome(self, value: Any, where: str) -> Outcome:
        if value not in OUTCOMES:
            raise self.fail(where, f"outcome {value!r} is not one of {', '.join(OUTCOMES)}")
        return cast(Outcome, value)

    def prompt(self, value: Any, where: str) -> str:
        prompt = self.text(value, where)
        for language in self.languages:
            if prompt not in self.known_prompts(language):
                raise self.fail(
                    where, f"prompt {prompt!r} is not in telephony/ivr/locales/{language}.json"
                )
        return prompt

    # ------------------------------------------------------------------ sections

    def menu(self, data: Mapping[str, Any], name: str) -> Menu:
        top = self.table(data, "file", {"menu", "hours", "nodes"})
        head = self.table(top.get("menu"), "[menu]", _MENU_KEYS)
        self.languages = self.language_list(head.get("languages", ["vi", "en"]))
        raw_nodes = top.get("nodes")
        if not isinstance(raw_nodes, dict) or not raw_nodes:
            raise self.fail("[nodes]", "a menu needs at least one node ([nodes.<name>])")
        nodes = {n: self.node(n, raw) for n, raw in raw_nodes.items()}
        start = self.text(head.get("start"), "[menu] start")
        if start not in nodes:
            raise self.fail("[menu] start", f"unknown node {start!r}")
        for node in nodes.values():
            self.check_links(node, nodes)
        self.check_reachable(start, nodes)
        hours_raw = top.get("hours")
        hours = Schedule()
        closed_prompt: str | None = None
        closed_outcome: Outcome = "record"
        if hours_raw is not None:
            table = self.table(hours_raw, "[hours]", _HOURS_KEYS)
            hours = self.schedule(table)
            if "closed_prompt" in table:
                closed_prompt = self.prompt(table["closed_prompt"], "[hours] closed_prompt")
            if "closed_outcome" in table:
                closed_outcome = self.outcome(table["closed_outcome"], "[hours] closed_outcome")
            # Opening hours that no node obeys, or a closed line that says nothing before
            # the tone, are mistakes in the file, not choices.
            if not any(n.during_hours for n in nodes.values()):
                raise self.fail("[hours]", "no node is marked during_hours = true")
            if closed_prompt is None:
                raise self.fail("[hours]", "closed_prompt is needed to tell callers why")
        return Menu(
            name=name,
            start=start,
            languages=self.languages,
            nodes=MappingProxyType(nodes),
            hours=hours,
            closed_prompt=closed_prompt,
            closed_outcome=closed_outcome,
            invalid_prompt=self.optional_prompt(head, "invalid_prompt"),
            no_input_prompt=self.optional_prompt(head, "no_input_prompt"),
        )

    def optional_prompt(self, head: Mapping[str, Any], key: str) -> str | None:
        return self.prompt(head[key], f"[menu] {key}") if key in head else None

    def language_list(self, value: Any) -> tuple[str, ...]:
        where = "[menu] languages"
        if not isinstance(value, list) or not value:
            raise self.fail(where, "must be a non-empty list, the default language first")
        for language in value:
            if language not in prompts.LANGUAGES:
                raise self.fail(
                    where, f"{language!r} has no prompts (known: {', '.join(prompts.LANGUAGES)})"
                )
        if len(set(value)) != len(value):
            raise self.fail(where, "a language is listed twice")
        return tuple(value)

    def node(self, name: str, raw: Any) -> Node:
        where = f"node {name!r}"
        table = self.table(raw, where, _NODE_KEYS)
        prompt_value = table.get("prompt")
        prompt_list = prompt_value if isinstance(prompt_value, list) else [prompt_value]
        if not prompt_list:
            raise self.fail(where, "prompt must name at least one prompt")
        timeout = self.seconds(table.get("timeout_s", 5), f"{where} timeout_s", MAX_TIMEOUT_S)
        retries = self.whole(table.get("retries", 2), f"{where} retries", 0, MAX_RETRIES)
        choices_raw = table.get("choices", {})
        if not isinstance(choices_raw, dict):
            raise self.fail(f"{where} choices", "must be a table of digit = target")
        choices: dict[str, Target] = {}
        for digit, target in choices_raw.items():
            if digit not in DIGITS:
                raise self.fail(
                    f"{where} choices", f"{digit!r} is not a DTMF key (one of 0-9, *, #)"
                )
            choices[digit] = self.target(target, f"{where} choice {digit!r}")
        record_s = table.get("record_s")
        if record_s is not None:
            record_s = self.seconds(record_s, f"{where} record_s", MAX_RECORD_S)
            if choices:
                raise self.fail(where, "a recording node takes no choices (# ends the recording)")
        collect = table.get("collect_digits")
        if collect is not None:
            collect = self.whole(collect, f"{where} collect_digits", 1, MAX_DIGITS)
            if choices or record_s is not None:
                raise self.fail(where, "a collecting node takes no choices and records nothing")
        if record_s is None and collect is None and "then" in table:
            raise self.fail(
                f"{where} then",
                "only a recording or collecting node (record_s, collect_digits) has then",
            )
        return Node(
            name=name,
            prompts=tuple(self.prompt(p, f"{where} prompt") for p in prompt_list),
            all_languages=self.flag(table.get("all_languages", False), f"{where} all_languages"),
            timeout_s=timeout,
            retries=retries,
            choices=MappingProxyType(choices),
            on_timeout=self.target(table.get("on_timeout"), f"{where} on_timeout"),
            on_invalid=self.target(table.get("on_invalid"), f"{where} on_invalid"),
            during_hours=self.flag(table.get("during_hours", False), f"{where} during_hours"),
            record_s=record_s,
            collect_digits=collect,
            then=self.target(table.get("then"), f"{where} then"),
        )

    def target(self, raw: Any, where: str) -> Target:
        if raw is None:
            return QUEUE  # never drop a caller for not pressing a key
        table = self.table(raw, where, _TARGET_KEYS)
        if ("next" in table) == ("outcome" in table):
            raise self.fail(where, "needs exactly one of next = <node> or outcome = <outcome>")
        language = table.get("language")
        if language is not None and language not in self.languages:
            raise self.fail(where, f"language {language!r} is not in [menu] languages")
        return Target(
            node=self.text(table["next"], where) if "next" in table else None,
            outcome=self.outcome(table["outcome"], where) if "outcome" in table else None,
            language=language,
            say=self.prompt(table["say"], f"{where} say") if "say" in table else None,
        )

    def check_links(self, node: Node, nodes: Mapping[str, Node]) -> None:
        links = [(f"choice {d!r}", t) for d, t in node.choices.items()]
        links += [("on_timeout", node.on_timeout), ("on_invalid", node.on_invalid)]
        links += [("then", node.then)]
        for label, target in links:
            if target.node is not None and target.node not in nodes:
                raise self.fail(f"node {node.name!r} {label}", f"unknown node {target.node!r}")

    def check_reachable(self, start: str, nodes: Mapping[str, Node]) -> None:
        seen, todo = {start}, [start]
        while todo:
            node = nodes[todo.pop()]
            for target in node.targets():
                if target.node is not None and target.node not in seen:
                    seen.add(target.node)
                    todo.append(target.node)
        if lost := sorted(set(nodes) - seen):
            raise self.fail(f"node {lost[0]!r}", f"cannot be reached from start {start!r}")

    def schedule(self, table: Mapping[str, Any]) -> Schedule:
        zone = self.text(table.get("timezone", "Asia/Ho_Chi_Minh"), "[hours] timezone")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise self.fail("[hours] timezone", f"unknown time zone {zone!r}") from exc
        days = []
        for day in DAYS:
            ranges = table.get(day, [])
            if not isinstance(ranges, list):
                raise self.fail(f"[hours] {day}", 'must be a list like ["07:30-11:30"]')
            days.append(tuple(self.time_range(r, f"[hours] {day}") for r in ranges))
        return Schedule(timezone=zone, days=tuple(days))

    def time_range(self, raw: Any, where: str) -> tuple[int, int]:
        match = _RANGE.match(raw) if isinstance(raw, str) else None
        if match is None:
            raise self.fail(where, f"{raw!r} is not a range like 07:30-11:30")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = self.minute(h1, m1, raw, where), self.minute(h2, m2, raw, where)
        if start >= end:
            raise self.fail(where, f"{raw!r} ends before it starts (a range stays within a day)")
        return start, end

    def minute(self, hour: int, minute: int, raw: str, where: str) -> int:
        if (hour, minute) != (24, 0):
            try:
                time(hour, minute)
            except ValueError as exc:
                raise self.fail(where, f"{raw!r} has an impossible time") from exc
        return hour * 60 + minute
