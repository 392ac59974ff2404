"""Live audio taps: the caller's voice, while queued and during the call, into a LiveStream.

Per call, without touching the call itself (it stays in app_queue or in its bridge with the
agent):
    caller channel ──snoop (spy=in: what the caller says)──▶ Snoop channel ─┐
                                                        mixing bridge ◀─────┤
    AudioSocket server (this process) ◀──TCP── externalMedia channel ───────┘
All three objects carry ids starting with `ioc-tap-`, so the Stasis router leaves them to this
module, and after a restart the ones left over are found and removed (`remove_leftovers`).

Limits: at most `max_live` taps at once (speech recognition is the costly part); a tap that
cannot be set up is removed again and the call goes on without it. When the caller hangs up,
Asterisk ends the snoop; the tap then ends the rest and finishes the last utterance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from functools import partial

from telephony.ari.client import AriClient, AriError, ChannelGone
from telephony.speech.engine import SpeechEngine
from telephony.speech.streaming import LiveStream, StreamResult
from telephony.switchboard.audiosocket import AudioSocketServer

logger = logging.getLogger(__name__)

PREFIX = "ioc-tap-"
SETUP_S = 5.0  # for the snoop and media channels to enter Stasis

OnLive = Callable[[str, str, StreamResult], Awaitable[None]]  # (call uid, language, result)


@dataclass
class Tap:
    uid: str
    tag: str
    stream: LiveStream
    ended: Callable[[], None]
    unregister: Callable[[], None] = field(default=lambda: None)

    @property
    def snoop(self) -> str:
        return f"{PREFIX}s-{self.tag}"

    @property
    def media(self) -> str:
        return f"{PREFIX}m-{self.tag}"

    @property
    def bridge(self) -> str:
        return f"{PREFIX}b-{self.tag}"

    # AudioSocket sink
    def audio(self, pcm: bytes) -> None:
        self.stream.feed(pcm)


def owned(object_id: str) -> bool:
    """A channel or bridge of ours (a tap or a whisper), never a caller's."""
    return object_id.startswith(PREFIX)


async def remove_leftovers(ari: AriClient, held: Collection[str]) -> None:
    """After a (re)connect: channels and bridges of ours that nobody holds any more (their
    stream or playback died with an earlier run) are removed."""
    with contextlib.suppress(AriError):
        for listed, remove in ((ari.channels, ari.hang_up), (ari.bridges, ari.destroy_bridge)):
            for item in await listed() or []:
                oid = str(item.get("id", ""))
                if owned(oid) and oid not in held:
                    with contextlib.suppress(AriError, ChannelGone):
                        await remove(oid)


class LiveTaps:
    def __init__(
        self,
        *,
        ari: AriClient,
        engine: SpeechEngine,
        server: AudioSocketServer,
        on_result: OnLive,
        max_live: int,
        media_host: str = "127.0.0.1",
    ) -> None:
        self._ari = ari
        self._engine = engine
        self._server = server
        self._on_result = on_result
        self._max = max_live
        self._media_host = media_host
        self._taps: dict[str, Tap] = {}
        self._entered: dict[str, asyncio.Future[None]] = {}  # channel id -> in Stasis
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._server.start()

    def entered_stasis(self, channel_id: str) -> None:
        if (waiting := self._entered.get(channel_id)) is not None and not waiting.done():
            waiting.set_result(None)

    async def attach(self, uid: str, language: str | None = None) -> bool:
        """Tap the caller `uid` (the ARI channel id) and transcribe in `language` (None: the
        engine's configured one); False when it is not tapped."""
        language = language or self._engine.language
        if uid in self._taps:
            return True
        if len(self._taps) >= self._max:
            logger.info("no live transcript for %s: %d taps already run", uid, self._max)
            return False
        stream_id = uuid.uuid4()
        stream = LiveStream(
            self._engine, language=language, on_result=partial(self._on_result, uid, language)
        )
        # The socket closed (call over): finish the tap from outside the socket's task.
        tap = Tap(
            uid=uid,
            tag=stream_id.hex[:16],
            stream=stream,
            ended=lambda: self._later(self.detach(uid)),
        )
        self._taps[uid] = tap
        tap.unregister = self._server.register(stream_id, tap)
        loop = asyncio.get_running_loop()
        for channel in (tap.snoop, tap.media):
            self._entered[channel] = loop.create_future()
        try:
            await self._ari.snoop(uid, snoop_id=tap.snoop, app_args="tap", spy="in")
            await self._ari.external_media(
                channel_id=tap.media,
                host=f"{self._media_host}:{self._server.port}",
                data=str(stream_id),
            )
            await self._ari.create_bridge(tap.bridge)
            await asyncio.wait_for(
                asyncio.gather(*(self._entered[c] for c in (tap.snoop, tap.media))), SETUP_S
            )
            await self._ari.add_to_bridge(tap.bridge, [tap.snoop, tap.media])
        except (AriError, ChannelGone, TimeoutError) as exc:
            logger.warning("could not tap %s (%s); the call goes on without it", uid, exc)
            await self.detach(uid)
            return False
        finally:
            for channel in (tap.snoop, tap.media):
                self._entered.pop(channel, None)
        logger.info("live transcript of %s started", uid)
        return True

    async def detach(self, uid: str) -> None:
        """End the tap (idempotent): channels and bridge removed, the last words decoded."""
        tap = self._taps.pop(uid, None)
        if tap is None:
            return
        tap.unregister()
        for channel in (tap.media, tap.snoop):
            with contextlib.suppress(AriError, ChannelGone):
                await self._ari.hang_up(channel)
        with contextlib.suppress(AriError, ChannelGone):
            await self._ari.destroy_bridge(tap.bridge)
        await tap.stream.close()
        logger.info("live transcript of %s ended (%d results)", uid, tap.stream.results)

    def held(self) -> set[str]:
        """The ids of every channel and bridge the running taps use."""
        return {name for t in self._taps.values() for name in (t.snoop, t.media, t.bridge)}

    async def close(self) -> None:
        for uid in list(self._taps):
            await self.detach(uid)
        await self._server.close()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def _later(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
