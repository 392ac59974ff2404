"""An agent (call-taker) SIP phone on pyVoIP 1.6.8.

It registers as one of the project's PJSIP agent endpoints (`1001`...), rings and answers what
Asterisk sends it (app_queue, ARI originate, Dial) and records every incoming call with
monotonic and wall-clock timestamps, so end-to-end tests and benchmarks see what a call-taker's
phone sees. It never places calls: pyVoIP 1.6.8's outbound INVITE is unreliable (it re-sends
the authenticated INVITE with the first one's Via branch).

Threads and asyncio
-------------------
pyVoIP runs its own threads: one SIP receive loop (it runs every hook below: INVITE, BYE,
CANCEL, responses), one re-REGISTER timer, one "Phone Call" thread per call and two RTP threads
per answered call. Every public method is thread-safe: one re-entrant lock per phone
serialises pyVoIP's hooks with `answer()`/`hangup()` called from any thread. `answer()` and
`hangup()` never wait on the network (safe in an event loop). `start()` and `stop()` wait for a
SIP round trip (milliseconds on loopback, at most `timeout_s`): from asyncio use `astart()` /
`astop()` or `async with`. `wait_for_call()`/`wait_for_state()` are coroutines, woken from
pyVoIP's threads through `loop.call_soon_threadsafe`. Timestamps use `time.monotonic()`
(CLOCK_MONOTONIC: comparable across processes of one Linux host) and UTC wall time.

pyVoIP 1.6.8's quirks (each measured against Asterisk 22) and how this module handles them:
docs/quirks/pyvoip.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

# pyVoIP.VoIP must be imported before pyVoIP.SIP: the other way round is a circular import
# (SIP -> VoIP.status -> VoIP/__init__ -> VoIP.py -> the half-made SIP) that fails.
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPCall, VoIPPhone

# isort: split
import pyVoIP
from pyVoIP import RTP, SIP
from pyVoIP.util import acquired_lock_and_unblocked_socket

from ioc_core.errors import IocError

logger = logging.getLogger(__name__)

CallPhase = Literal["ringing", "answered", "ended"]
AnswerMode = Literal["auto", "manual"]
EndReason = Literal[
    "remote-hangup",  # BYE from Asterisk (caller or ARI hung up, queue member removed...)
    "local-hangup",  # hangup() or stop() on an answered call: we sent BYE
    "cancelled",  # CANCEL while ringing (caller gave up, ring timeout, another member answered)
    "rejected",  # hangup()/stop() while ringing (486/480), or the RTP port could not be bound
    "phone-failed",  # pyVoIP gave up re-registering and stopped the phone
]
_PHASES: tuple[CallPhase, ...] = ("ringing", "answered", "ended")
_CODEC_ORDER = {RTP.PayloadType.PCMU: 0, RTP.PayloadType.PCMA: 1, RTP.PayloadType.EVENT: 2}
_AUDIO_CODECS = (RTP.PayloadType.PCMU, RTP.PayloadType.PCMA)
_REPLY_WAIT_S = 1.0

# RTP ports handed to calls of every phone in this process: pyVoIP only tracks its own phone's.
_RTP_PORTS_IN_USE: set[int] = set()
_RTP_PORTS_LOCK = threading.Lock()


class PhoneError(IocError):
    status = 500
    error_id = "softphone-error"


class RegistrationFailed(PhoneError):
    """`start()` could not register; the message says why and with which server."""

    error_id = "softphone-registration-failed"


class RegistrationRefused(RegistrationFailed):
    """The server answered, and refused the credentials."""

    error_id = "softphone-registration-refused"


class RegistrationTimeout(RegistrationFailed):
    """Nothing answered the REGISTER in time (server down, wrong port, wrong address)."""

    error_id = "softphone-registration-timeout"


class NoSuchCall(PhoneError):
    """`answer()`/`hangup()` found no call in a state that allows it."""

    status = 409
    error_id = "softphone-no-call"


@dataclass(kw_only=True)
class PhoneCall:
    """One incoming call as the phone saw it. The phone fills it in from its threads."""

    call_id: str  # the SIP Call-ID (Asterisk: CHANNEL(pjsip,call-id))
    from_user: str  # user part of From: the caller id number Asterisk presents
    caller_name: str  # display name of From ("" when none)
    to_user: str
    ringing_at: float  # time.monotonic() when the INVITE reached the phone
    ringing_wall: datetime
    answered_at: float | None = None  # when the 200 OK left
    answered_wall: datetime | None = None
    ended_at: float | None = None
    ended_wall: datetime | None = None
    end_reason: EndReason | None = None
    codec: str | None = None  # what the phone sends: "PCMU" or "PCMA"
    local_rtp_port: int | None = None
    remote_rtp: tuple[str, int] | None = None
    reinvites: int = 0

    @property
    def state(self) -> CallPhase:
        if self.ended_at is not None:
            return "ended"
        return "answered" if self.answered_at is not None else "ringing"

    def reached(self, phase: CallPhase) -> bool:
        """Whether the call went through `phase` (an ended call may never have been answered)."""
        if phase == "ringing":
            return True
        if phase == "answered":
            return self.answered_at is not None
        return self.ended_at is not None


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[PhoneCall]
    state: CallPhase
    call_id: str | None  # None: the next call (not handed out before) to reach `state`


def _now() -> tuple[float, datetime]:
    return time.monotonic(), datetime.now(UTC)


def _udp_port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def _display_name(raw_from: str) -> str:
    # pyVoIP leaves a quote behind ('"Test" <sip:..>' -> 'Test" '): parse the raw header.
    name = raw_from.split("<", 1)[0].strip() if "<" in raw_from else ""
    return name.strip('"').strip()


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # BlockingIOError once empty; EBADF once closed
        sock.setblocking(False)
        while sock.recv(8192):
            pass


def _offered_codecs(media: dict[str, Any]) -> dict[int, RTP.PayloadType]:
    """Payload number -> codec of an SDP m= line, keeping what pyVoIP can handle (PCMU, PCMA,
    telephone-event), PCMU first: RTPClient sends with the first codec of the dict."""
    codecs: dict[int, RTP.PayloadType] = {}
    for payload in media.get("methods", []):
        rtpmap = media.get("attributes", {}).get(payload, {}).get("rtpmap", {})
        try:  # the same look-up as VoIPCall: static number first, then the rtpmap name
            codec = RTP.PayloadType(int(payload))
        except ValueError:
            try:
                codec = RTP.PayloadType(str(rtpmap.get("name", "")))
            except ValueError:
                continue
        if codec in pyVoIP.RTPCompatibleCodecs:
            codecs[int(payload)] = codec
    return dict(sorted(codecs.items(), key=lambda item: _CODEC_ORDER.get(item[1], 9)))


def _audio_codec(codecs: dict[int, RTP.PayloadType]) -> RTP.PayloadType | None:
    return next((c for c in codecs.values() if c in _AUDIO_CODECS), None)


def _offers_g711(request: SIP.SIPMessage) -> bool:
    """pyVoIP can only send PCMU/PCMA; with neither its RTP client has no codec and crashes."""
    body: dict[str, Any] = request.body
    if not body.get("c"):
        return False
    audio = [media for media in body.get("m", []) if media.get("type") == "audio"]
    return any(_audio_codec(_offered_codecs(media)) is not None for media in audio)


def _use_codec(client: RTP.RTPClient, codecs: dict[int, RTP.PayloadType]) -> None:
    """Make an RTP client send with the first audio codec of `codecs` (also mid-call)."""
    codec = _audio_codec(codecs)
    if codec is None:
        return
    client.assoc = codecs
    client.preference = codec
    # encode_packet() encodes mu-law for PCMA too: pick the encoder ourselves.
    encoder = client.encode_pcma if codec == RTP.PayloadType.PCMA else client.encode_pcmu
    client.encode_packet = encoder  # type: ignore[method-assign,assignment]


class _SipClient(SIP.SIPClient):
    """pyVoIP's SIP client with an immediate receive loop, a real port and its errors kept."""

    last_register_error: BaseException | None = None
    receiver: threading.Thread | None = None
    on_ack: Callable[[str], None] | None = None  # SIPClient drops ACKs before any callback
    first_registration = True  # until AgentPhone.start() has seen it succeed

    def start(self) -> None:
        # Same steps as SIPClient.start(), but: the port the kernel picked when asked for 0
        # (pyVoIP would advertise port 0), and the receive loop at once instead of 1 s later.
        if self.NSD:
            raise RuntimeError("Attempted to start already started SIPClient")
        self.NSD = True
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((self.myIP, self.myPort))
        self.myPort = self.s.getsockname()[1]
        self.out = self.s
        self.register()
        self.receiver = threading.Thread(
            target=self.recv_loop, name=f"pyVoIP SIP receive {self.username}", daemon=True
        )
        self.receiver.start()

    def recv_loop(self) -> None:
        # pyVoIP polls its non-blocking socket and sleeps 10 ms whenever it is empty: up to
        # 10 ms late on every INVITE. Sleep in select() until a datagram comes instead.
        while self.NSD:
            try:
                readable, _, _ = select.select([self.s], [], [], 0.1)
            except (OSError, ValueError):  # pyVoIP's own stop() closed the socket
                return
            if not readable:
                continue
            try:
                with acquired_lock_and_unblocked_socket(self.recvLock, self.s):
                    self.recv()
            except BlockingIOError:  # a REGISTER exchange (holding the lock) took it first
                continue
            except OSError:
                if self.NSD:
                    raise
                return

    def parse_message(self, message: SIP.SIPMessage) -> None:
        if message.type == SIP.SIPMessageType.MESSAGE and message.method == "ACK" and self.on_ack:
            self.on_ack(message.headers["Call-ID"])
        super().parse_message(message)

    def _SIPClient__register(self) -> bool:
        # SIPClient.register() swallows every exception of the private __register(); keep the
        # last one so start() can say "wrong password" or "no answer" instead of waiting.
        try:
            registered: bool = super()._SIPClient__register()  # type: ignore[misc]
        except BaseException as exc:
            self.last_register_error = exc
            raise
        return registered

    def _SIPClient__start_register_timer(self, delay: int | None = None) -> None:
        # After a failed first REGISTER pyVoIP retries at once in a timer thread, behind
        # start()'s back (and closing the socket under it is unsafe): start() reports instead.
        if delay == 0 and self.first_registration:
            return
        super()._SIPClient__start_register_timer(delay)  # type: ignore[misc]

    def bye(self, request: SIP.SIPMessage) -> None:
        # gen_bye() copies the Via of the far end's INVITE (its address and branch); a request
        # must carry our own Via with a fresh branch (RFC 3261 8.1.1.7).
        head, _, rest = self.gen_bye(request).partition("\r\n")
        lines = [line for line in rest.split("\r\n") if not line.startswith("Via:")]
        via = f"Via: SIP/2.0/UDP {self.myIP}:{self.myPort};branch={self.gen_branch()};rport"
        message = "\r\n".join([head, via, *lines])
        self.out.sendto(message.encode("utf8"), (self.server, self.port))


