"""Any vendor's recogniser over a small WebSocket contract (docs/speech-websocket.md), so a
province plugs one in by configuration (IOC_STT_ENGINE=external, IOC_STT_EXTERNAL_URL).

Client → server: one text message `{"type": "start", "format": "s16le", "sample_rate": 16000,
"channels": 1, "language": "vi"}`, then binary messages of raw PCM (20 ms each here), then
`{"type": "stop"}`. Server → client: any number of `{"type": "partial", "text": ...}` and one
`{"type": "final", "text": ..., "segments": [{"start_s", "end_s", "text", "confidence"}],
"model": ...}`, or `{"type": "error", "message": ...}`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from telephony.speech.audio import RATE, as_pcm16, decode16k
from telephony.speech.engine import Segment, SpeechError, Transcript

FRAME_BYTES = RATE // 50 * 2  # 20 ms of 16-bit mono


def pcm16(path: Path) -> bytes:
    """Any audio file as 16 kHz mono signed 16-bit little-endian PCM."""
    return as_pcm16(decode16k(path))


class ExternalEngine:
    name = "external"

    def __init__(self, *, url: str, language: str = "vi", timeout_s: float = 60.0) -> None:
        self.model = url
        self._url = url
        self.language = language
        self._timeout = timeout_s

    async def transcribe_file(self, path: Path, language: str | None = None) -> Transcript:
        return await self._transcribe(await asyncio.to_thread(pcm16, path), language)

    async def transcribe_samples(
        self, samples: Any, language: str, *, quick: bool = False
    ) -> Transcript:
        """A live utterance (streaming.py): one session of the contract per utterance (the
        server decides its own speed; `quick` is not part of the contract)."""
        return await self._transcribe(as_pcm16(samples), language)

    async def _transcribe(self, pcm: bytes, language: str | None) -> Transcript:
        started = time.perf_counter()
        final = await self._session(pcm, language or self.language)
        try:
            segments = [
                Segment(
                    start_s=float(s["start_s"]),
                    end_s=float(s["end_s"]),
                    text=str(s["text"]),
                    confidence=float(s.get("confidence", 0.0)),
                )
                for s in final.get("segments", [])
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise SpeechError(
                f"{self._url}: malformed segments in the final result ({exc})"
            ) from None
        return Transcript(
            text=str(final.get("text", "")).strip(),
            language=language or self.language,
            engine=self.name,
            model=str(final.get("model") or self._url),
            duration_s=round(len(pcm) / 2 / RATE, 3),
            elapsed_s=round(time.perf_counter() - started, 3),
            segments=segments,
        )

    async def _session(self, pcm: bytes, language: str) -> dict[str, Any]:
        start = {
            "type": "start",
            "format": "s16le",
            "sample_rate": RATE,
            "channels": 1,
            "language": language,
        }
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.ws_connect(self._url, heartbeat=20) as ws,
            ):
                await ws.send_json(start)
                for i in range(0, len(pcm), FRAME_BYTES):
                    await ws.send_bytes(pcm[i : i + FRAME_BYTES])
                await ws.send_json({"type": "stop"})
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = msg.json()
                    if data.get("type") == "final":
                        return dict(data)
                    if data.get("type") == "error":
                        raise SpeechError(f"{self._url}: {data.get('message', 'error')}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SpeechError(f"{self._url}: {exc.__class__.__name__}: {exc}") from None
        raise SpeechError(f"{self._url}: closed without a final result")
