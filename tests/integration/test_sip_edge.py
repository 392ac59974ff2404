"""The switchboard's SIP edge: what a stranger, a broken message and a browser softphone get.

Everything runs on loopback and the trunk is identified by its IP (127.0.0.1), so another
loopback address stands for "the internet": Linux routes all of 127/8 to lo, and a socket bound
to 127.0.0.2 is a different source address to Asterisk (bound on 127.0.0.1).

Measured on Asterisk 22.10 (Debian sid), documented in dialplans/etc/pjsip.conf:
- anything from an unknown address without credentials (INVITE to 113 or to an agent, REGISTER,
  OPTIONS) gets 401 Unauthorized and a challenge, never a call; an answer to the challenge gets
  another 401. An unknown user and a known agent with a wrong password get the same answers;
- a From header naming the trunk does not make a stranger the trunk (identify_by = ip);
- the trunk reaches only the hotline numbers (1001 from the trunk: 404) and its OPTIONS ping
  gets 200 OK (an SBC health check works with no configuration);
- unparseable datagrams are dropped silently (pjproject logs a WARNING), broken SDP gets 400,
  SDP without a common codec 488; Asterisk keeps running and the next call reaches its queue.

The ports come from AsteriskSettings (IOC_ASTERISK_*), the chroot from IOC_TEST_ASTERISK_ROOT
when set (a private copy, so that two Asterisks never share one chroot).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from ioc_core.artifacts import mounts_under
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess
from tests.helpers import wait_until
from tests.sip.sipp import SCENARIOS, Caller, run_sipp

pytestmark = pytest.mark.asterisk
TRUNK = "127.0.0.1"  # the default trunk IP (IOC_ASTERISK_TRUNK_IPS)
STRANGER = "127.0.0.2"  # "the internet": any address that is not the trunk's
SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@dataclass(frozen=True)
class Edge:
    proc: AsteriskProcess
    settings: AsteriskSettings
    pid: int


@pytest.fixture(scope="module")
def edge(chroot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    root = chroot_root
    proc = AsteriskProcess(root=root, state_dir=tmp_path_factory.mktemp("sip-edge"))
    ensure_secrets(proc.state_dir)
    settings = AsteriskSettings.from_env(proc.state_dir)
    try:
        pid = proc.start(render(settings.placeholders()))
        yield Edge(proc, settings, pid)
    finally:
        proc.stop()
        assert mounts_under(root) == [], "nothing stays mounted inside the chroot"


# ---------------------------------------------------------------------------- SIP by hand


@dataclass(frozen=True)
class Response:
    code: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


def parse(text: str) -> Response:
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    _version, code, reason = head[0].split(" ", 2)
    pairs = tuple((k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in head[1:]))
    return Response(int(code), reason, pairs)


class Peer:
    """A SIP user agent on one UDP socket: builds requests, reads answers until a final one."""

    def __init__(self, source: str, sip_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(2)
        self.source, self.port = source, int(self.sock.getsockname()[1])
        self.target = ("127.0.0.1", sip_port)
        self.call_id, self.tag = uuid.uuid4().hex, uuid.uuid4().hex[:10]

    def close(self) -> None:
        self.sock.close()

    def uri(self, user: str) -> str:
        host = f"127.0.0.1:{self.target[1]}"
        return f"sip:{user}@{host}" if user else f"sip:{host}"

    def request(
        self,
        method: str,
        user: str,
        *,
        from_user: str,
        cseq: int = 1,
        to_tag: str = "",
        extra: str = "",
        body: str = "",
        content_length: str | None = None,
        branch: str = "",
    ) -> str:
        to = f"<{self.uri(user)}>" + (f";tag={to_tag}" if to_tag else "")
        length = str(len(body.encode())) if content_length is None else content_length
        kind = "Content-Type: application/sdp\r\n" if body else ""
        return (
            f"{method} {self.uri(user)} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.source}:{self.port};rport;"
            f"branch={branch or 'z9hG4bK' + uuid.uuid4().hex[:16]}\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:{from_user}@{self.source}>;tag={self.tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{from_user}@{self.source}:{self.port}>\r\n"
            f"{extra}{kind}Content-Length: {length}\r\n\r\n{body}"
        )

    def send(self, data: bytes | str) -> None:
        self.sock.sendto(data.encode() if isinstance(data, str) else data, self.target)

    def final(self, wait_s: float = 2) -> Response | None:
        """The first final answer (provisional ones skipped); None when nothing comes."""
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                response = parse(self.sock.recv(65535).decode(errors="replace"))
            except TimeoutError:
                return None
            if response.code >= 200:
                return response
        return None


def to_tag(response: Response) -> str:
    match = re.search(r";tag=([^;>\s]+)", response.header("To"))
    return match.group(1) if match else ""


def digest(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """An MD5 qop=auth Authorization header answering `challenge` (RFC 2617/7616)."""
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.removeprefix("Digest ")))
    ha1 = hashlib.md5(f"{user}:{fields['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    cnonce, nc = uuid.uuid4().hex[:8], "00000001"
    answer = hashlib.md5(f"{ha1}:{fields['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}",realm="{fields["realm"]}",nonce="{fields["nonce"]}",'
        f'uri="{uri}",response="{answer}",opaque="{fields["opaque"]}",algorithm=MD5,'
        f'qop=auth,nc={nc},cnonce="{cnonce}"'
    )


def register(
    peer: Peer, user: str, password: str, *, expires: int = 60, cseq: int = 1
) -> tuple[Response | None, Response | None]:
    """REGISTER without credentials, then with `password` against the challenge."""
    extra = f"Expires: {expires}\r\n"
    peer.send(peer.request("REGISTER", user, from_user=user, cseq=cseq, extra=extra))
    first = peer.final()
    if first is None or first.code != 401:
        return first, None
    auth = digest(first.header("WWW-Authenticate"), user, password, "REGISTER", peer.uri(user))
    extra += f"Authorization: {auth}\r\n"
    peer.send(peer.request("REGISTER", user, from_user=user, cseq=cseq + 1, extra=extra))
    return first, peer.final()


def shape(response: Response | None) -> tuple[int, str, frozenset[str], frozenset[str]] | None:
    """What may not differ between an unknown user and a wrong password: status, reason,
    which headers, which challenge parameters (and realm, algorithm, qop values)."""
    if response is None:
        return None
    challenge = (
        response.header("WWW-Authenticate") if "www-authenticate" in response.names() else ""
    )
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    fixed = {f"{k}={params[k]}" for k in ("realm", "algorithm", "qop") if k in params}
    return response.code, response.reason, frozenset(response.names()), frozenset(params) | fixed


def sipp(settings: AsteriskSettings, folder: Path, *args: str, source: str = TRUNK) -> str:
    """One SIPp call from `source`; returns its output, failing the test when SIPp failed."""
    done = run_sipp(settings.sip_port, *args, source=source, cwd=folder)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def active_calls(edge: Edge) -> int:
    count = re.search(r"(\d+) active call", edge.proc.cli("core show channels count"))
    assert count is not None
    return int(count.group(1))


# ---------------------------------------------------------------------------- a clean start


def test_the_edge_starts_clean_with_a_websocket_transport(edge: Edge) -> None:
    assert edge.proc.log_problems() == [], "a clean start: no ERROR or WARNING in the log"
    transports = edge.proc.cli("pjsip show transports")
    assert "transport-ws" in transports and "transport-udp" in transports
    assert "/ws => Asterisk HTTP WebSocket" in edge.proc.cli("http show status")
    modules = edge.proc.cli("module show like res_s")
    assert "res_srtp.so" in modules and "res_security_log.so" in modules
    # the WebRTC template is a template: no endpoint comes of it
    assert "webrtc-agent" not in edge.proc.cli("pjsip show endpoints")


# ---------------------------------------------------------------------------- strangers


@pytest.mark.parametrize(
    ("caller", "service"),
    [
        ("0912345678", "113"),  # a hotline number, but not through the carrier
        ("0912345678", "1001"),  # an agent's extension
        ("trunk", "113"),  # claiming to be the trunk (its endpoint name) in From
        ("1001", "113"),  # claiming to be an agent: challenged, not trusted
    ],
)
def test_a_stranger_gets_a_challenge_never_a_call(
    edge: Edge, tmp_path: Path, caller: str, service: str
) -> None:
    before = active_calls(edge)
    scenario = str(SCENARIOS / "uac_guest_expect_401.xml")
    sipp(
        edge.settings,
        tmp_path,
        "-sf",
        scenario,
        "-key",
        "caller",
        caller,
        "-s",
        service,
        source=STRANGER,
    )
    assert active_calls(edge) == before


def register_as_stranger(edge: Edge, user: str) -> tuple[Response | None, Response | None]:
    peer = Peer(STRANGER, edge.settings.sip_port)
    try:
        return register(peer, user, "not-the-password")
    finally:
        peer.close()


async def test_unknown_user_and_wrong_password_look_the_same(edge: Edge) -> None:
    agent = next(iter(edge.settings.agents))
    unknown = await asyncio.to_thread(register_as_stranger, edge, "9999")
    known = await asyncio.to_thread(register_as_stranger, edge, agent)
    assert unknown[0] is not None and unknown[0].code == 401
    assert unknown[1] is not None and unknown[1].code == 401, "a wrong answer: challenged again"
    assert [shape(r) for r in unknown] == [shape(r) for r in known]
    assert "IOC Hub" in unknown[0].header("Server")  # no software name or version

    # what tells them apart is only in the security log, for the operators
    security = edge.proc.log_dir / "security.log"

    def logged(event: str, account: str) -> bool:
        parts = (f'SecurityEvent="{event}"', f'AccountID="{account}"', f"/{STRANGER}/")
        return any(all(p in line for p in parts) for line in security.read_text().splitlines())

    await wait_until(lambda: logged("InvalidAccountID", "9999"), 5, "InvalidAccountID 9999")
    await wait_until(lambda: logged("ChallengeResponseFailed", agent), 5, "a failed response")


def test_the_right_password_registers_an_agent(edge: Edge) -> None:
    """The counterpart of the test above: the challenge is answerable, so the 401s mean it."""
    agent, password = next(iter(edge.settings.agents.items()))
    peer = Peer(STRANGER, edge.settings.sip_port)
    try:
        first, second = register(peer, agent, password)
        assert first is not None and first.code == 401
        assert second is not None and second.code == 200, second
        # unregister: leave no contact behind for the other tests
        _challenge, removed = register(peer, agent, password, expires=0, cseq=3)
        assert removed is not None and removed.code == 200, removed
    finally:
        peer.close()


def test_the_trunk_reaches_only_the_hotlines(edge: Edge, tmp_path: Path) -> None:
    # from-trunk has no agents: an agent's extension is an unallocated number
    sipp(edge.settings, tmp_path, "-sf", str(SCENARIOS / "uac_expect_404.xml"), "-s", "1001")


@pytest.mark.parametrize(("source", "code"), [(TRUNK, 200), (STRANGER, 401)])
def test_an_options_ping(edge: Edge, source: str, code: int) -> None:
    """An SBC's health check (OPTIONS to the server, no user part) from the trunk: 200 OK with
    Asterisk's defaults; from anyone else: 401 like everything else."""
    peer = Peer(source, edge.settings.sip_port)
    try:
        peer.send(peer.request("OPTIONS", "", from_user="sbc"))
        answer = peer.final()
    finally:
        peer.close()
    assert answer is not None and answer.code == code