class _Call(VoIPCall):
    """pyVoIP's incoming call, reporting every change to its AgentPhone."""

    def __init__(
        self, phone: _Phone, request: SIP.SIPMessage, session_id: int, my_ip: str, sendmode: str
    ) -> None:
        self.agent = phone.agent  # before super().__init__: it creates the RTP clients
        self.owner = phone
        super().__init__(phone, CallState.RINGING, request, session_id, my_ip, sendmode=sendmode)

    def create_rtp_clients(
        self,
        codecs: dict[int, RTP.PayloadType],
        ip: str,
        port: int,
        request: SIP.SIPMessage,
        baseport: int,
    ) -> None:
        # VoIPCall keeps the offer's order; RTPClient sends with the first codec: put PCMU first.
        ordered = dict(sorted(codecs.items(), key=lambda item: _CODEC_ORDER.get(item[1], 9)))
        super().create_rtp_clients(ordered, ip, port, request, baseport)
        for client in self.RTPClients:
            _use_codec(client, ordered)

    def answer(self) -> None:
        super().answer()
        self.agent._on_answered(self)

    def hangup(self) -> None:
        super().hangup()
        self.agent._on_ended(self, "local-hangup")

    def bye(self) -> None:
        super().bye()
        if self.state != CallState.ENDED:  # a BYE before the answer: pyVoIP leaves it ringing
            self.state = CallState.ENDED
            self.owner.calls.pop(self.call_id, None)
        self.agent._on_ended(self, "remote-hangup")

    def renegotiate(self, request: SIP.SIPMessage) -> None:
        # pyVoIP's renegotiate() starts the RTP clients again: the old socket goes (garbage
        # collected) but its threads stay, so each re-INVITE adds a second transmitter (the
        # packet rate doubles); it also answers with every codec it has, not a subset of the
        # offer, and keeps sending the old codec. Answer from the offer, on the same ports.
        connections = request.body.get("c", [])
        for offer in request.body.get("m", []):
            if offer["type"] != "audio":
                continue
            codecs = _offered_codecs(offer)
            if _audio_codec(codecs) is None:
                self.owner.respond(request, 488, "Not Acceptable Here")
                return
            for index, client in zip(range(len(connections)), self.RTPClients, strict=False):
                client.outIP = connections[index]["address"]
                client.outPort = offer["port"] + index
                _use_codec(client, codecs)
        # An offerless re-INVITE keeps the current codecs: our answer carries the offer.
        media = {client.inPort: client.assoc for client in self.RTPClients}
        message = self.sip.gen_answer(request, self.session_id, media, self.sendmode)
        self.sip.out.sendto(message.encode("utf8"), (self.phone.server, self.phone.port))
        self.agent._on_reinvite(self)


