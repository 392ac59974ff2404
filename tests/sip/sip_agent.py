"""A scripted agent phone on raw SIP over UDP, for what pyVoIP cannot do: read the INVITE's
headers (X-IOC-Call), place a call, and send in-dialog REFERs (blind and attended transfers).

It registers as one of the project's agent endpoints with its password (digest, RFC 2617),
rings and answers what Asterisk sends it (SDP with PCMU on a port nobody sends from: the tests
check signalling and Asterisk's channels, not audio), answers NOTIFY/BYE/OPTIONS with 200,
and keeps each dialog's state. One asyncio datagram endpoint; everything is a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from tests.sip.sipp import free_udp_port

SDP = (
    "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


@dataclass
class Message:
    first: str  # request line or status line
    headers: list[tuple[str, str]]
    body: str = ""

    @property
    def is_request(self) -> bool:
        return not self.first.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        return self.first.split(" ", 1)[0] if self.is_request else self.cseq[1]

    @property
    def code(self) -> int:
        return 0 if self.is_request else int(self.first.split(" ", 2)[1])

    @property
    def cseq(self) -> tuple[int, str]:
        number, method = self.header("CSeq").split()
        return int(number), method

    def header(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), default)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse(data: bytes) -> Message:
    text = data.decode(errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Message(lines[0], headers, body)


def _tag(value: str) -> str:
    match = re.search(r";tag=([^;>\s]+)", value)
    return match.group(1) if match else ""


def _uri(value: str) -> str:
    match = re.search(r"<([^>]+)>", value)
    return match.group(1) if match else value.split(";", 1)[0]


def user_of(value: str) -> str:
    match = re.search(r"sips?:([^@;>]+)@", value)
    return match.group(1) if match else ""


@dataclass
class Dialog:
    call_id: str
    local: str  # our From/To header value, with our tag
    remote: str  # theirs, with their tag
    target: str  # where in-dialog requests go (their Contact)
    invite: Message | None = None  # the INVITE that opened it (incoming calls)
    cseq: int = 1
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    notifies: list[Message] = field(default_factory=list)
    acked: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def local_tag(self) -> str:
        return _tag(self.local)

    @property
    def remote_tag(self) -> str:
        return _tag(self.remote)


class SipAgent(asyncio.DatagramProtocol):
    def __init__(self, extension: str, password: str, *, sip_port: int) -> None:
        self.extension, self.password = extension, password
        self.server = ("127.0.0.1", sip_port)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.dialogs: dict[str, Dialog] = {}
        self.invites: asyncio.Queue[Dialog] = asyncio.Queue()
        self._waiting: dict[tuple[str, int], asyncio.Queue[Message]] = {}
        self._media_port = free_udp_port()  # announced in the SDP; nothing is sent from it

    # ------------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive
        msg = parse(data)
        if msg.is_request:
            self._on_request(msg)
            return
        number, _method = msg.cseq
        queue = self._waiting.get((msg.header("Call-ID"), number))
        if queue is not None:
            queue.put_nowait(msg)

    def _send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), self.server)

    @property
    def contact(self) -> str:
        return f"<sip:{self.extension}@127.0.0.1:{self.port}>"

    def _via(self) -> str:
        return f"SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}"

    async def _transaction(
        self, call_id: str, cseq: int, text: str, *, timeout_s: float = 5
    ) -> Message:
        """Send a request, return its final answer (provisional ones skipped)."""
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._waiting[(call_id, cseq)] = queue
        try:
            self._send(text)
            async with asyncio.timeout(timeout_s):
                while True:
                    answer = await queue.get()
                    if answer.code >= 200:
                        return answer
        finally:
            self._waiting.pop((call_id, cseq), None)

    # ------------------------------------------------------------------ registration

    async def start(self) -> SipAgent:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        answer = await self._register(60)
        if answer.code != 200:
            raise RuntimeError(f"REGISTER {self.extension}: {answer.first}")
        return self

    async def stop(self) -> None:
        for dialog in list(self.dialogs.values()):
            if not dialog.ended.is_set() and dialog.acked.is_set():
                with contextlib.suppress(TimeoutError):
                    await self.hangup(dialog)
        with contextlib.suppress(TimeoutError):
            await self._register(0)
        if self.transport is not None:
            self.transport.close()

    async def _register(self, expires: int) -> Message:
        call_id, tag = f"reg-{uuid.uuid4().hex}", uuid.uuid4().hex[:8]
        uri = f"sip:127.0.0.1:{self.server[1]}"
        aor = f"<sip:{self.extension}@127.0.0.1:{self.server[1]}>"
        auth = ""
        answer: Message | None = None
        for cseq in (1, 2):
            text = (
                f"REGISTER {uri} SIP/2.0\r\nVia: {self._via()}\r\nMax-Forwards: 70\r\n"
                f"From: {aor};tag={tag}\r\nTo: {aor}\r\nCall-ID: {call_id}\r\n"
                f"CSeq: {cseq} REGISTER\r\nContact: {self.contact}\r\nExpires: {expires}\r\n"
                f"{auth}Content-Length: 0\r\n\r\n"
            )
            answer = await self._transaction(call_id, cseq, text)
            if answer.code != 401:
                return answer
            auth = self._authorization(answer, "REGISTER", uri)
        assert answer is not None
        return answer

    def _authorization(self, challenge: Message, method: str, uri: str) -> str:
        header = challenge.header("WWW-Authenticate")
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header.removeprefix("Digest ")))
        ha1 = hashlib.md5(
            f"{self.extension}:{fields['realm']}:{self.password}".encode()
        ).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        cnonce, nc = uuid.uuid4().hex[:8], "00000001"
        response = hashlib.md5(
            f"{ha1}:{fields['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode()
        ).hexdigest()
        return (
            f'Authorization: Digest username="{self.extension}",realm="{fields["realm"]}",'
            f'nonce="{fields["nonce"]}",uri="{uri}",response="{response}",'
            f'opaque="{fields.get("opaque", "")}",algorithm=MD5,qop=auth,nc={nc},'
            f'cnonce="{cnonce}"\r\n'
        )

    # ------------------------------------------------------------------ incoming requests

    def _on_request(self, msg: Message) -> None:
        call_id = msg.header("Call-ID")
        dialog = self.dialogs.get(call_id)
        if msg.method == "ACK":
            if dialog is not None:
                dialog.acked.set()
            return
        if msg.method == "INVITE" and dialog is None:
            local = f"{msg.header('To')};tag={uuid.uuid4().hex[:8]}"
            dialog = Dialog(
                call_id=call_id,
                local=local,
                remote=msg.header("From"),
                target=_uri(msg.header("Contact")),
                invite=msg,
            )
            self.dialogs[call_id] = dialog
            self._respond(msg, 100, "Trying", to=msg.header("To"))
            self._respond(msg, 180, "Ringing", to=local)
            self.invites.put_nowait(dialog)
            return
        to = dialog.local if dialog is not None else msg.header("To")
        if msg.method == "INVITE":  # a re-INVITE: keep the media as it is
            self._respond(msg, 200, "OK", to=to, sdp=True)
            return
        if dialog is not None and msg.method == "NOTIFY":
            dialog.notifies.append(msg)
        self._respond(msg, 200, "OK", to=to)
        if dialog is not None and msg.method == "BYE":
            dialog.ended.set()

    def _respond(
        self, request: Message, code: int, reason: str, *, to: str, sdp: bool = False
    ) -> None:
        body = SDP.format(port=self._media_port) if sdp else ""
        vias = "".join(f"Via: {v}\r\n" for v in request.all("Via"))
        kind = "Content-Type: application/sdp\r\n" if body else ""
        contact = f"Contact: {self.contact}\r\n" if request.method in ("INVITE",) else ""
        self._send(
            f"SIP/2.0 {code} {reason}\r\n{vias}From: {request.header('From')}\r\nTo: {to}\r\n"
            f"Call-ID: {request.header('Call-ID')}\r\nCSeq: {request.header('CSeq')}\r\n"
            f"{contact}{kind}Content-Length: {len(body)}\r\n\r\n{body}"
        )

    # ------------------------------------------------------------------ the phone's actions

    async def ringing(self, timeout_s: float = 10) -> Dialog:
        """The next call that rings this phone."""
        async with asyncio.timeout(timeout_s):
            return await self.invites.get()

    async def answer(self, dialog: Dialog, timeout_s: float = 5) -> None:
        assert dialog.invite is not None
        self._respond(dialog.invite, 200, "OK", to=dialog.local, sdp=True)
        async with asyncio.timeout(timeout_s):
            await dialog.acked.wait()

    def _in_dialog(
        self, dialog: Dialog, method: str, extra: str = "", body: str = ""
    ) -> tuple[int, str]:
        dialog.cseq += 1
        kind = "Content-Type: application/sdp\r\n" if body else ""
        return dialog.cseq, (
            f"{method} {dialog.target} SIP/2.0\r\nVia: {self._via()}\r\nMax-Forwards: 70\r\n"
            f"From: {dialog.local}\r\nTo: {dialog.remote}\r\nCall-ID: {dialog.call_id}\r\n"
            f"CSeq: {dialog.cseq} {method}\r\nContact: {self.contact}\r\n{extra}{kind}"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )

    async def refer(self, dialog: Dialog, target: str, *, replaces: Dialog | None = None) -> int:
        """REFER the far end of `dialog` to extension/number `target` (blind), or, with
        `replaces`, to the far end of that other dialog (attended: Refer-To carries Replaces).
        Returns the REFER's final status (202 Accepted when Asterisk takes it)."""
        refer_to = f"sip:{target}@127.0.0.1:{self.server[1]}"
        if replaces is not None:
            value = f"{replaces.call_id};to-tag={replaces.remote_tag};from-tag={replaces.local_tag}"
            refer_to += "?Replaces=" + quote(value, safe="")
        extra = f"Refer-To: <{refer_to}>\r\nReferred-By: <sip:{self.extension}@127.0.0.1>\r\n"
        cseq, text = self._in_dialog(dialog, "REFER", extra)
        return (await self._transaction(dialog.call_id, cseq, text)).code

    async def hangup(self, dialog: Dialog) -> int:
        cseq, text = self._in_dialog(dialog, "BYE")
        answer = await self._transaction(dialog.call_id, cseq, text)
        dialog.ended.set()
        return answer.code

    async def call(self, target: str, timeout_s: float = 15) -> Dialog:
        """Place a call to `target` from this phone (challenged like any agent's INVITE);
        returns the dialog once answered and ACKed."""
        call_id, tag = f"out-{uuid.uuid4().hex}", uuid.uuid4().hex[:8]
        uri = f"sip:{target}@127.0.0.1:{self.server[1]}"
        local = f"<sip:{self.extension}@127.0.0.1>;tag={tag}"
        auth, answer = "", None
        body = SDP.format(port=self._media_port)
        for cseq in (1, 2):
            text = (
                f"INVITE {uri} SIP/2.0\r\nVia: {self._via()}\r\nMax-Forwards: 70\r\n"
                f"From: {local}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
                f"Contact: {self.contact}\r\n{auth}Content-Type: application/sdp\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}"
            )
            answer = await self._transaction(call_id, cseq, text, timeout_s=timeout_s)
            # A failure's ACK (same branch): Asterisk retransmits the answer until it comes.
            if answer.code >= 300:
                self._ack(answer, uri, cseq)
            if answer.code != 401:
                break
            auth = self._authorization(answer, "INVITE", uri)
        assert answer is not None
        if answer.code != 200:
            raise RuntimeError(f"INVITE {target}: {answer.first}")
        dialog = Dialog(
            call_id=call_id,
            local=local,
            remote=answer.header("To"),
            target=_uri(answer.header("Contact")),
            cseq=2,
        )
        dialog.acked.set()
        self.dialogs[call_id] = dialog
        self._ack(answer, dialog.target, 2 if auth else 1, dialog=dialog)
        return dialog

    def _ack(self, answer: Message, uri: str, cseq: int, *, dialog: Dialog | None = None) -> None:
        via = answer.header("Via") if dialog is None else self._via()
        self._send(
            f"ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
            f"From: {answer.header('From')}\r\nTo: {answer.header('To')}\r\n"
            f"Call-ID: {answer.header('Call-ID')}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
        )
