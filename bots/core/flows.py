"""Conversations as data: `bots/data/flows.toml` (format documented at its top), checked
strictly when loaded, so a typo fails at start-up naming the flow and step, instead of
stranding a citizen mid-conversation."""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ioc_core.errors import IocError
from nlu.text.vietnamese import fold

FLOWS_FILE = Path(__file__).resolve().parents[1] / "data" / "flows.toml"
KINDS = frozenset({"text", "photo", "location", "choice"})
END, STAY, HANDOFF = "@end", "@stay", "@handoff"
SAY = "say:"
_STEP_KEYS = {
    "say",
    "accepts",
    "handler",
    "fallback",
    "on",
    "buttons",
    "options",
    "ask_location",
    "digress",
}
_FLOW_KEYS = {"timeout_s", "start", "steps"}


class FlowError(IocError):
    status = 500
    error_id = "bot-flows-invalid"


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str
    say: str
    accepts: frozenset[str]
    handler: str
    fallback: str
    on: Mapping[str, str]
    buttons: tuple[tuple[str, str], ...] = ()  # (text key, payload)
    options: str | None = None
    ask_location: bool = False
    # A text the NLU confidently reads as another request leaves the flow for it (where an
    # answer is a place or a code, "cho hỏi thủ tục..." is not one).
    digress: bool = False


@dataclass(frozen=True, kw_only=True)
class Flow:
    name: str
    start: str
    timeout_s: int
    steps: Mapping[str, Step] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Flows:
    menu: tuple[str, ...]
    intents: Mapping[str, str]
    flows: Mapping[str, Flow]
    commands: Mapping[str, str] = field(default_factory=dict)  # folded message -> flow

    def __getitem__(self, name: str) -> Flow:
        return self.flows[name]


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise FlowError(f"{FLOWS_FILE.name}: {where}: {what}")


def _step(flow: str, name: str, raw: Mapping[str, Any], steps: Collection[str]) -> Step:
    where = f"flows.{flow}.steps.{name}"
    _need(isinstance(raw, Mapping), where, "must be a table")
    unknown = set(raw) - _STEP_KEYS
    _need(not unknown, where, f"unknown keys {sorted(unknown)}")
    for key in ("say", "handler", "fallback"):
        _need(isinstance(raw.get(key), str) and raw[key], where, f"`{key}` is required")
    accepts: Any = raw.get("accepts")
    _need(
        isinstance(accepts, list) and bool(accepts) and set(accepts) <= KINDS,
        where,
        f"`accepts` must list some of {sorted(KINDS)}",
    )
    on: Any = raw.get("on")
    _need(isinstance(on, Mapping) and bool(on), where, "`on` maps outcomes to steps")
    for outcome, target in on.items():
        _need(
            target in steps or target in (END, STAY, HANDOFF),
            where,
            f"outcome {outcome!r} leads to unknown step {target!r}",
        )
    buttons = raw.get("buttons", [])
    _need(
        isinstance(buttons, list)
        and all(
            isinstance(b, list) and len(b) == 2 and all(isinstance(x, str) for x in b)
            for b in buttons
        ),
        where,
        "`buttons` is a list of [text key, payload] pairs",
    )
    _need(not (buttons and raw.get("options")), where, "`buttons` or `options`, not both")
    return Step(
        name=name,
        say=raw["say"],
        accepts=frozenset(accepts),
        handler=raw["handler"],
        fallback=raw["fallback"],
        on=MappingProxyType(dict(on)),
        buttons=tuple((k, p) for k, p in buttons),
        options=raw.get("options"),
        ask_location=bool(raw.get("ask_location", False)),
        digress=bool(raw.get("digress", False)),
    )


def parse_flows(doc: Mapping[str, Any]) -> Flows:
    flows: dict[str, Flow] = {}
    for name, raw in (doc.get("flows") or {}).items():
        where = f"flows.{name}"
        unknown = set(raw) - _FLOW_KEYS
        _need(not unknown, where, f"unknown keys {sorted(unknown)}")
        steps_raw = raw.get("steps") or {}
        _need(raw.get("start") in steps_raw, where, "`start` must name one of its steps")
        timeout = raw.get("timeout_s", 1800)
        _need(isinstance(timeout, int) and 0 < timeout <= 86400, where, "timeout_s: 1..86400")
        steps = {s: _step(name, s, r, steps_raw) for s, r in steps_raw.items()}
        flows[name] = Flow(name=name, start=raw["start"], timeout_s=timeout, steps=steps)
    menu = doc.get("menu", {}).get("items", [])
    _need(bool(menu) and all(m in flows for m in menu), "menu", "items must name flows")
    intents = doc.get("intents", {})
    for intent, target in intents.items():
        _need(
            target in flows or (target.startswith(SAY) and len(target) > len(SAY)),
            f"intents.{intent}",
            f"{target!r} is neither a flow nor say:<key>",
        )
    commands: dict[str, str] = {}
    for flow, words in (doc.get("commands") or {}).items():
        _need(flow in flows, f"commands.{flow}", "no such flow")
        _need(
            isinstance(words, list) and all(isinstance(w, str) for w in words),
            f"commands.{flow}",
            "a list of words",
        )
        commands.update({fold(w).strip(): flow for w in words})
    return Flows(
        menu=tuple(menu),
        intents=MappingProxyType(dict(intents)),
        flows=flows,
        commands=MappingProxyType(commands),
    )


def load_flows(path: Path = FLOWS_FILE) -> Flows:
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FlowError(f"{path}: {exc}") from exc
    return parse_flows(doc)


def check_handlers(flows: Flows, handlers: Collection[str], providers: Collection[str]) -> None:
    """Every step's handler and options provider exists (checked when the engine is built)."""
    for flow in flows.flows.values():
        for step in flow.steps.values():
            where = f"flows.{flow.name}.steps.{step.name}"
            _need(step.handler in handlers, where, f"no handler {step.handler!r}")
            if step.options:
                _need(step.options in providers, where, f"no options provider {step.options!r}")
