"""AudioSocket: the framing (table) and the server on loopback, as Asterisk talks to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from telephony.switchboard.audiosocket import (
    AUDIO,
    DTMF,
    ERROR,
    HANGUP,
    UUID,
    AudioSocketServer,
    Message,
    ProtocolError,
    encode,
    read_message,
)
from tests.helpers import wait_until


async def _read_all(data: bytes) -> list[Message]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = []
    while (msg := await read_message(reader)) is not None:
        out.append(msg)
    return out


STREAM = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        (b"", []),
        (encode(HANGUP), [Message(HANGUP, b"")]),
        (
            encode(UUID, STREAM.bytes) + encode(AUDIO, b"\x01\x00" * 160) + encode(DTMF, b"5"),
            [Message(UUID, STREAM.bytes), Message(AUDIO, b"\x01\x00" * 160), Message(DTMF, b"5")],
        ),
        (bytes([ERROR, 0, 1, 2]), [Message(ERROR, b"\x02")]),
    ],
)
async def test_framing(data: bytes, messages: list[Message]) -> None:
    assert await _read_all(data) == messages


@pytest.mark.parametrize("data", [b"\x10\x00", bytes([AUDIO, 1, 64]) + b"\x00" * 10])
async def test_a_cut_message_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        await _read_all(data)


def test_payloads_fit_the_length_field() -> None:
    assert encode(AUDIO, b"\x00" * 320)[:3] == bytes([AUDIO, 1, 64])
    with pytest.raises(ValueError):
        encode(AUDIO, b"\x00" * 65536)


class Sink:
    def __init__(self) -> None:
        self.pcm = b""
        self.done = 0

    def audio(self, pcm: bytes) -> None:
        self.pcm += pcm

    @property
    def ended(self) -> Callable[[], None]:
        def mark() -> None:
            self.done += 1

        return mark


async def test_the_server_hands_a_stream_to_its_sink_and_refuses_strangers() -> None:
    server = AudioSocketServer(port=0)
    await server.start()
    sink = Sink()
    unregister = server.register(STREAM, sink)
    try:
        _, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(encode(UUID, STREAM.bytes) + encode(AUDIO, b"ab" * 160) + encode(HANGUP))
        await w.drain()
        await wait_until(lambda: sink.done, 2, "the stream to end")
        assert sink.pcm == b"ab" * 160 and sink.done == 1
        w.close()
        # A stream nobody registered (or no UUID first) is closed at once.
        for first in (encode(UUID, uuid.uuid4().bytes), encode(AUDIO, b"\x00\x00")):
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(first)
            await w.drain()
            assert await asyncio.wait_for(r.read(), 2) == b""
            w.close()
        unregister()
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(encode(UUID, STREAM.bytes))
        assert await asyncio.wait_for(r.read(), 2) == b"", "unregistered: refused"
        w.close()
    finally:
        await server.close()