class _Phone(VoIPPhone):
    """pyVoIP's phone with our SIP client, calls, RTP ports and CANCEL handling."""

    def __init__(
        self,
        *,
        agent: AgentPhone,
        server: str,
        port: int,
        username: str,
        password: str,
        my_ip: str,
        sip_port: int,
        rtp_low: int,
        rtp_high: int,
        register_timeout_s: float,
    ) -> None:
        self.agent = agent
        super().__init__(
            server,
            port,
            username,
            password,
            myIP=my_ip,
            callCallback=agent._hold_call_thread,
            sipPort=sip_port,
            rtpPortLow=rtp_low,
            rtpPortHigh=rtp_high,
        )
        # Constructing a SIPClient opens nothing: replacing the one VoIPPhone made is free.
        self.client = _SipClient(
            server,
            port,
            username,
            password,
            phone=self,
            myIP=my_ip,
            myPort=sip_port,
            callCallback=self.callback,
            fatalCallback=self.fatal,
        )
        self.sip = self.client
        self.client.on_ack = agent._on_reply
        # pyVoIP annotates it int; it only reaches select(), which takes a float.
        self.client.register_timeout = register_timeout_s  # type: ignore[assignment]

    def callback(self, request: SIP.SIPMessage) -> None:
        with self.agent._lock:
            if request.type == SIP.SIPMessageType.MESSAGE and request.method == "CANCEL":
                self._cancel(request)
                return
            cseq = request.headers.get("CSeq")
            is_response = request.type == SIP.SIPMessageType.RESPONSE
            if is_response and isinstance(cseq, dict) and cseq.get("method") == "BYE":
                self.agent._on_reply(request.headers["Call-ID"])
                return
            super().callback(request)

    def _callback_MSG_Invite(self, request: SIP.SIPMessage) -> None:
        received = _now()
        call_id = request.headers["Call-ID"]
        with self.agent._lock:
            if call_id in self.calls:  # a retransmission or a re-INVITE (_Call.renegotiate)
                super()._callback_MSG_Invite(request)
                return
            if self.agent._has_ended(call_id):
                logger.info("late INVITE for finished call %s ignored", call_id)
                return
            if not _offers_g711(request):
                logger.warning("call %s offers neither PCMU nor PCMA: 488", call_id)
                self.respond(request, 488, "Not Acceptable Here")
                return
            try:
                super()._callback_MSG_Invite(request)  # 180 Ringing, _create_Call, callback
            except PhoneError:  # no free RTP port (logged)
                self.respond(request, 503, "Service Unavailable")
                return
            call = self.calls.get(call_id)
            if isinstance(call, _Call):
                self.agent._on_ringing(call, received)

    def _create_Call(self, request: SIP.SIPMessage, sess_id: int) -> None:
        call_id = request.headers["Call-ID"]
        self.calls[call_id] = _Call(self, request, sess_id, self.myIP, sendmode=self.recvmode)

    def request_port(self, blocking: bool = True) -> int:
        return self.agent._reserve_rtp_port()

    def fatal(self) -> None:
        # pyVoIP gave up re-registering: it stops the phone; close our records first.
        logger.error("%s: registration lost, pyVoIP stopped the phone", self.username)
        self.agent._on_phone_failed()
        super().fatal()

    def _cancel(self, request: SIP.SIPMessage) -> None:
        # pyVoIP answers the CANCEL itself (200, right after this hook) but never ends the
        # INVITE: answer it 487 so Asterisk's transaction completes now, not after 32 s.
        call = self.calls.get(request.headers["Call-ID"])
        if not isinstance(call, _Call) or call.state != CallState.RINGING:
            return  # already answered or unknown: the 200 to the CANCEL is all it gets
        self.end_unanswered(call, 487, "Request Terminated", "cancelled")

    def end_unanswered(self, call: _Call, code: int, reason: str, why: EndReason) -> None:
        self.respond(call.request, code, reason)
        call.state = CallState.ENDED
        self.calls.pop(call.call_id, None)
        self.agent._on_ended(call, why)

    def respond(self, request: SIP.SIPMessage, code: int, reason: str) -> None:
        """A final response without body to `request` (an INVITE), in its early dialog."""
        headers = request.headers
        call_id = headers["Call-ID"]
        to_tag = self.sip.tagLibrary.get(call_id) or self.sip.gen_tag()  # the 180's tag
        from_tag = f";tag={headers['From']['tag']}" if headers["From"]["tag"] else ""
        message = (
            f"SIP/2.0 {code} {reason}\r\n"
            + self.sip._gen_response_via_header(request)
            + f"From: {headers['From']['raw']}{from_tag}\r\n"
            + f"To: {headers['To']['raw']};tag={to_tag}\r\n"
            + f"Call-ID: {call_id}\r\n"
            + f"CSeq: {headers['CSeq']['check']} {headers['CSeq']['method']}\r\n"
            + f"User-Agent: pyVoIP {pyVoIP.__version__}\r\n"
            + "Content-Length: 0\r\n\r\n"
        )
        self.sip.out.sendto(message.encode("utf8"), (self.server, self.port))


