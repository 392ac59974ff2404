"""The telephony the call-taker console and the supervisor board rely on, against the project's
Asterisk (ADR 0030): browser agents (WebRTC endpoints, ws and wss), the call's id on the agent's
ringing leg, the [agents] context with blind and attended transfers, and, through the hub's API
with the switchboard running, the three-way call, listen/whisper/barge and the call-back
dialled from the agent's own phone.

Agents are tests/sip/sip_agent.py's raw SIP phones (they read the INVITE's headers and send
REFERs); callers are SIPp from the trunk's address; the citizen behind the trunk is a SIPp
UAS on the trunk's contact. Ports and chroot as in test_agent_phone.py (IOC_ASTERISK_*,
IOC_TEST_ASTERISK_ROOT).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ioc_core.access.roles import Principal, Role
from ioc_core.runtime import Core
from ioc_core.web.app import make_app
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess
from telephony.calls.lifecycle import Fact
from telephony.keys import STORE
from tests.helpers import wait_until
from tests.integration.test_sip_edge import digest, parse, ws_register
from tests.sip.sip_agent import SipAgent, user_of
from tests.sip.sipp import Caller

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def pbx(chroot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path_factory.mktemp("console-pbx"))
    ensure_secrets(proc.state_dir)
    proc.start(render(AsteriskSettings.from_env(proc.state_dir).placeholders()))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def asterisk(pbx: AsteriskProcess) -> AsteriskSettings:
    return AsteriskSettings.from_env(pbx.state_dir)


@pytest.fixture
async def phones(asterisk: AsteriskSettings) -> AsyncIterator[dict[str, SipAgent]]:
    """Desk phones 1001-1003, registered."""
    made = {
        ext: await SipAgent(ext, asterisk.agents[ext], sip_port=asterisk.sip_port).start()
        for ext in ("1001", "1002", "1003")
    }
    yield made
    for phone in made.values():
        await phone.stop()


def channels(pbx: AsteriskProcess) -> list[dict[str, str]]:
    """`core show channels concise`: name, context, exten, ..., app, data, ..., bridge, uid."""
    keys = ("name", "context", "exten", "prio", "state", "app", "data", "cid", "acct", "peer",
            "ama", "duration", "bridge", "uid")  # fmt: skip
    rows = pbx.cli("core show channels concise").splitlines()
    return [dict(zip(keys, row.split("!"), strict=False)) for row in rows if "!" in row]


def channel(pbx: AsteriskProcess, prefix: str) -> dict[str, str] | None:
    return next((c for c in channels(pbx) if c["name"].startswith(prefix)), None)


def bridged(pbx: AsteriskProcess, a: str, b: str) -> bool:
    one, two = channel(pbx, a), channel(pbx, b)
    return bool(one and two and one["bridge"] and one["bridge"] == two["bridge"])


def caller(asterisk: AsteriskSettings, folder: Path, service: str, ani: str) -> Caller:
    return Caller(
        service=service, ani=ani, hold_ms=30_000, folder=folder, sip_port=asterisk.sip_port
    )


async def citizen(asterisk: AsteriskSettings, folder: Path) -> asyncio.subprocess.Process:
    """The citizen's phone behind the trunk: SIPp answers one call on the trunk's contact and
    writes the messages it saw to folder/citizen.log."""
    port = asterisk.trunk_contact.rsplit(":", 1)[1]
    return await asyncio.create_subprocess_exec(
        *("sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", port, "-m", "1", "-nostdin"),
        *("-trace_msg", "-message_file", str(folder / "citizen.log")),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=str(folder),
    )


def invite_seen(folder: Path) -> str | None:
    log = folder / "citizen.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    match = re.search(r"INVITE sip:.*?\r?\n\r?\n", text, re.S)
    return match.group(0) if match else None


# ---------------------------------------------------------------------------- browser agents


async def _ws_exchange(url: str, message: str, ssl_context: ssl.SSLContext | None = None) -> Any:
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), ssl=ssl_context or False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(url, protocols=("sip",)) as ws,
    ):
        await ws.send_str(message)
        frame = await asyncio.wait_for(ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        return parse(frame.data)


async def test_browser_agents_are_webrtc_endpoints_that_register_over_ws_and_wss(
    pbx: AsteriskProcess, asterisk: AsteriskSettings
) -> None:
    assert pbx.log_problems() == [], "certificates, wss and the endpoints load clean"
    assert list(asterisk.browser_agents) == ["2001", "2002", "2003", "2004", "2005"]
    shown = pbx.cli("pjsip show endpoint 2001")
    settings = {
        ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip()
        for ln in shown.splitlines()
        if ":" in ln and ln.startswith(" ")
    }
    assert settings["webrtc"] == "yes" and settings["media_encryption"] == "dtls"
    assert settings["dtls_cert_file"] == "/etc/asterisk/keys/dtls.crt"
    assert settings["context"] == "agents"
    if asterisk.browser_local:
        assert settings["media_address"] == "127.0.0.1"
        assert settings["bind_rtp_to_media_address"] == "true"
    keys = pbx.state_dir / "etc" / "keys"
    assert (keys / "dtls.key").stat().st_mode & 0o077 == 0, "the keys are private"
    assert "transport-wss" in pbx.cli("pjsip show transports")

    # ws on loopback: challenged, then registered with the right password.
    ws_url = f"ws://127.0.0.1:{asterisk.http_port}/ws"
    challenge = await _ws_exchange(ws_url, ws_register("2001"))
    assert challenge.code == 401
    wrong = digest(
        challenge.header("WWW-Authenticate"), "2001", "nope", "REGISTER", "sip:127.0.0.1"
    )
    assert (await _ws_exchange(ws_url, ws_register("2001", wrong))).code == 401
    right = digest(
        challenge.header("WWW-Authenticate"),
        "2001",
        asterisk.browser_agents["2001"],
        "REGISTER",
        "sip:127.0.0.1",
    )
    assert (await _ws_exchange(ws_url, ws_register("2001", right))).code == 200
    # (its contact lives as long as that WebSocket: gone again once it closed)

    # wss: the TLS handshake with the certificate made at setup (checked as the CA, for
    # 127.0.0.1), then SIP over it.
    trusted = ssl.create_default_context(cafile=str(keys / "wss.crt"))
    wss = await _ws_exchange(
        f"wss://127.0.0.1:{asterisk.wss_port}/ws", ws_register("2002"), ssl_context=trusted
    )
    assert wss.code == 401 and wss.header("WWW-Authenticate").startswith("Digest ")


# ---------------------------------------------------------------------------- the ringing leg


async def test_the_agents_ringing_leg_names_the_call_and_its_service(
    pbx: AsteriskProcess, asterisk: AsteriskSettings, phones: dict[str, SipAgent], tmp_path: Path
) -> None:
    # No Stasis app here: the 115 call falls back to its queue, which rings the member.
    pbx.cli("queue add member PJSIP/1001 to emergency-115")
    call = await caller(asterisk, tmp_path, "115", "0912000101").start()
    try:
        ringing = await phones["1001"].ringing()
        assert ringing.invite is not None
        trunk = channel(pbx, "PJSIP/trunk-")
        assert trunk is not None
        # The calls API knows a call by its caller channel's UNIQUEID (AMI's Uniqueid).
        assert ringing.invite.header("X-IOC-Call") == trunk["uid"]
        assert ringing.invite.header("X-IOC-Service") == "115"
        assert user_of(ringing.invite.header("From")) == "0912000101"
    finally:
        pbx.cli("queue remove member PJSIP/1001 from emergency-115")
        call.stop()
        pbx.cli("channel request hangup all")


# ---------------------------------------------------------------------------- the [agents] context


async def _answered_queue_call(
    pbx: AsteriskProcess, asterisk: AsteriskSettings, agent: SipAgent, folder: Path, ani: str
) -> tuple[Caller, Any]:
    pbx.cli(f"queue add member PJSIP/{agent.extension} to emergency-113")
    call = await caller(asterisk, folder, "113", ani).start()
    dialog = await agent.ringing()
    await agent.answer(dialog)
    pbx.cli(f"queue remove member PJSIP/{agent.extension} from emergency-113")
    await wait_until(lambda: bridged(pbx, "PJSIP/trunk-", f"PJSIP/{agent.extension}-"), 5)
    return call, dialog


async def test_a_blind_transfer_connects_the_caller_to_another_agent(
    pbx: AsteriskProcess, asterisk: AsteriskSettings, phones: dict[str, SipAgent], tmp_path: Path
) -> None:
    first, second = phones["1001"], phones["1002"]
    call, dialog = await _answered_queue_call(pbx, asterisk, first, tmp_path, "0912000102")
    try:
        call_id = dialog.invite.header("X-IOC-Call")
        assert await first.refer(dialog, "1002") == 202
        target = await second.ringing()
        assert user_of(target.invite.header("From")) == "0912000102"  # the caller, not 1001
        assert target.invite.header("X-IOC-Call") == call_id, "the console pops the same call"
        await second.answer(target)
        # The final NOTIFY says the target answered; the transferor then hangs up (JsSIP does).
        await wait_until(lambda: any("200 OK" in n.body for n in dialog.notifies), 5, "NOTIFY")
        await first.hangup(dialog)
        await wait_until(lambda: bridged(pbx, "PJSIP/trunk-", "PJSIP/1002-"), 5, "caller-1002")
        assert channel(pbx, "PJSIP/1001-") is None
    finally:
        call.stop()
        pbx.cli("channel request hangup all")


async def test_an_attended_transfer_replaces_the_agents_own_call(
    pbx: AsteriskProcess, asterisk: AsteriskSettings, phones: dict[str, SipAgent], tmp_path: Path
) -> None:
    first, second = phones["1001"], phones["1002"]
    call, dialog = await _answered_queue_call(pbx, asterisk, first, tmp_path, "0912000103")
    try:
        # The agent calls 1002 while the caller waits, then joins the two.
        placing = asyncio.create_task(first.call("1002"))
        ringing = await second.ringing()
        await second.answer(ringing)
        consult = await placing
        assert await first.refer(dialog, "1002", replaces=consult) == 202
        await wait_until(lambda: bridged(pbx, "PJSIP/trunk-", "PJSIP/1002-"), 5, "caller-1002")
        await wait_until(lambda: channel(pbx, "PJSIP/1001-") is None, 5, "1001 out of it")
    finally:
        call.stop()
        pbx.cli("channel request hangup all")


async def test_agents_reach_agencies_and_national_numbers_and_nothing_else(
    pbx: AsteriskProcess, asterisk: AsteriskSettings, phones: dict[str, SipAgent], tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="404"):
        await phones["1001"].call("99999")  # an unallocated number
    with pytest.raises(RuntimeError, match="404"):
        await phones["1001"].call("0012025550123")  # abroad: not in [dialout] national
    uas = await citizen(asterisk, tmp_path)
    try:
        # 8113: the police duty desk of services.toml [dialout.agencies], through the trunk,
        # showing the hub's number (dialout caller_id) rather than the agent's extension.
        placed = asyncio.create_task(phones["1001"].call("8113"))
        invite = await wait_until(lambda: invite_seen(tmp_path), 10, "the trunk's INVITE")
        assert invite.startswith("INVITE sip:02710000113@")
        from_line = next(ln for ln in invite.splitlines() if ln.lower().startswith("from:"))
        assert user_of(from_line) == asterisk.dialout.caller_id == "1022"
        dialog = await placed
        await phones["1001"].hangup(dialog)
    finally:
        if uas.returncode is None:
            uas.kill()
        await uas.wait()
        pbx.cli("channel request hangup all")


# ---------------------------------------------------------------------------- through the API

AGENT_1001 = "agent-1001"
AGENT_1002 = "agent-1002"
SUPERVISOR_1002 = "supervisor-1002"
TOKEN_ONLY = "calltaker-token"
NO_EXTENSION = "supervisor-without-phone"
PRINCIPALS = {
    AGENT_1001: Principal(role=Role.CALLTAKER, name="le.thi.cuc", extension="1001", session=True),
    AGENT_1002: Principal(role=Role.CALLTAKER, name="tran.van.b", extension="1002", session=True),
    SUPERVISOR_1002: Principal(
        role=Role.SUPERVISOR, name="nguyen.giam.sat", extension="1002", session=True
    ),
    "browser-2001": Principal(role=Role.CALLTAKER, name="pham.d", extension="2001", session=True),
    TOKEN_ONLY: Principal(role=Role.CALLTAKER, name="api-client", extension="2001"),
    NO_EXTENSION: Principal(role=Role.SUPERVISOR, name="no.phone", session=True),
}


def as_(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {who}"}


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the store runs on both databases elsewhere


@pytest.fixture
async def hub(
    core: Core, pbx: AsteriskProcess, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[Any, Any]]:
    """The hub's app with its switchboard on this test's Asterisk (the same secrets), and
    signed-in staff sessions standing in for Part A's sign-in: the token verifier answers
    the principals above for their names."""
    state = core.settings.data_dir / "asterisk"
    state.mkdir(parents=True, exist_ok=True)
    shutil.copy(pbx.state_dir / "secrets.json", state / "secrets.json")
    monkeypatch.setenv("IOC_SWITCHBOARD", "on")
    real = core.tokens.principal

    async def principal(token: str) -> Principal:
        return PRINCIPALS[token] if token in PRINCIPALS else await real(token)

    monkeypatch.setattr(core.tokens, "principal", principal)
    async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:

        async def up() -> bool:
            answer = await client.get("/api/v1/queues", headers=as_(AGENT_1001))
            return bool((await answer.json()).get("switchboard"))

        await wait_until(up, 15, "the switchboard connected")
        yield client
        await asyncio.to_thread(pbx.cli, "channel request hangup all")
        for ext in ("1001", "1002", "1003"):
            await client.post(f"/api/v1/agents/{ext}/logout", headers=as_(SUPERVISOR_1002))


async def _connected_call(
    hub: TestClient[Any, Any], asterisk: AsteriskSettings, phone: SipAgent, folder: Path, ani: str
) -> tuple[Caller, Any, dict[str, Any]]:
    """A 114 caller answered by `phone` (logged in through the API as itself)."""
    login = await hub.post(
        f"/api/v1/agents/{phone.extension}/login",
        json={"queues": ["emergency-114"]},
        headers=as_(f"agent-{phone.extension}"),
    )
    assert login.status == 200, await login.text()
    call = await caller(asterisk, folder, "114", ani).start()
    dialog = await phone.ringing(15)
    await phone.answer(dialog)
    call_id = dialog.invite.header("X-IOC-Call")

    async def connected() -> dict[str, Any] | None:
        answer = await hub.get(f"/api/v1/calls/{call_id}", headers=as_(AGENT_1001))
        body = await answer.json() if answer.status == 200 else {}
        return body if body.get("status") == "connected" else None

    # The header names the call exactly as the calls API knows it.
    found = await wait_until(connected, 10, "the call connected in the calls API")
    assert found["ani"] == ani and found["agent"] == phone.extension
    return call, dialog, found


async def test_the_softphone_and_who_may_act_on_which_agent(
    hub: TestClient[Any, Any], asterisk: AsteriskSettings, phones: dict[str, SipAgent]
) -> None:
    answer = await hub.get("/api/v1/softphone", headers=as_("browser-2001"))
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
    assert await answer.json() == {
        "extension": "2001",
        "password": asterisk.browser_agents["2001"],
        "uri": "sip:2001@127.0.0.1",
        "ws_url": f"ws://127.0.0.1:{asterisk.http_port}/ws",
        "display_name": "pham.d",
        "ice_servers": [],
    }
    remote = await hub.get(
        "/api/v1/softphone", headers={**as_("browser-2001"), "Host": "ioc.example.vn:8443"}
    )
    body = await remote.json()
    assert body["ws_url"] == f"wss://ioc.example.vn:{asterisk.wss_port}/ws"
    assert body["uri"] == "sip:2001@ioc.example.vn"
    for who in (TOKEN_ONLY, AGENT_1001):  # a token; a desk phone's user
        refused = await hub.get("/api/v1/softphone", headers=as_(who))
        assert refused.status == 403 and (await refused.json())["error_id"] == "no-softphone"

    mine = await hub.post("/api/v1/agents/1001/pause", json={}, headers=as_(AGENT_1001))
    assert mine.status == 409  # allowed, but 1001 is not logged in
    other = await hub.post("/api/v1/agents/1003/login", json={}, headers=as_(AGENT_1001))
    assert other.status == 403 and (await other.json())["error_id"] == "not-your-extension"
    anyone = await hub.post("/api/v1/agents/1003/login", json={}, headers=as_(SUPERVISOR_1002))
    assert anyone.status == 200 and (await anyone.json())["state"] == "available"
    spy = await hub.post("/api/v1/agents/1003/monitor", json={}, headers=as_(AGENT_1002))
    assert spy.status == 403 and (await spy.json())["error_id"] == "supervisors-only"


async def test_a_three_way_call_puts_caller_agent_and_target_in_one_conference(
    hub: TestClient[Any, Any],
    pbx: AsteriskProcess,
    asterisk: AsteriskSettings,
    phones: dict[str, SipAgent],
    tmp_path: Path,
) -> None:
    call, _dialog, found = await _connected_call(
        hub, asterisk, phones["1001"], tmp_path, "0912000201"
    )
    try:
        path = f"/api/v1/calls/{found['id']}/conference"
        refused = await hub.post(path, json={"target": "1003"}, headers=as_(AGENT_1002))
        assert refused.status == 403 and (await refused.json())["error_id"] == "not-your-call"
        answer = await hub.post(path, json={"target": "1003"}, headers=as_(AGENT_1001))
        assert answer.status == 200, await answer.text()
        room = (await answer.json())["room"]
        third = await phones["1003"].ringing()
        assert third.invite.header("X-IOC-Call") == found["id"]
        await phones["1003"].answer(third)

        def members() -> list[str]:
            listed = pbx.cli(f"confbridge list {room}")
            return [
                ln.split()[0] for ln in listed.splitlines() if ln.startswith(("PJSIP/", "Local/"))
            ]

        inside = await wait_until(lambda: len(members()) == 3 and members(), 10, "three inside")
        assert any(m.startswith("PJSIP/trunk-") for m in inside)
        assert any(m.startswith("PJSIP/1001-") for m in inside)
    finally:
        call.stop()


async def test_a_supervisor_whispers_to_an_agent_from_their_own_phone(
    hub: TestClient[Any, Any],
    pbx: AsteriskProcess,
    asterisk: AsteriskSettings,
    phones: dict[str, SipAgent],
    tmp_path: Path,
) -> None:
    call, _dialog, _found = await _connected_call(
        hub, asterisk, phones["1001"], tmp_path, "0912000202"
    )
    try:
        answer = await hub.post(
            "/api/v1/agents/1001/monitor", json={"mode": "whisper"}, headers=as_(SUPERVISOR_1002)
        )
        assert answer.status == 200, await answer.text()
        ringing = await phones["1002"].ringing()
        await phones["1002"].answer(ringing)
        spy = await wait_until(
            lambda: next((c for c in channels(pbx) if c["app"] == "ChanSpy"), None), 5, "ChanSpy"
        )
        assert spy["name"].startswith("PJSIP/1002-") and spy["data"] == "PJSIP/1001-,qwES"
        # With option S, ChanSpy ends at once when no channel matches: still there, it spies.
        await asyncio.sleep(1.0)
        still = next((c for c in channels(pbx) if c["app"] == "ChanSpy"), None)
        assert still is not None and still["name"] == spy["name"]
    finally:
        call.stop()


async def test_a_call_back_rings_the_agents_phone_then_the_citizen(
    hub: TestClient[Any, Any],
    pbx: AsteriskProcess,
    asterisk: AsteriskSettings,
    phones: dict[str, SipAgent],
    tmp_path: Path,
) -> None:
    store = hub.app[STORE]
    uid = "1700000300.1"
    await store.record(uid, Fact.ARRIVED, ani="0912000303", service="1022", channel="PJSIP/x")
    await store.record(uid, Fact.QUEUED, queue="hotline-1022", position=1)
    await store.record(uid, Fact.ABANDONED)
    item = next(i for i in await store.callbacks.items() if i["ani"] == "0912000303")
    assert not item["automatic"]  # 1022: waits for a person

    nobody = await hub.post(f"/api/v1/callbacks/{item['id']}/dial", headers=as_(NO_EXTENSION))
    assert nobody.status == 403 and (await nobody.json())["error_id"] == "no-extension"
    uas = await citizen(asterisk, tmp_path)
    try:
        dial = await hub.post(f"/api/v1/callbacks/{item['id']}/dial", headers=as_(AGENT_1001))
        assert dial.status == 200, await dial.text()
        body = await dial.json()
        assert body["status"] == "claimed" and body["assigned_to"] == "le.thi.cuc"
        ringing = await phones["1001"].ringing()
        assert user_of(ringing.invite.header("From")) == "0912000303"  # whom it is about to call
        await phones["1001"].answer(ringing)
        invite = await wait_until(lambda: invite_seen(tmp_path), 10, "the trunk's INVITE")
        assert invite.startswith("INVITE sip:0912000303@")
        from_line = next(ln for ln in invite.splitlines() if ln.lower().startswith("from:"))
        assert user_of(from_line) == "1022", "the citizen sees the service's number"
        await wait_until(lambda: bridged(pbx, "PJSIP/1001-", "PJSIP/trunk-"), 10, "connected")
        await phones["1001"].hangup(ringing)
    finally:
        if uas.returncode is None:
            uas.kill()
        await uas.wait()
    done = await hub.post(
        f"/api/v1/callbacks/{item['id']}/complete",
        json={"note": "Đã gọi lại, người dân xác nhận", "outcome": "answered"},
        headers=as_(AGENT_1001),
    )
    assert done.status == 200
    finished = await done.json()
    assert finished["status"] == "done" and finished["last_outcome"] == "answered"


def test_secrets_hold_every_agents_password(pbx: AsteriskProcess) -> None:
    kept = json.loads((pbx.state_dir / "secrets.json").read_text())
    for ext in ("1001", "1005", "2001", "2005"):
        assert len(kept[f"agent_{ext}"]) >= 20
