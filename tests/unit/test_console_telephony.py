"""The console's telephony as pure functions: ICE host candidates, the [dialout] table rendered
into [agents], the softphone's settings, and who may act on which agent (ADR 0030)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioc_core.api.web import Caller
from ioc_core.config import ConfigError
from ioc_core.errors import Forbidden
from telephony.asterisk.config import AsteriskSettings, Dialout
from telephony.asterisk.webrtc import ensure_certificates, ice_host_candidates
from telephony.settings import SERVICES_FILE
from telephony.web_console import may_act_on, softphone


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        ([], ""),
        (["127.0.0.1"], ""),  # nothing to map
        (["10.0.0.5"], "[ice_host_candidates]\n10.0.0.5 => 127.0.0.1\n"),
        (
            ["10.0.0.5", "127.0.0.1", "192.168.1.9"],
            "[ice_host_candidates]\n10.0.0.5 => 127.0.0.1\n192.168.1.9 => 127.0.0.1\n",
        ),
    ],
)
def test_ice_host_candidates(addresses: list[str], expected: str) -> None:
    assert ice_host_candidates(addresses) == expected


def test_the_shipped_dialout_table_renders_the_agents_context() -> None:
    dialout = Dialout.load(SERVICES_FILE)
    assert dialout.caller_id == "1022"
    plan = dialout.dialplan({"1001": "x", "2001": "y"}).splitlines()
    assert plan[:2] == [
        "exten => 1001,1,Goto(agent-dial,${EXTEN},1)",
        "exten => 2001,1,Goto(agent-dial,${EXTEN},1)",
    ]
    assert "exten => 8113,1,Goto(dialout,02710000113,1)" in plan
    assert "exten => _0[35789]XXXXXXXX,1,Goto(dialout,${EXTEN},1)" in plan


@pytest.mark.parametrize(
    "table",
    [
        '[dialout]\ncaller_id = "1022;x"\n',  # lands in extensions.conf as it is
        '[dialout]\nnational = ["_X.,1,System(rm)"]\n',
        '[dialout.agencies.81]\nnumber = "0271 000"\n',
        '[dialout.agencies.8x]\nnumber = "0271000"\n',
        '[dialout.agencies.81]\nname = "no number"\n',
    ],
)
def test_a_bad_dialout_table_stops_the_start(tmp_path: Path, table: str) -> None:
    path = tmp_path / "services.toml"
    path.write_text(table)
    with pytest.raises(ConfigError, match="dialout"):
        Dialout.load(path)


def test_an_agency_number_may_not_shadow_an_agent() -> None:
    with pytest.raises(ConfigError, match="1001"):
        Dialout(agencies={"1001": "02710000113"}).dialplan({"1001": "x"})


def _asterisk() -> AsteriskSettings:
    return AsteriskSettings(http_port=8088, wss_port=8089, browser_agents={"2001": "secret-2001"})


def _who(role: str = "calltaker", extension: str | None = "2001", session: bool = True) -> Caller:
    return Caller(role=role, name="le.thi.cuc", is_staff=True, extension=extension, session=session)


@pytest.mark.parametrize(
    ("host", "uri", "ws_url"),
    [
        ("127.0.0.1", "sip:2001@127.0.0.1", "ws://127.0.0.1:8088/ws"),
        ("localhost", "sip:2001@127.0.0.1", "ws://127.0.0.1:8088/ws"),
        ("::1", "sip:2001@127.0.0.1", "ws://127.0.0.1:8088/ws"),
        ("ioc.example.vn", "sip:2001@ioc.example.vn", "wss://ioc.example.vn:8089/ws"),
        ("10.0.0.5", "sip:2001@10.0.0.5", "wss://10.0.0.5:8089/ws"),
    ],
)
def test_the_softphone_follows_the_pages_host(host: str, uri: str, ws_url: str) -> None:
    phone = softphone(_who(), _asterisk(), host)
    assert phone == {
        "extension": "2001",
        "password": "secret-2001",
        "uri": uri,
        "ws_url": ws_url,
        "display_name": "le.thi.cuc",
        "ice_servers": [],
    }


@pytest.mark.parametrize(
    "who",
    [
        _who(session=False),  # a token, not a signed-in browser
        _who(extension=None),
        _who(extension="1001"),  # a desk phone: not a WebRTC endpoint
    ],
)
def test_no_softphone(who: Caller) -> None:
    with pytest.raises(Forbidden) as refused:
        softphone(who, _asterisk(), "127.0.0.1")
    assert refused.value.error_id == "no-softphone"


@pytest.mark.parametrize(
    ("role", "extension", "target", "allowed"),
    [
        ("calltaker", "1001", "1001", True),
        ("calltaker", "1001", "1002", False),
        ("calltaker", None, "1001", False),
        ("leader", "1001", "1002", False),
        ("supervisor", None, "1002", True),
        ("admin", "2001", "1002", True),
    ],
)
def test_who_may_act_on_which_agent(
    role: str, extension: str | None, target: str, allowed: bool
) -> None:
    who = _who(role=role, extension=extension)
    if allowed:
        may_act_on(who, target)
    else:
        with pytest.raises(Forbidden) as refused:
            may_act_on(who, target)
        assert refused.value.error_id == "not-your-extension"


def test_certificates_are_made_once_and_private(tmp_path: Path) -> None:
    keys = ensure_certificates(tmp_path, names=["10.0.0.5", "0.0.0.0", "ioc-host"])
    made = {p.name: p.stat() for p in keys.iterdir()}
    assert set(made) == {"dtls.crt", "dtls.key", "wss.crt", "wss.key"}
    assert made["wss.key"].st_mode & 0o077 == 0 and made["dtls.key"].st_mode & 0o077 == 0
    ensure_certificates(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in keys.iterdir()} == {
        n: s.st_mtime_ns for n, s in made.items()
    }, "kept, never remade"
