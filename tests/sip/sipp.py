"""SIPp callers for the switchboard tests and benchmark: one scenario builder, a foreground
call, a background call, and the pcaps callers play (keys, speech).

Callers come from the carrier's address (127.0.0.1 is the default trunk IP) with a caller
number, a hold time, and either side hanging up. `bench/sipp.py` runs the same scenario at load
(many calls from an injection file) and reads SIPp's statistics."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

SCENARIOS = Path(__file__).parent / "scenarios"  # the tests' hand-written scenarios
PCAPS = Path("/usr/share/sip-tester")  # Debian's sip-tester: RFC 2833 digits, a G.711 sample

Codec = Literal["PCMU", "PCMA"]
_PAYLOAD = {"PCMU": 0, "PCMA": 8}

_HEAD = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{ani}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{peer}
      Call-ID: [call_id]
      Contact: <sip:{ani}@[local_ip]:[local_port]>
      Max-Forwards: 70"""


def caller_scenario(
    *,
    hold_ms: int,
    ani: str = "[field0]",
    codec: Codec = "PCMU",
    plays: Sequence[tuple[int, str]] = (),
    stream: Path | None = None,
    loops: int = -1,
    hang_up: bool = True,
) -> str:
    """A caller: INVITE as `ani` (default `[field0]`: the next line of SIPp's `-inf` file),
    wait for the answer (response time 1 = INVITE -> 200), ACK, stay `hold_ms`, then hang up —
    unless Asterisk hangs up first (an agent or the switchboard ended the call), which is
    accepted too. `hang_up=False`: the switchboard must end the call within `hold_ms`, or the
    scenario fails.

    Audio, either or neither:
    - `plays`: (pause ms, pcap) in turn, replayed as recorded (`dtmf_pcaps` keys,
      `speech_pcap` speech, Debian's G.711 sample); the SDP offers `codec` on a per-call port.
    - `stream`: raw mu-law sent `loops` times (-1: until the end) from the answer on, as
      phones do: Asterisk's Answer() waits up to 500 ms for the caller's first voice frame
      before the dialplan goes on (a silent SIPp caller reached the agents 500 ms late). The
      SDP names the port SIPp's rtp_stream really sends from (`[rtpstream_audio_port]`): with
      `[auto_media_port]` it sent from another one, and Asterisk's strict RTP took ~100 ms (its
      probation) to accept that source, which delayed Answer().
    """
    head = _HEAD.format(ani=ani, peer="")
    dialog = _HEAD.format(ani=ani, peer="[peer_tag_param]")
    port = "[rtpstream_audio_port]" if stream is not None else "[auto_media_port]"
    payload = 0 if stream is not None else _PAYLOAD[codec]
    rtpmap = f"a=rtpmap:{payload} {'PCMU' if payload == 0 else 'PCMA'}/8000"
    start = stop = ""
    if stream is not None:
        start = f'<nop><action><exec rtp_stream="{stream},{loops},0"/></action></nop>'
        stop = '<nop><action><exec rtp_stream="pause"/></action></nop>'
    voice_xml = "\n".join(
        f'  <pause milliseconds="{pause}"/>' * bool(pause)
        + f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>'
        for pause, pcap in plays
    )
    on_timeout = ' ontimeout="hangup"' if hang_up else ""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="caller">
  <send retrans="500" start_rtd="1"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      {head}
      CSeq: 1 INVITE
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[local_ip_type] [local_ip]
      t=0 0
      m=audio {port} RTP/AVP {payload} 101
      {rtpmap}
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="1"/>
  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      {dialog}
      CSeq: 1 ACK
      Content-Length: 0
  ]]></send>
  {start}{voice_xml}
  <recv request="BYE" timeout="{hold_ms}"{on_timeout}/>
  {stop}
  <send next="end"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
  ]]></send>
  <label id="hangup"/>
  {stop}
  <send retrans="500"><![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      {dialog}
      CSeq: 2 BYE
      Content-Length: 0
  ]]></send>
  <recv response="200"/>
  <label id="end"/>
