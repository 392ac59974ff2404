"""Flows as data: the shipped file loads and names only existing handlers; a wrong file
fails at start-up naming the flow and step, not mid-conversation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bots.core.flows import FlowError, check_handlers, load_flows, parse_flows
from bots.core.handlers import HANDLERS, PROVIDERS, STARTERS, Faq, Services
from bots.messages import Conversation, Inbound
from bots.role import PROCEDURES, make_engine
from nlu.client import Understanding

GOOD: dict[str, Any] = {
    "menu": {"items": ["status"]},
    "intents": {"check_status": "status", "greet": "say:greet"},
    "commands": {"status": ["tra cứu"]},
    "flows": {
        "status": {
            "timeout_s": 600,
            "start": "code",
            "steps": {
                "code": {
                    "say": "status.code",
                    "accepts": ["text"],
                    "handler": "status_lookup",
                    "fallback": "status.code_fallback",
                    "on": {"shown": "@end", "again": "@stay"},
                }
            },
        }
    },
}


def test_the_shipped_flows_load_and_their_handlers_exist() -> None:
    flows = load_flows()
    check_handlers(flows, HANDLERS, PROVIDERS)
    assert set(flows.menu) <= set(flows.flows)
    assert set(STARTERS) <= set(flows.flows)
    assert flows.commands["danh gia"] == "rate"  # commands are matched without diacritics


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("flows.status.steps.code.colour", "red", "unknown keys"),
        ("flows.status.steps.code.accepts", ["voice"], "accepts"),
        ("flows.status.steps.code.handler", None, "`handler` is required"),
        ("flows.status.steps.code.on", {"shown": "nowhere"}, "unknown step 'nowhere'"),
        ("flows.status.start", "missing", "start"),
        ("flows.status.timeout_s", 0, "timeout_s"),
        ("flows.status.steps.code.buttons", [["a"]], "buttons"),
        ("menu.items", ["nothing"], "menu"),
        ("intents.greet", "no_such_flow", "neither a flow"),
        ("commands", {"nothing": ["x"]}, "no such flow"),
    ],
)
def test_a_wrong_file_is_refused_naming_the_place(path: str, value: Any, message: str) -> None:
    with pytest.raises(FlowError, match=message):
        parse_flows(_with(path, value))


def test_a_handler_that_does_not_exist_is_refused() -> None:
    flows = parse_flows(_with("flows.status.steps.code.handler", "no_such_handler"))
    with pytest.raises(FlowError, match="no handler 'no_such_handler'"):
        check_handlers(flows, HANDLERS, PROVIDERS)


class _Understood:
    """Stands in for the NLU client: answers what the test says the model said."""

    def __init__(self, intent: str, confidence: float) -> None:
        self.intent, self.confidence = intent, confidence

    async def understand(self, text: str) -> Understanding:
        return Understanding(text, self.intent, self.confidence)


@pytest.mark.parametrize(
    ("confidence", "flow", "said"),
    [
        (0.9, None, "Cấp, đổi thẻ căn cước"),  # sure: the question is answered
        (0.5, "status", "Mã phản ánh có dạng"),  # unsure: the step asks for its code again
    ],
)
async def test_a_step_that_expects_a_code_yields_to_a_clear_other_request(
    confidence: float, flow: str | None, said: str
) -> None:
    engine = make_engine(_Understood("ask_procedure", confidence))  # type: ignore[arg-type]
    services = Services(
        api=None,  # type: ignore[arg-type]
        public=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        faq=Faq.load(PROCEDURES),
        fetch_photo=None,  # type: ignore[arg-type]
    )
    conv = Conversation(flow="status", step="code")
    msg = Inbound(
        channel="web", chat_id="c", message_id="1", kind="text", text="cho hỏi thủ tục làm căn cước"
    )
    replies = await engine.handle(msg, conv, services)
    assert conv.flow == flow
    assert said in "\n".join(r.text for r in replies)
