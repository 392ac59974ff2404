"""Telephony's settings: read through the core's variable reader, and read without writing
(the passwords are made by an explicit setup step, `ensure_secrets`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ioc_core.config import ConfigError
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render

ROOT = Path(__file__).resolve().parents[2]


def test_i12_05_reading_the_asterisk_settings_writes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "asterisk"
    settings = AsteriskSettings.from_env(state, {})
    assert not state.exists(), "a settings reader made the state folder or its secrets"
    assert settings.ari_password == "" and set(settings.agents) == {
        "1001",
        "1002",
        "1003",
        "1004",
        "1005",
    }
    # Never an Asterisk configuration with blank passwords: the setup step is named.
    with pytest.raises(ConfigError, match="ioc setup asterisk"):
        settings.placeholders()


def test_i12_05_the_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    env = {"IOC_ASTERISK_AGENTS": "2001,2002", "IOC_ASTERISK_BROWSER_AGENTS": "2901"}
    path = ensure_secrets(tmp_path, env)
    assert path.stat().st_mode & 0o777 == 0o600
    first = json.loads(path.read_text())
    assert set(first) == {
        "ari_password", "ami_password", "agent_2001", "agent_2002", "agent_2901"
    }  # fmt: skip
    ensure_secrets(tmp_path, {**env, "IOC_ASTERISK_AGENTS": "2001,2002,2003"})
    again = json.loads(path.read_text())
    assert {k: again[k] for k in first} == first, "kept passwords never change"
    assert again["agent_2003"] and len(again) == 6
    settings = AsteriskSettings.from_env(tmp_path, {**env, "IOC_AMI_PASSWORD": "given"})
    assert settings.ari_password == first["ari_password"] and settings.ami_password == "given"
    assert settings.agents == {"2001": first["agent_2001"], "2002": first["agent_2002"]}
    assert all("@{" not in text for text in render(settings.placeholders()).values())


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, True),
        ({"IOC_RECORD_CALLS": "0"}, False),
        ({"IOC_RECORD_CALLS": "off"}, False),
        ({"IOC_RECORD_CALLS": "False"}, False),
        ({"IOC_RECORD_CALLS": "yes"}, True),
    ],
)
def test_i12_05_flags_are_read_by_word(tmp_path: Path, env: dict[str, str], expected: bool) -> None:
    assert AsteriskSettings.from_env(tmp_path, env).record_calls is expected


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"IOC_RECORD_CALLS": "maybe"}, "IOC_RECORD_CALLS"),
        ({"IOC_ASTERISK_SIP_PORT": "five"}, "IOC_ASTERISK_SIP_PORT"),
        ({"IOC_STT_LIVE_MAX": "-1"}, "IOC_STT_LIVE_MAX"),
    ],
)
def test_i12_05_a_bad_value_is_named(tmp_path: Path, env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AsteriskSettings.from_env(tmp_path, env)


def test_i12_05_telephony_reads_no_environment_of_its_own() -> None:
    """Every telephony setting goes through telephony.settings.variables (the core's reader):
    no os.environ or getenv, and no private number parser for a variable."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "telephony").rglob("*.py"))
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if re.search(r"os\.environ|getenv\(|int\(env", line)
    ]
    assert offenders == []