# ---------------------------------------------------------------------------- browsers


async def ws_exchange(
    settings: AsteriskSettings, message: str, *, source: str = STRANGER
) -> Response:
    """One SIP request over a fresh WebSocket from `source`, and its first answer."""
    url = f"ws://127.0.0.1:{settings.http_port}/ws"
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(url, protocols=("sip",)) as ws,
    ):
        assert ws.protocol == "sip"
        await ws.send_str(message)
        frame = await asyncio.wait_for(ws.receive(), 5)
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        return parse(frame.data)


def ws_register(user: str, auth: str = "") -> str:
    """A REGISTER as JsSIP sends it: Via .invalid host, transport=ws contact."""
    branch, call_id = uuid.uuid4().hex[:16], f"ws-{user}-{uuid.uuid4().hex}"
    extra = f"Authorization: {auth}\r\n" if auth else ""
    return (
        f"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK{branch}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:{user}@127.0.0.1>;tag={branch[:8]}\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{user}@df7jal23ls0d.invalid;transport=ws>;expires=60\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    )


async def test_a_browser_softphone_connects_over_websocket(edge: Edge) -> None:
    """ws://127.0.0.1:<http port>/ws, subprotocol sip: an agent is challenged, from loopback as
    from elsewhere, and a stranger gets the same answer. (Not from the trunk's address: over
    any transport, a request from a trunk IP that names no known user *is* the trunk; see
    pjsip.conf.)"""
    agent = next(iter(edge.settings.agents))
    local = await ws_exchange(edge.settings, ws_register(agent), source=TRUNK)
    assert local.code == 401 and local.header("WWW-Authenticate").startswith("Digest ")
    answer = await ws_exchange(edge.settings, ws_register(agent))
    assert answer.code == 401
    stranger = await ws_exchange(edge.settings, ws_register("9999"))
    assert shape(stranger) == shape(answer) == shape(local)


async def test_websocket_without_the_sip_subprotocol_is_refused(edge: Edge) -> None:
    url = f"ws://127.0.0.1:{edge.settings.http_port}/ws"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, protocols=("chat",))
    assert refused.value.status == 400


