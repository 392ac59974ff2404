"""An AudioSocket server: where ARI externalMedia channels send a call's audio.

Protocol (Asterisk's chan_audiosocket, docs.asterisk.org "AudioSocket"): each message is a
1-byte kind, a 2-byte big-endian payload length, then the payload. Asterisk first sends the
stream's UUID (kind 0x01, 16 bytes: the `data` given to externalMedia), then audio (0x10:
signed linear 16-bit 8 kHz mono, little-endian; 20 ms = 320 bytes), DTMF (0x03), and ends with
a hang-up (0x00) or an error (0xff), or just closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
MAX_PAYLOAD = 65535


@dataclass(frozen=True)
class Message:
    kind: int
    payload: bytes


class ProtocolError(Exception):
    pass


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message; None at a clean end of stream."""
    try:
        head = await reader.readexactly(3)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a message header") from None
        return None
    kind, length = head[0], struct.unpack(">H", head[1:])[0]
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError(f"stream ended inside a {length}-byte payload") from None
    return Message(kind, payload)


def encode(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload over 65535 bytes")
    return bytes([kind]) + struct.pack(">H", len(payload)) + payload


class Sink(Protocol):
    """Where one stream's audio goes."""

    def audio(self, pcm: bytes) -> None: ...

    @property
    def ended(self) -> Callable[[], None]:
        """Called once the stream is over (hang-up, error or a closed socket)."""
        ...


class AudioSocketServer:
    """Accepts Asterisk's connections on 127.0.0.1 and hands each stream's audio to the sink
    registered for its UUID; a connection nobody registered is closed at once."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._sinks: dict[uuid.UUID, Sink] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def register(self, stream: uuid.UUID, sink: Sink) -> Callable[[], None]:
        self._sinks[stream] = sink

        def unregister() -> None:
            self._sinks.pop(stream, None)

        return unregister

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        sink: Sink | None = None
        try:
            first = await read_message(reader)
            if first is None or first.kind != UUID or len(first.payload) != 16:
                logger.warning("audiosocket: a connection that did not start with its UUID")
                return
            sink = self._sinks.get(uuid.UUID(bytes=first.payload))
            if sink is None:
                logger.warning("audiosocket: no tap for stream %s", uuid.UUID(bytes=first.payload))
                return
            while (msg := await read_message(reader)) is not None:
                if msg.kind == AUDIO:
                    sink.audio(msg.payload)
                elif msg.kind == HANGUP:
                    break
                elif msg.kind == ERROR:
                    logger.warning("audiosocket: Asterisk reports error %s", msg.payload.hex())
                    break
        except (ProtocolError, ConnectionError) as exc:
            logger.warning("audiosocket: %s", exc)
        finally:
            self._conns.discard(task)
            if sink is not None:
                sink.ended()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
