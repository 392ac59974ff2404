"""The dialplan and the Python side agree: hotlines, queues and channel variables."""

from __future__ import annotations

import re
from pathlib import Path

from telephony import dialplan_vars
from telephony.settings import SwitchboardSettings

ETC = Path(__file__).resolve().parents[2] / "dialplans" / "etc"


def test_every_hotline_has_its_queue_and_its_route() -> None:
    settings = SwitchboardSettings.from_env({})
    queues = set(re.findall(r"^\[([a-z0-9-]+)\]\(queue-defaults\)", _read("queues.conf"), re.M))
    from_trunk = _context(_read("extensions.conf"), "from-trunk")
    for number, service in settings.services.items():
        assert service.queue in queues, f"{number}: queue {service.queue} not in queues.conf"
        assert f"exten => {number}," in from_trunk, f"{number} unreachable from the trunk"
    routed = set(re.findall(r"^exten => (\d+),", from_trunk, re.M))
    assert routed == set(settings.services), "the trunk reaches exactly the configured hotlines"


def test_emergency_queues_outrank_the_hotline() -> None:
    text = _read("queues.conf")
    weights = dict(re.findall(r"^\[([a-z0-9-]+)\]\(queue-defaults\)\nweight = (\d+)", text, re.M))
    for number, service in SwitchboardSettings.from_env({}).services.items():
        expected = "10" if service.emergency else "0"
        assert weights[service.queue] == expected, number


def test_every_declared_channel_variable_is_used_by_the_dialplan() -> None:
    extensions = _read("extensions.conf")
    for name in dialplan_vars.ALL:
        assert name in extensions, f"{name} is declared in Python but not in extensions.conf"
    stasis = re.findall(r"Stasis\((\w+),", extensions)
    assert stasis and set(stasis) == {dialplan_vars.STASIS_APP}


def test_every_stasis_and_agi_step_has_a_next_step() -> None:
    """A failed Stasis()/AGI() returns to the dialplan: the next priority must exist."""
    lines = _read("extensions.conf").splitlines()
    for i, line in enumerate(lines):
        if "Stasis(" in line or "AGI(" in line:
            follow = lines[i + 1] if i + 1 < len(lines) else ""
            assert follow.lstrip().startswith("same => n"), f"no fallback after: {line}"


def _read(name: str) -> str:
    return (ETC / name).read_text("utf-8")


def _context(text: str, name: str) -> str:
    match = re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert match, name
    return match.group(1)