def add_webrtc_agent(edge: Edge, extension: str, password: str) -> None:
    """An agent on pjsip.conf's [webrtc-agent] template (loopback media by default,
    IOC_ASTERISK_BROWSER_LOCAL), added to the running configuration and loaded with a
    res_pjsip reload."""
    with open(edge.proc.etc_dir / "pjsip.conf", "a") as conf:
        conf.write(
            f"\n[{extension}](webrtc-agent)\nauth = {extension}\naors = {extension}\n"
            f"\n[{extension}]\ntype = auth\nauth_type = userpass\n"
            f"username = {extension}\npassword = {password}\n"
            f"\n[{extension}]\ntype = aor\nmax_contacts = 1\nremove_existing = yes\n"
        )
    assert "reloaded" in edge.proc.cli("module reload res_pjsip.so")


async def test_the_webrtc_agent_template_loads_clean(edge: Edge) -> None:
    """pjsip.conf's [webrtc-agent](!) as an agent would use it: no warning on (re)load, DTLS on,
    and it registers over the WebSocket with its password."""
    seen = len(edge.proc.log_problems())
    extension, password = "1099", "webrtc-test-secret"
    add_webrtc_agent(edge, extension, password)
    shown = edge.proc.cli(f"pjsip show endpoint {extension}")
    for option in ("webrtc", "media_encryption", "ice_support", "use_avpf", "rtcp_mux"):
        line = next(ln for ln in shown.splitlines() if ln.strip().startswith(option + " "))
        assert line.split(":", 1)[1].strip() in ("yes", "true", "dtls"), line
    challenge = await ws_exchange(edge.settings, ws_register(extension))
    assert challenge.code == 401
    auth = digest(
        challenge.header("WWW-Authenticate"), extension, password, "REGISTER", "sip:127.0.0.1"
    )
    registered = await ws_exchange(edge.settings, ws_register(extension, auth))
    assert registered.code == 200, registered
    await asyncio.sleep(0.3)  # the logger thread writes after the fact
    assert edge.proc.log_problems()[seen:] == []


