"""The voice menu as a pure state machine: events in, actions out, no I/O and no clock.

`start(menu, now)` and `step(menu, state, event)` return the next state and the actions the
driver (session.py) carries out in order. The driver owns timers and playbacks; the engine
only says "play this", "listen for N seconds", "stop the prompt", "finish".

Phases:
- prompting: the node's prompts are playing; a key stops them (barge-in) and counts;
- listening: the prompts have ended; a key counts, a timeout re-offers the menu or gives up;
- announcing: an announcement ("connecting", "closed", "goodbye") plays in full, keys ignored;
- recording: a node with `record_s` ("say what happened after the tone") records the caller
  once its prompts end (a key skips the prompts); when the recording ends, its `then` applies;
- collecting: a node with `collect_digits` (a tracking code) gathers keys — the first may cut
  the prompt short — until `#`, the most digits, or `timeout_s` of silence; then its `then`
  applies with what was entered, or `on_timeout` when nothing was;
- done: Finish was emitted; everything later is ignored.
Events that do not fit the phase (a late timer, a stale PromptDone) are ignored, so a race in
the driver can never move the caller twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from telephony.ivr.menus import Menu, Node, Outcome, Target

Phase = Literal["prompting", "listening", "announcing", "recording", "collecting", "done"]
Choice = tuple[str, str]  # (node, digit)


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Digit:
    digit: str


@dataclass(frozen=True)
class Timeout:
    """The Listen period ended without a key."""


@dataclass(frozen=True)
class PromptDone:
    """The prompt last played has finished (or failed: the menu goes on without it)."""


@dataclass(frozen=True)
class Recorded:
    """The recording asked for by Record has ended (finished, cut short or failed)."""

    saved: bool = True


Event = Digit | Timeout | PromptDone | Recorded


# ---------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Play:
    prompt: str
    language: str


@dataclass(frozen=True)
class Listen:
    timeout_s: float


@dataclass(frozen=True)
class StopPrompt:
    """Barge-in: stop the prompt playing now (and drop the ones queued after it)."""


@dataclass(frozen=True)
class Record:
    """Record the caller after a beep, for at most `max_s` (the driver stops on silence or #)."""

    max_s: float
    language: str


@dataclass(frozen=True)
class Finish:
    outcome: Outcome
    language: str
    choices: tuple[Choice, ...]
    described: bool = False  # the caller's own words were recorded (a Record that saved)
    entered: str = ""  # digits a collecting node gathered (a tracking code)


Action = Play | Listen | StopPrompt | Record | Finish


@dataclass(frozen=True, kw_only=True)
class State:
    node: str
    language: str
    is_open: bool
    phase: Phase = "prompting"
    tries: int = 0  # timeouts + invalid keys at this node so far
    choices: tuple[Choice, ...] = ()
    queued: tuple[Play, ...] = ()  # prompts still to play after the current one
    pending: Target | None = None  # where to go once the announcement has played
    described: bool = False
    entered: str = ""


Step = tuple[State, list[Action]]


def start(menu: Menu, now: datetime) -> Step:
    """The first state and actions for a call answered at `now` (aware; opening hours)."""
    state = State(node=menu.start, language=menu.default_language, is_open=menu.is_open(now))
    return _go(menu, state, Target(node=menu.start))


def step(menu: Menu, state: State, event: Event) -> Step:
    if isinstance(event, PromptDone):
        return _prompt_done(menu, state)
    node = menu.nodes[state.node]
    if isinstance(event, Recorded):
        if state.phase != "recording":
            return state, []
        return _go(menu, replace(state, described=state.described or event.saved), node.then)
    if node.collect_digits and state.phase in ("prompting", "collecting"):
        return _collect(menu, state, event)
    if isinstance(event, Digit):
        if state.phase == "prompting" and node.record_s:
            return _record(menu, state, [StopPrompt()])  # skip the instructions
        if state.phase == "prompting":
            state, actions = _digit(menu, state, event.digit)
            return state, [StopPrompt(), *actions]
        if state.phase == "listening":
            return _digit(menu, state, event.digit)
        return state, []  # an announcement is not interrupted; done is done
    if state.phase != "listening":
        return state, []  # a timer that fired late
    return _fail(menu, state, menu.no_input_prompt, node.on_timeout)


# ---------------------------------------------------------------------------------- internals


def _play(state: State, phase: Phase, plays: list[Play], pending: Target | None) -> Step:
    first, *rest = plays
    return replace(state, phase=phase, queued=tuple(rest), pending=pending), [first]


def _prompt_done(menu: Menu, state: State) -> Step:
    if state.phase not in ("prompting", "announcing"):
        return state, []
    if state.queued:
        first, *rest = state.queued
        return replace(state, queued=tuple(rest)), [first]
    if state.phase == "announcing":
        assert state.pending is not None  # announcing always has somewhere to go
        return _go(menu, replace(state, pending=None), state.pending)
    node = menu.nodes[state.node]
    if node.record_s:
        return _record(menu, state, [])
    if node.collect_digits:
        return replace(state, phase="collecting"), [Listen(node.timeout_s)]
    return replace(state, phase="listening"), [Listen(node.timeout_s)]


def _collect(menu: Menu, state: State, event: Event) -> Step:
    """Keys of a collecting node: digits add up; `#`, the last digit or silence ends it."""
    node = menu.nodes[state.node]
    assert node.collect_digits is not None
    before: list[Action] = [StopPrompt()] if state.phase == "prompting" else []
    if isinstance(event, Timeout):
        if state.phase != "collecting":
            return state, []
        if not state.entered:
            return _go(menu, state, node.on_timeout)
        return _go(menu, _entered(state), node.then)
    assert isinstance(event, Digit)
    if event.digit == "#":
        if not state.entered:
            return replace(state, phase="collecting", queued=()), [*before, Listen(node.timeout_s)]
        state, actions = _go(menu, _entered(state), node.then)
        return state, [*before, *actions]
    if not event.digit.isdigit():
        return state, []  # '*' means nothing in a code
    entered = state.entered + event.digit
    state = replace(state, phase="collecting", queued=(), entered=entered)
    if len(entered) >= node.collect_digits:
        state, actions = _go(menu, _entered(state), node.then)
        return state, [*before, *actions]
    return state, [*before, Listen(node.timeout_s)]


def _entered(state: State) -> State:
    """What was keyed in is a choice of its node too (supervisors see what was asked)."""
    return replace(state, choices=(*state.choices, (state.node, state.entered)))


def _record(menu: Menu, state: State, before: list[Action]) -> Step:
    node = menu.nodes[state.node]
    assert node.record_s is not None
    recording = replace(state, phase="recording", queued=())
    return recording, [*before, Record(node.record_s, state.language)]


def _digit(menu: Menu, state: State, digit: str) -> Step:
    node = menu.nodes[state.node]
    target = node.choices.get(digit)
    if target is None:
        return _fail(menu, state, menu.invalid_prompt, node.on_invalid)
    return _go(menu, replace(state, choices=(*state.choices, (node.name, digit))), target)


def _fail(menu: Menu, state: State, sorry: str | None, give_up: Target) -> Step:
    """A timeout or a wrong key: offer the menu again while retries last, then give up."""
    node = menu.nodes[state.node]
    tries = state.tries + 1
    if tries > node.retries:
        return _go(menu, state, give_up)
    plays = [Play(sorry, state.language)] if sorry else []
    plays += _node_prompts(menu, node, state.language)
    return _play(replace(state, tries=tries), "prompting", plays, None)


def _node_prompts(menu: Menu, node: Node, language: str) -> list[Play]:
    languages = menu.languages if node.all_languages else (language,)
    return [Play(p, lang) for lang in languages for p in node.prompts]


def _go(menu: Menu, state: State, target: Target) -> Step:
    if target.language is not None:
        state = replace(state, language=target.language)
    if target.say is not None:
        then = replace(target, say=None, language=None)
        return _play(state, "announcing", [Play(target.say, state.language)], then)
    if target.outcome is not None:
        finish = Finish(
            target.outcome, state.language, state.choices, state.described, state.entered
        )
        return replace(state, phase="done", queued=(), pending=None), [finish]
    assert target.node is not None  # menus.py guarantees exactly one of node/outcome
    node = menu.nodes[target.node]
    if node.during_hours and not state.is_open:
        closed = Target(outcome=menu.closed_outcome, say=menu.closed_prompt)
        return _go(menu, replace(state, node=node.name), closed)
    entered = replace(state, node=node.name, tries=0)
    return _play(entered, "prompting", _node_prompts(menu, node, state.language), None)