</scenario>
"""


def run_sipp(
    sip_port: int,
    *args: str,
    source: str = "127.0.0.1",
    timeout_s: int = 20,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """One SIPp call, in the foreground, from `source` (127.0.0.1 is the default trunk IP;
    another loopback address plays "the internet")."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        port = s.getsockname()[1]
    return subprocess.run(
        [
            *("sipp", f"127.0.0.1:{sip_port}", "-i", source, "-p", str(port), "-m", "1"),
            *("-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin", *args),
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s + 40,
        check=False,
        cwd=cwd,
    )


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Caller:
    """One SIPp call running in the background while the test watches the switchboard."""

    def __init__(
        self,
        *,
        service: str,
        ani: str,
        hold_ms: int,
        folder: Path,
        sip_port: int = 5060,
        speak: bool = False,
        speak_after_ms: int = 0,
        voice: Path | None = None,
        plays: Sequence[tuple[int, str]] = (),
        hang_up: bool = True,
        stream: Path | None = None,
    ):
        self.service, self.ani, self.hold_ms = service, ani, hold_ms
        self._scenario = folder / f"caller-{ani}-{service}.xml"
        # `speak`: 7 s of real audio (Debian sip-tester's G.711 A-law sample) `speak_after_ms`
        # after the answer (a hang-up from Asterisk during that wait would fail the call);
        # `voice`: a PCMU pcap of its own (speech_pcap) instead; `stream`: raw mu-law sent for
        # the whole call from the answer on (caller_scenario), e.g. for RTP both ways.
        if speak or voice:
            plays = [(speak_after_ms, str(voice or PCAPS / "g711a.pcap")), *plays]
        codec: Codec = "PCMA" if speak and not voice else "PCMU"
        self._scenario.write_text(
            caller_scenario(
                ani=ani, hold_ms=hold_ms, codec=codec, plays=plays, hang_up=hang_up, stream=stream
            )
        )
        self._sip_port = sip_port
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Caller:
        self._proc = await asyncio.create_subprocess_exec(
            "sipp",
            f"127.0.0.1:{self._sip_port}",
            "-sf",
            str(self._scenario),
            "-s",
            self.service,
            "-i",
            "127.0.0.1",
            "-p",
            str(free_udp_port()),
            "-mp",
            str(free_udp_port()),
            "-m",
            "1",
            "-timeout",
            f"{self.hold_ms // 1000 + 30}s",
            "-timeout_error",
            "-nostdin",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(self._scenario.parent),
        )
        return self

    async def done(self, timeout_s: float = 60) -> int:
        """SIPp's exit status (0: the call went as scripted)."""
        assert self._proc is not None
        out, err = await asyncio.wait_for(self._proc.communicate(), timeout_s)
        if self._proc.returncode:
            print(out.decode(errors="replace")[-1500:], err.decode(errors="replace")[-1500:])
        return int(self._proc.returncode or 0)

    def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()


def dtmf_pcaps(folder: Path, digits: str) -> None:
    """`folder/key<n>.pcap` for each digit, from SIPp's shipped dtmf_2833_<d>.pcap.

    Asterisk quirk: res_rtp_asterisk drops a telephone-event whose RTP timestamp is not after
    the last one that ended (it takes it for a late retransmission). The shipped pcaps carry
    fixed timestamps (dtmf_2833_1 is older than dtmf_2833_2) and SIPp replays RTP headers as
    they are, so "2 then 1" loses the 1. Renumbering sequence and timestamp per key, in the
    order pressed, makes any sequence of keys arrive like one phone's.
    """
    for n, digit in enumerate(digits, start=1):
        name = {"#": "pound", "*": "star"}.get(digit, digit)
        data = bytearray((PCAPS / f"dtmf_2833_{name}.pcap").read_bytes())
        offset, first = 24, None  # pcap global header; Ethernet link type
        while offset < len(data):
            length = struct.unpack_from("<I", data, offset + 8)[0]
            packet = offset + 16
            ip_header = (data[packet + 14] & 0x0F) * 4
            rtp = packet + 14 + ip_header + 8
            seq, stamp = struct.unpack_from(">HI", data, rtp + 2)
            first = first or (seq, stamp)
            struct.pack_into(
                ">HI", data, rtp + 2, 1000 * n + seq - first[0], 80_000 * n + stamp - first[1]
            )
            offset = packet + length
        (folder / f"key{n}.pcap").write_bytes(bytes(data))


def speech_pcap(wav: Path, target: Path, *, silence_s: float = 5.0, first: int = 10) -> None:
    """An RTP stream (PCMU, 20 ms packets) of `wav` followed by `silence_s` of silence, as a
    pcap SIPp's play_pcap_audio replays: a caller who speaks, then waits.

    The trailing silence is real audio frames, so Asterisk's silence detection can end a
    recording (with no frames at all it only sees "no audio" and fails it). Sequence numbers
    and timestamps start after those of dtmf_pcaps' keys (`first` = the key count + 1), for the
    same reason as there.
    """
    ulaw = subprocess.run(
        ["sox", str(wav), "-t", "raw", "-r", "8000", "-c", "1", "-e", "mu-law", "-", "pad", "0",
         str(silence_s)],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # Ethernet
    for n, offset in enumerate(range(0, len(ulaw) - 159, 160)):
        rtp = struct.pack(">BBHII", 0x80, 0, 1000 * first + n, 80_000 * first + 160 * n, 0x1234)
        udp = struct.pack(">HHHH", 6000, 6000, 8 + 12 + 160, 0) + rtp + ulaw[offset : offset + 160]
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))  # fmt: skip
        frame = b"\0" * 12 + b"\x08\x00" + ip + udp
        usec = n * 20_000
        out += struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
        out += frame
    target.write_bytes(bytes(out))