# ---------------------------------------------------------------------------- broken input


def _invite(
    peer: Peer, *, body: str | None = None, content_length: str | None = None, extra: str = ""
) -> bytes:
    """An INVITE from the carrier's side to 113, broken where the arguments say."""
    sdp = SDP.format(ip=peer.source) if body is None else body
    message = peer.request(
        "INVITE",
        "113",
        from_user="0912345678",
        body=sdp,
        content_length=content_length,
        extra=extra,
    )
    return message.encode()


# name -> (source, message maker, final answer: None = dropped without an answer). What
# Asterisk 22.10 does, measured; a change here is a behaviour change worth reading about.
FAULTS: dict[str, tuple[str, Callable[[Peer], bytes], int | None]] = {
    "random bytes": (TRUNK, lambda p: random.Random(1).randbytes(300), None),
    "a datagram of zeros": (TRUNK, lambda p: b"\x00" * 1400, None),
    "60 KB of noise": (TRUNK, lambda p: random.Random(2).randbytes(60_000), None),
    "a request line only": (TRUNK, lambda p: b"INVITE sip:113@127.0.0.1 SIP/2.0\r\n\r\n", None),
    "a truncated INVITE": (TRUNK, lambda p: _invite(p)[:150], None),
    "noise from a stranger": (STRANGER, lambda p: random.Random(3).randbytes(500), None),
    "a truncated INVITE from a stranger": (STRANGER, lambda p: _invite(p)[:150], None),
    "Content-Length negative": (TRUNK, lambda p: _invite(p, content_length="-5"), None),
    "Content-Length not a number": (TRUNK, lambda p: _invite(p, content_length="abc"), None),
    "Content-Length overflowing": (TRUNK, lambda p: _invite(p, content_length="9" * 20), None),
    # over UDP pjsip takes the datagram as the message: a wrong length is not fatal
    "Content-Length too large": (TRUNK, lambda p: _invite(p, content_length="5000"), 200),
    "Content-Length too small": (TRUNK, lambda p: _invite(p, content_length="10"), 200),
    "a 60 KB header": (TRUNK, lambda p: _invite(p, extra=f"Subject: {'A' * 60_000}\r\n"), 200),
    "3000 headers": (
        TRUNK,
        lambda p: _invite(p, extra="".join(f"X-H{i}: v\r\n" for i in range(3000))),
        200,
    ),
    "SDP that is not SDP": (TRUNK, lambda p: _invite(p, body="not sdp\r\n\x01\x02\r\n"), 400),
    "SDP with impossible values": (
        TRUNK,
        lambda p: _invite(p, body="v=0\r\nm=audio 99999999 RTP/AVP 0\r\nc=IN IP4 999.1.1.1\r\n"),
        400,
    ),
    "SDP without a common codec": (
        TRUNK,
        lambda p: _invite(
            p, body=SDP.format(ip=p.source).replace("0\r\na=rtpmap:0 PCMU", "96\r\na=rtpmap:96 FOO")
        ),
        488,
    ),
    "bad SDP from a stranger": (STRANGER, lambda p: _invite(p, body="not sdp\r\n"), 401),
}


