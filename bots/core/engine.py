"""The conversation engine: one message in, replies out, the conversation's state moved on.
Channel-agnostic (adapters turn webhooks into `Inbound` and `Reply` into API calls) and
storage-agnostic (the caller loads and saves the `Conversation`).

Order of business for every message:
1. commands ("/start", "menu", "hủy"/"cancel");
2. the emergency pre-check and the NLU (`nlu.client.Nlu`): an emergency interrupts any flow;
3. the current flow's step, when the message is of a kind it accepts;
4. otherwise what the citizen asked for (intent -> flow, or a menu choice); when the NLU is
   down, the numbered menu, saying so (degraded mode).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bots.core.flows import END, HANDOFF, SAY, STAY, Flows, Step, check_handlers
from bots.messages import Conversation, Inbound, Reply
from ioc_core.i18n import Translator
from nlu.client import Nlu, Understanding
from nlu.text.vietnamese import fold

logger = logging.getLogger(__name__)

START_WORDS = frozenset({"/start", "start", "bat dau", "menu", "/menu", "xin chao menu"})
CANCEL_WORDS = frozenset({"/cancel", "cancel", "huy", "huy bo", "thoat", "dung lai", "stop"})
FLOW_PAYLOAD = "flow:"
DIGRESS_CONFIDENCE = 0.7  # how sure the NLU must be to leave a step that expects a place or code


class Ctx:
    """What a handler sees: the message, the conversation, what was understood, the
    services, and a way to answer."""

    def __init__(self, engine: Engine, msg: Inbound, conv: Conversation, services: Any) -> None:
        self.engine, self.msg, self.conv, self.services = engine, msg, conv, services
        self.understood: Understanding | None = None
        self.replies: list[Reply] = []

    @property
    def lang(self) -> str:
        return self.conv.language

    @property
    def data(self) -> dict[str, Any]:
        return self.conv.data

    @property
    def answer(self) -> str:
        """The citizen's answer: a button's payload, else the text."""
        return self.msg.choice or self.msg.text.strip()

    def t(self, key: str, **params: Any) -> str:
        return self.engine.texts.t(key, self.lang, **params)

    def say(
        self,
        key: str,
        *,
        buttons: tuple[tuple[str, str], ...] = (),
        ask_location: bool = False,
        **params: Any,
    ) -> None:
        self.replies.append(Reply(self.t(key, **params), buttons, ask_location))


Handler = Callable[[Ctx], Awaitable[str]]
Provider = Callable[[Ctx], Awaitable[list[tuple[str, str]]]]
Starter = Callable[[Ctx, dict[str, Any]], Awaitable[str | None]]


class Engine:
    def __init__(
        self,
        *,
        flows: Flows,
        handlers: Mapping[str, Handler],
        providers: Mapping[str, Provider],
        starters: Mapping[str, Starter],
        texts: Translator,
        nlu: Nlu,
        min_confidence: float = 0.45,
    ) -> None:
        check_handlers(flows, handlers, providers)
        self.flows, self.handlers, self.providers = flows, handlers, providers
        self.starters, self.texts, self.nlu = starters, texts, nlu
        self.min_confidence = min_confidence

    # ------------------------------------------------------------------ entry

    def wants_understanding(self, msg: Inbound) -> bool:
        return bool(msg.text.strip()) and msg.kind in ("text", "photo")

    async def handle(
        self,
        msg: Inbound,
        conv: Conversation,
        services: Any,
        understood: Awaitable[Understanding] | None = None,
    ) -> list[Reply]:
        """`understood`: the NLU's answer, already asked for (the caller overlaps it with
        loading the conversation); asked here otherwise."""
        ctx = Ctx(self, msg, conv, services)
        if conv.expired:
            ctx.say("session.expired")
        words = fold(msg.text).strip() if msg.kind == "text" else ""
        if words in START_WORDS or msg.choice == "menu":
            conv.end()
            ctx.say("greet")
            self._menu(ctx)
            return ctx.replies
        if words in CANCEL_WORDS and conv.flow and conv.flow != "handoff":
            conv.end()
            ctx.say("cancelled")
            self._menu(ctx)
            return ctx.replies
        if self.wants_understanding(msg):
            ctx.understood = await (understood or self.nlu.understand(msg.text))
        u = ctx.understood
        if u is not None and u.emergency and conv.flow != "emergency":
            await self.start(ctx, "emergency", {"number": u.emergency})
            return ctx.replies
        if (
            msg.choice.startswith(FLOW_PAYLOAD)
            and msg.choice[len(FLOW_PAYLOAD) :] in self.flows.flows
        ):
            await self.start(ctx, msg.choice[len(FLOW_PAYLOAD) :], {})
            return ctx.replies
        if conv.flow and conv.step:
            await self._in_flow(ctx)
            return ctx.replies
        await self._fresh(ctx)
        return ctx.replies

    # ------------------------------------------------------------------ flows

    def _step(self, conv: Conversation) -> Step:
        assert conv.flow and conv.step
        return self.flows[conv.flow].steps[conv.step]

    async def _in_flow(self, ctx: Ctx) -> None:
        step = self._step(ctx.conv)
        msg = ctx.msg
        kind = msg.kind
        if kind == "text" and (choice := await self._numbered(ctx, step, msg.text)):
            ctx.msg = msg = Inbound(**{**msg.__dict__, "kind": "choice", "choice": choice})
            kind = "choice"
        if kind == "choice" and "choice" not in step.accepts and "text" in step.accepts:
            kind = "text"
        u = ctx.understood
        other = self._target(u, DIGRESS_CONFIDENCE) if step.digress and kind == "text" else None
        if other and other != ctx.conv.flow:
            await self._go(ctx, other)
            return
        if kind in step.accepts:
            outcome = await self.handlers[step.handler](ctx)
            await self._follow(ctx, step, outcome)
            return
        target = self._target(u)
        if target and target != ctx.conv.flow:
            # The citizen changed the subject ("thôi, cho tôi hỏi hồ sơ PA-...").
            await self._go(ctx, target)
            return
        ctx.say(step.fallback)
        await self.prompt(ctx, step)

    async def _numbered(self, ctx: Ctx, step: Step, text: str) -> str | None:
        """ "2" typed where buttons are offered picks the second (menu-driven chats)."""
        text = text.strip()
        if not text.isdigit() or not (step.buttons or step.options):
            return None
        choices = await self._buttons(ctx, step)
        n = int(text)
        return choices[n - 1][1] if 1 <= n <= len(choices) else None

    async def _follow(self, ctx: Ctx, step: Step, outcome: str) -> None:
        target = step.on.get(outcome)
        if target is None:
            logger.error(
                "flow %s step %s: no way on for outcome %r", ctx.conv.flow, step.name, outcome
            )
            target = STAY
        if target == STAY:
            return
        if target == END:
            ctx.conv.end()
            return
        if target == HANDOFF:
            await self.start(ctx, "handoff", {})
            return
        ctx.conv.step = target
        await self.prompt(ctx, self._step(ctx.conv))

    async def start(self, ctx: Ctx, name: str, data: dict[str, Any]) -> None:
        """Enter flow `name`: its starter (if any) may prefill, answer, or move on at once."""
        flow = self.flows[name]
        ctx.conv.flow, ctx.conv.step, ctx.conv.data = name, flow.start, dict(data)
        starter = self.starters.get(name)
        outcome = await starter(ctx, ctx.conv.data) if starter else None
        if ctx.conv.flow != name:  # the starter ended it (e.g. nothing to rate)
            return
        if outcome is None:
            await self.prompt(ctx, flow.steps[flow.start])
        else:
            await self._follow(ctx, flow.steps[flow.start], outcome)

    async def _buttons(self, ctx: Ctx, step: Step) -> list[tuple[str, str]]:
        if step.options:
            return await self.providers[step.options](ctx)
        return [(ctx.t(key), payload) for key, payload in step.buttons]

    async def prompt(self, ctx: Ctx, step: Step) -> None:
        params = {k: v for k, v in ctx.data.items() if isinstance(v, str | int | float)}
        ctx.replies.append(
            Reply(
                ctx.t(step.say, **params), tuple(await self._buttons(ctx, step)), step.ask_location
            )
        )

    # ------------------------------------------------------------------ no flow

    def _target(self, u: Understanding | None, confidence: float | None = None) -> str | None:
        if u is None or u.intent is None or u.confidence < (confidence or self.min_confidence):
            return None
        return self.flows.intents.get(u.intent)

    async def _go(self, ctx: Ctx, target: str) -> None:
        if target.startswith(SAY):
            ctx.conv.end()
            if target == "say:out_of_scope":
                self._menu(ctx, intro="out_of_scope")
            else:
                ctx.say(target[len(SAY) :])
            return
        await self.start(ctx, target, {})

    async def _fresh(self, ctx: Ctx) -> None:
        msg = ctx.msg
        text = msg.text.strip()
        if msg.kind == "text" and text.isdigit() and 1 <= int(text) <= len(self.flows.menu):
            await self.start(ctx, self.flows.menu[int(text) - 1], {})
            return
        if msg.kind == "photo":
            # A photo out of the blue is a report in the making: start one with it.
            await self.start(ctx, "report", {})
            await self._in_flow(ctx)
            return
        if msg.kind == "text" and (flow := self.flows.commands.get(fold(text).strip())):
            await self.start(ctx, flow, {})
            return
        u = ctx.understood
        if u is not None and u.source == "unavailable":
            self._menu(ctx, intro="menu.degraded")
            return
        target = self._target(u)
        if target:
            await self._go(ctx, target)
            return
        self._menu(ctx, intro="menu.not_understood")

    def _menu(self, ctx: Ctx, *, intro: str = "") -> None:
        """The numbered menu, after `intro` in the same message: one message, not two,
        counts once against the channel's rate (Telegram: 30 a second for the whole bot),
        and with Rasa down every chat gets it."""
        items = [(ctx.t(f"menu.{name}"), f"{FLOW_PAYLOAD}{name}") for name in self.flows.menu]
        lines = [f"{i}. {label}" for i, (label, _p) in enumerate(items, 1)]
        head = [ctx.t(intro)] if intro else []
        ctx.replies.append(Reply("\n".join([*head, ctx.t("menu.title"), *lines]), tuple(items)))