class AgentPhone:
    """A call-taker's SIP phone: registers, rings, answers (auto or manual), records calls.

    `answer="auto"` answers `answer_delay_s` after the INVITE arrived; `"manual"` rings until
    `answer()` (or until Asterisk cancels). `rtp_range` must not overlap Asterisk's rtp.conf
    range when both run on one host; the phone also skips ports someone else holds.
    """

    def __init__(
        self,
        *,
        extension: str,
        password: str,
        server: str = "127.0.0.1",
        server_port: int = 5060,
        local_ip: str = "127.0.0.1",
        sip_port: int = 0,
        rtp_range: tuple[int, int],
        answer: AnswerMode = "auto",
        answer_delay_s: float = 0.0,
    ) -> None:
        low, high = rtp_range
        if not 0 < low <= high < 65536:
            raise ValueError(f"rtp_range {rtp_range} is not a range of UDP ports")
        if answer not in ("auto", "manual"):
            raise ValueError(f"answer must be 'auto' or 'manual', not {answer!r}")
        if answer_delay_s < 0:
            raise ValueError("answer_delay_s must not be negative")
        self.extension = extension
        self.server = server
        self.server_port = server_port
        self.local_ip = local_ip
        self.rtp_range = (low, high)
        self.answer_mode: AnswerMode = answer
        self.answer_delay_s = answer_delay_s
        self.register_s: float | None = None  # how long the last start() took to register
        self._password = password
        self._sip_port = sip_port
        self._lock = threading.RLock()  # pyVoIP's hooks and our API, every record below
        self._lifecycle = threading.Lock()  # start() and stop() one at a time
        self._phone: _Phone | None = None
        self._closed = True
        self._records: list[PhoneCall] = []
        self._by_id: dict[str, PhoneCall] = {}
        self._active: dict[str, _Call] = {}
        self._ended_events: dict[str, threading.Event] = {}
        self._replies: dict[str, threading.Event] = {}
        self._handed: dict[CallPhase, set[str]] = {phase: set() for phase in _PHASES}
        self._waiters: list[_Waiter] = []
        self._ports: set[int] = set()
        self._next_port = low

    # ------------------------------------------------------------------ lifecycle

    @property
    def sip_port(self) -> int:
        """The local SIP port: the one the kernel picked once started with `sip_port=0`."""
        phone = self._phone
        return int(phone.client.myPort) if phone is not None else self._sip_port

    @property
    def registered(self) -> bool:
        phone = self._phone
        return phone is not None and phone.get_status() == PhoneStatus.REGISTERED

    def start(self, *, timeout_s: float = 5.0) -> None:
        """Register; return once registered, or raise RegistrationFailed (about `timeout_s`
        when nothing answers)."""
        with self._lifecycle:
            if self._phone is not None:
                return
            started = time.monotonic()
            phone = _Phone(
                agent=self,
                server=self.server,
                port=self.server_port,
                username=self.extension,
                password=self._password,
                my_ip=self.local_ip,
                sip_port=self._sip_port,
                rtp_low=self.rtp_range[0],
                rtp_high=self.rtp_range[1],
                register_timeout_s=timeout_s,
            )
            self._closed = False
            try:
                phone.start()  # binds, one REGISTER exchange (synchronous), the receive loop
            except OSError as exc:
                self._closed = True
                raise PhoneError(
                    f"{self.extension}: cannot use SIP port {self.local_ip}:{self._sip_port}: {exc}"
                ) from exc
            self._phone = phone
            if phone.get_status() != PhoneStatus.REGISTERED:
                error = phone.client.last_register_error
                self._abort_start()
                where = f"{self.extension} could not register with {self.server}:{self.server_port}"
                if isinstance(error, SIP.InvalidAccountInfoError):
                    raise RegistrationRefused(
                        f"{where}: the server refused the credentials", details=self._details()
                    )
                if isinstance(error, TimeoutError):
                    raise RegistrationTimeout(
                        f"{where}: no answer within {timeout_s:g}s (is Asterisk running there?)",
                        details=self._details(),
                    )
                raise RegistrationFailed(f"{where}: {error!r}", details=self._details())
            phone.client.first_registration = False  # from now on pyVoIP may retry by itself
            self.register_s = time.monotonic() - started
            logger.info(
                "%s registered from %s:%d in %.3fs",
                self.extension,
                self.local_ip,
                self.sip_port,
                self.register_s,
            )

    def stop(self, *, timeout_s: float = 5.0) -> bool:
        """Hang up (or refuse) every call, deregister, close sockets and threads.

        Returns whether the server confirmed the deregistration. Stopping twice is fine."""
        with self._lifecycle:
            phone = self._phone
            if phone is None:
                return True
            with self._lock:
                replies = []
                for call in list(self._active.values()):
                    replies.append(self._expect_reply(call.call_id))
                    if call.state == CallState.ANSWERED:
                        call.hangup()
                    else:
                        phone.end_unanswered(call, 480, "Temporarily Unavailable", "rejected")
            # The 200 to our BYE, the ACK to our 480: deregistration would take them for its
            # own answer (it reads the first datagram that comes).
            wait_until = time.monotonic() + min(_REPLY_WAIT_S, timeout_s)
            for reply in replies:
                reply.wait(max(0.0, wait_until - time.monotonic()))
            confirmed = self._shutdown(phone, deregister=True, timeout_s=timeout_s)
            self._after_shutdown()
            return confirmed

    async def astart(self, *, timeout_s: float = 5.0) -> None:
        await asyncio.to_thread(self.start, timeout_s=timeout_s)

    async def astop(self, *, timeout_s: float = 5.0) -> bool:
        return await asyncio.to_thread(self.stop, timeout_s=timeout_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    def _details(self) -> dict[str, Any]:
        return {"extension": self.extension, "server": f"{self.server}:{self.server_port}"}

    def _abort_start(self) -> None:
        assert self._phone is not None
        self._shutdown(self._phone, deregister=False, timeout_s=0.0)
        self._after_shutdown()

    def _shutdown(self, phone: _Phone, *, deregister: bool, timeout_s: float) -> bool:
        """SIPClient.stop() without its blind spots: it closes the socket under the receive loop
        and under a REGISTER in flight in a timer thread, and never reports the outcome."""
        sip = phone.client
        status = phone.get_status()
        was_registered = status in (PhoneStatus.REGISTERED, PhoneStatus.REGISTERING)
        sip.NSD = False  # the receive loop and the retry timers stop at their next turn
        if sip.registerThread is not None:
            sip.registerThread.cancel()
        if sip.receiver is not None:  # closing its socket under it raises EBADF in the loop
            sip.receiver.join(timeout=1.0)
        if sip.recvLock.acquire(timeout=sip.register_timeout + 1):
            sip.recvLock.release()
        _drain(sip.s)  # stragglers (retransmissions, late ACKs) would pass for the answer
        sip.register_timeout = timeout_s  # type: ignore[assignment]  # each wait of deregister()
        for timer in phone.threads:  # "Phone Call" timers not yet fired (1 s after the INVITE)
            timer.cancel()
        # A phone pyVoIP stopped itself (FAILED) has deregistered blindly, if at all: unknown.
        confirmed = not (deregister and (was_registered or status == PhoneStatus.FAILED))
        for _attempt in range(2 if deregister and was_registered else 0):
            try:
                confirmed = bool(sip.deregister())
            except OSError as exc:  # TimeoutError included: the server is gone
                logger.warning("%s: deregistration failed: %s", self.extension, exc)
            if confirmed:
                break
        sip._close_sockets()
        phone.NSD = False
        phone._status = PhoneStatus.INACTIVE
        return confirmed

    def _after_shutdown(self) -> None:
        with self._lock:
            self._phone = None
            self._closed = True
            for call in list(self._active.values()):  # only after a failure: close the books
                if call.state == CallState.ANSWERED:
                    for client in call.RTPClients:
                        client.stop()
                self._on_ended(call, "phone-failed")
            for event in self._ended_events.values():
                event.set()
            self._release_ports(set(self._ports))

    # ------------------------------------------------------------------ calls

    @property
    def calls(self) -> list[PhoneCall]:
        """Every incoming call since the phone was made, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def current_call(self) -> PhoneCall | None:
        """The oldest call that is still ringing or connected."""
        with self._lock:
            for call in self._active.values():
                return self._by_id[call.call_id]
        return None

    def answer(self, call: PhoneCall | None = None) -> PhoneCall:
        """Answer `call` (default: the oldest ringing call). Thread-safe, does not block."""
        with self._lock:
            target = self._pick(call, CallState.RINGING)
            self._answer(target)
            return self._by_id[target.call_id]

    def hangup(self, call: PhoneCall | None = None) -> PhoneCall:
        """End `call` (default: the oldest active one): BYE if answered, 486 if ringing."""
        with self._lock:
            target = self._pick(call, None)
            self._expect_reply(target.call_id)
            if target.state == CallState.ANSWERED:
                target.hangup()
            else:
                target.owner.end_unanswered(target, 486, "Busy Here", "rejected")
            return self._by_id[target.call_id]

    async def wait_for_call(
        self, *, state: CallPhase = "ringing", timeout_s: float = 10.0
    ) -> PhoneCall:
        """The next call to reach `state` that no earlier wait_for_call(state=...) returned.

        Calls that reached it before this wait count: `originate; await wait_for_call()` never
        misses a fast phone."""
        return await self._wait(state, None, timeout_s)

    async def wait_for_state(
        self, call: PhoneCall, state: CallPhase, *, timeout_s: float = 10.0
    ) -> PhoneCall:
        """`call` once it has reached `state` (at once when it already has)."""
        return await self._wait(state, call.call_id, timeout_s)

    async def _wait(self, state: CallPhase, call_id: str | None, timeout_s: float) -> PhoneCall:
        if state not in _PHASES:
            raise ValueError(f"state must be one of {_PHASES}, not {state!r}")
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future(), state, call_id)
        with self._lock:
            self._waiters.append(waiter)
            self._notify()
        try:
            return await asyncio.wait_for(waiter.future, timeout_s)
        except TimeoutError:
            which = f"call {call_id}" if call_id else "no call"
            raise TimeoutError(
                f"{self.extension}: {which} reached {state} within {timeout_s:g}s"
            ) from None
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _pick(self, call: PhoneCall | None, state: CallState | None) -> _Call:
        if call is not None:
            found = self._active.get(call.call_id)
            candidates = [found] if found is not None else []
        else:
            candidates = list(self._active.values())
        for candidate in candidates:
            if state is None or candidate.state == state:
                return candidate
        wanted = "ringing" if state == CallState.RINGING else "active"
        which = f"call {call.call_id} is not" if call is not None else "no call is"
        raise NoSuchCall(f"{self.extension}: {which} {wanted}", details=self._details())

    def _answer(self, call: _Call) -> None:
        try:
            call.answer()
        except OSError as exc:  # the RTP port was taken between the INVITE and now
            logger.error("%s: cannot answer %s: %s", self.extension, call.call_id, exc)
            for client in call.RTPClients:
                if hasattr(client, "sin"):
                    client.stop()
            call.owner.end_unanswered(call, 500, "Server Internal Error", "rejected")

    def _auto_answer(self, call_id: str) -> None:
        with self._lock:
            call = self._active.get(call_id)
            if call is not None and call.state == CallState.RINGING:
                self._answer(call)

    # ------------------------------------------------------------------ pyVoIP's hooks
    # All run in pyVoIP's threads (the SIP receive loop unless noted) under self._lock.

    def _on_ringing(self, call: _Call, received: tuple[float, datetime]) -> None:
        headers = call.request.headers
        record = PhoneCall(
            call_id=call.call_id,
            from_user=headers["From"]["number"] or "",
            caller_name=_display_name(headers["From"]["raw"]),
            to_user=headers["To"]["number"] or "",
            ringing_at=received[0],
            ringing_wall=received[1],
        )
        self._records.append(record)
        self._by_id[call.call_id] = record
        self._active[call.call_id] = call
        self._ended_events[call.call_id] = threading.Event()
        logger.info("%s ringing: %s from %s", self.extension, call.call_id, record.from_user)
        self._notify()
        if self.answer_mode != "auto":
            return
        if self.answer_delay_s == 0:
            self._answer(call)  # 180 is out already; the 200 follows straight away
        else:
            timer = threading.Timer(self.answer_delay_s, self._auto_answer, args=(call.call_id,))
            timer.name = f"answer {call.call_id}"
            timer.daemon = True
            timer.start()

    def _on_answered(self, call: _Call) -> None:
        with self._lock:
            record = self._by_id.get(call.call_id)
            if record is None:
                return
            record.answered_at, record.answered_wall = _now()
            self._note_media(call, record)
            self._notify()

    def _on_reinvite(self, call: _Call) -> None:
        with self._lock:
            if (record := self._by_id.get(call.call_id)) is not None:
                record.reinvites += 1
                self._note_media(call, record)

    @staticmethod
    def _note_media(call: _Call, record: PhoneCall) -> None:
        if call.RTPClients:
            client = call.RTPClients[0]
            record.codec = str(getattr(client, "preference", "")) or None
            record.local_rtp_port = int(client.inPort)
            record.remote_rtp = (str(client.outIP), int(client.outPort))

    def _on_ended(self, call: _Call, why: EndReason) -> None:
        with self._lock:
            record = self._by_id.get(call.call_id)
            if record is None or record.ended_at is not None:
                return
            record.ended_at, record.ended_wall = _now()
            record.end_reason = why
            self._active.pop(call.call_id, None)
            self._release_ports({int(client.inPort) for client in call.RTPClients})
            logger.info("%s call %s ended: %s", self.extension, call.call_id, why)
            self._ended_events[call.call_id].set()
            self._notify()

    def _expect_reply(self, call_id: str) -> threading.Event:
        """An event set when the far end answers our BYE or ACKs our final response."""
        with self._lock:
            self._replies[call_id] = threading.Event()
            return self._replies[call_id]

    def _on_reply(self, call_id: str) -> None:
        # Receive loop: a response to our BYE (callback) or an ACK (_SipClient.parse_message).
        with self._lock:
            if (event := self._replies.pop(call_id, None)) is not None:
                event.set()

    def _on_phone_failed(self) -> None:
        # Runs in pyVoIP's register timer thread. No BYE: the server is unreachable anyway.
        with self._lock:
            for call in list(self._active.values()):
                if call.state == CallState.ANSWERED:
                    for client in call.RTPClients:
                        client.stop()
                call.state = CallState.ENDED
                call.owner.calls.pop(call.call_id, None)
                self._on_ended(call, "phone-failed")

    def _has_ended(self, call_id: str) -> bool:
        record = self._by_id.get(call_id)
        return record is not None and record.ended_at is not None

    def _hold_call_thread(self, call: VoIPCall) -> None:
        # pyVoIP's per-call callback (a "Phone Call" timer thread, 1 s after the INVITE). It
        # must live as long as the call: once it returns, pyVoIP may forget the call.
        event = self._ended_events.get(call.call_id)
        while event is not None and not event.wait(0.5) and not self._closed:
            pass

    def _reserve_rtp_port(self) -> int:
        low, high = self.rtp_range
        size = high - low + 1
        with _RTP_PORTS_LOCK:
            for step in range(size):
                # Round-robin from the last port used: a just-closed port may still receive the
                # previous call's stragglers.
                port = low + (self._next_port - low + step) % size
                if port in _RTP_PORTS_IN_USE or not _udp_port_free(self.local_ip, port):
                    continue
                _RTP_PORTS_IN_USE.add(port)
                self._ports.add(port)
                self._next_port = low + (port - low + 1) % size
                return port
        logger.error("%s: no free RTP port in %d-%d", self.extension, low, high)
        raise PhoneError(f"{self.extension}: no free RTP port in {low}-{high}")

    def _release_ports(self, ports: set[int]) -> None:
        mine = ports & self._ports
        with _RTP_PORTS_LOCK:
            _RTP_PORTS_IN_USE.difference_update(mine)
        self._ports -= mine

    # ------------------------------------------------------------------ waiters

    def _notify(self) -> None:
        """Hand records to waiting coroutines (called with self._lock held, any thread)."""
        for waiter in list(self._waiters):
            record = self._match(waiter)
            if record is None:
                continue
            self._waiters.remove(waiter)
            try:
                waiter.loop.call_soon_threadsafe(self._deliver, waiter, record)
            except RuntimeError:  # the waiter's loop is closed: nobody is waiting any more
                self._handed[waiter.state].discard(record.call_id)

    def _match(self, waiter: _Waiter) -> PhoneCall | None:
        if waiter.future.done():
            return None
        if waiter.call_id is not None:
            record = self._by_id.get(waiter.call_id)
            return record if record is not None and record.reached(waiter.state) else None
        handed = self._handed[waiter.state]
        for record in self._records:
            if record.call_id not in handed and record.reached(waiter.state):
                handed.add(record.call_id)
                return record
        return None

    def _deliver(self, waiter: _Waiter, record: PhoneCall) -> None:
        # In the waiter's event loop. A waiter that timed out meanwhile gives the call back.
        if not waiter.future.done():
            waiter.future.set_result(record)
            return
        if waiter.call_id is None:
            with self._lock:
                self._handed[waiter.state].discard(record.call_id)
                self._notify()


def pyvoip_threads() -> Iterator[threading.Thread]:
    """pyVoIP's threads still alive in this process (tests check that stop() ends them)."""
    prefixes = ("pyVoIP", "SIP ", "RTP ", "Phone Call", "answer ")
    return (t for t in threading.enumerate() if t.name.startswith(prefixes))