def _close(peer: Peer, answer: Response | None) -> None:
    """End the transaction like a phone: ACK any final answer, then BYE an accepted call."""
    if answer is None:
        return
    tag = to_tag(answer)
    via_branch = re.search(r"branch=([^;\s]+)", answer.header("Via"))
    if answer.code >= 300:  # the ACK of a failure belongs to the INVITE's transaction
        branch = via_branch.group(1) if via_branch else ""
        peer.send(peer.request("ACK", "113", from_user="0912345678", to_tag=tag, branch=branch))
        return
    peer.send(peer.request("ACK", "113", from_user="0912345678", to_tag=tag))
    peer.send(peer.request("BYE", "113", from_user="0912345678", cseq=2, to_tag=tag))
    peer.final()


def send_faults(edge: Edge) -> dict[str, int | None]:
    """Every fault of FAULTS on its own socket, then a scanner's burst of noise; the answers."""
    seen: dict[str, int | None] = {}
    for name, (source, make, _expected) in FAULTS.items():
        peer = Peer(source, edge.settings.sip_port)
        try:
            peer.send(make(peer))
            answer = peer.final(1)
            seen[name] = None if answer is None else answer.code
            _close(peer, answer)
        finally:
            peer.close()
    noise, rnd = Peer(STRANGER, edge.settings.sip_port), random.Random(4)
    try:
        for _ in range(500):
            noise.send(rnd.randbytes(rnd.randrange(1, 1500)))
    finally:
        noise.close()
    return seen


async def test_broken_sip_never_takes_the_switchboard_down(edge: Edge, tmp_path: Path) -> None:
    seen = await asyncio.to_thread(send_faults, edge)
    # and garbage over the WebSocket transport
    url = f"ws://127.0.0.1:{edge.settings.http_port}/ws"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("sip",)) as ws,
    ):
        await ws.send_str("garbage \x00 not sip")
        await ws.send_bytes(random.Random(5).randbytes(5000))
        await ws.send_str("INVITE sip:113@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS x.invalid\r\n")

    assert seen == {name: expected for name, (_s, _m, expected) in FAULTS.items()}
    assert edge.proc.pid() == edge.pid, "the same Asterisk, still running"
    assert "System uptime" in edge.proc.cli("core show uptime")
    await wait_until(lambda: active_calls(edge) == 0, 10, "the fault calls hung up")

    # and the next citizen's call still reaches its queue
    caller = Caller(
        service="113",
        ani="0987000113",
        hold_ms=1000,
        folder=tmp_path,
        sip_port=edge.settings.sip_port,
    )
    await caller.start()
    try:
        assert await caller.done() == 0
    finally:
        caller.stop()
    queue_log = edge.proc.log_dir / "queue_log"
    entered = re.compile(r"\|emergency-113\|NONE\|ENTERQUEUE\|[^|]*\|0987000113\|")
    await wait_until(lambda: entered.search(queue_log.read_text()), 5, "ENTERQUEUE 113")
