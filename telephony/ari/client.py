"""A small ARI client on aiohttp: REST calls and the event WebSocket, reconnecting forever.

Why not a library: `ari` 0.1.3 is Python-2 only; aioari/asyncari work but hide reconnection
and re-registration, which the switchboard must control (platform facts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

EventHandler = Callable[[Mapping[str, Any]], Awaitable[None]]


class AriError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"ARI {status}: {message}")
        self.status = status


class ChannelGone(AriError):
    """404 on a channel: the caller hung up meanwhile — a normal race, not a failure."""


class AriClient:
    def __init__(
        self, *, base_url: str, user: str, password: str, app: str, max_backoff_s: float = 10.0
    ) -> None:
        self._base = base_url.rstrip("/") + "/ari"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(user, password)}
        self.app = app
        self._max_backoff = max_backoff_s
        self._session: aiohttp.ClientSession | None = None
        self.connected = asyncio.Event()

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=aiohttp.ClientTimeout(total=10)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, **params: Any) -> Any:
        return await self.request_with_body(method, path, None, **params)

    async def request_with_body(
        self, method: str, path: str, body: Mapping[str, Any] | None, **params: Any
    ) -> Any:
        """`params` go in the query string; `body` (e.g. an originate's `variables`) as JSON."""
        http = await self._http()
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with http.request(method, self._base + path, params=query, json=body) as r:
            if r.status == 404 and path.startswith("/channels/"):
                raise ChannelGone(404, path)
            if r.status >= 400:
                raise AriError(r.status, await r.text())
            return await r.json() if r.content_type == "application/json" else None

    async def continue_in_dialplan(self, channel_id: str, **where: str) -> None:
        """Hand the channel back to the dialplan (the priority after Stasis() by default)."""
        await self.request("POST", f"/channels/{channel_id}/continue", **where)

    async def record(self, channel_id: str, name: str, *, max_s: int, silence_s: int) -> None:
        """Record the caller after a beep into the recordings spool as `name`.wav; `#`,
        `silence_s` of quiet or `max_s` ends it (RecordingFinished/RecordingFailed follow)."""
        await self.request(
            "POST",
            f"/channels/{channel_id}/record",
            name=name,
            format="wav",
            maxDurationSeconds=max_s,
            maxSilenceSeconds=silence_s,
            beep="true",
            terminateOn="#",
            ifExists="overwrite",
        )

    async def channels(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/channels")
        return result

    async def bridges(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/bridges") or []
        return result

    async def hang_up(self, channel_id: str) -> None:
        await self.request("DELETE", f"/channels/{channel_id}")

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/variable", variable=name, value=value)

    async def play(self, channel_id: str, media: str, *, playback_id: str, **options: str) -> None:
        """Start `media` on the channel under our own id (PlaybackFinished can then be matched
        even when it arrives before this request returns)."""
        await self.request(
            "POST", f"/channels/{channel_id}/play", media=media, **options, playbackId=playback_id
        )

    async def stop_playback(self, playback_id: str) -> None:
        await self.request("DELETE", f"/playbacks/{playback_id}")

    async def originate(
        self, *, endpoint: str, app_args: str, caller_id: str, timeout_s: int, channel_id: str
    ) -> None:
        """Dial `endpoint`; the answered channel enters our Stasis app with `app_args`."""
        await self.request(
            "POST",
            "/channels",
            endpoint=endpoint,
            app=self.app,
            appArgs=app_args,
            callerId=caller_id,
            timeout=timeout_s,
            channelId=channel_id,
        )

    async def snoop(
        self, channel_id: str, *, snoop_id: str, app_args: str, spy: str, whisper: str = "none"
    ) -> None:
        """A snoop channel on `channel_id` (`spy`: what it hears, `whisper`: where what is
        played on it goes), entering our Stasis app with `app_args`."""
        await self.request(
            "POST", f"/channels/{channel_id}/snoop", app=self.app, spy=spy, whisper=whisper,
            snoopId=snoop_id, appArgs=app_args,
        )  # fmt: skip

    async def external_media(self, *, channel_id: str, host: str, data: str) -> None:
        """An AudioSocket (TCP, 8 kHz slin) channel to `host` carrying `data` as its id."""
        await self.request(
            "POST", "/channels/externalMedia", app=self.app, channelId=channel_id,
            external_host=host, encapsulation="audiosocket", transport="tcp", format="slin",
            data=data,
        )  # fmt: skip

    async def create_bridge(self, bridge_id: str) -> None:
        await self.request("POST", "/bridges", type="mixing", bridgeId=bridge_id)

    async def add_to_bridge(self, bridge_id: str, channels: list[str]) -> None:
        await self.request("POST", f"/bridges/{bridge_id}/addChannel", channel=",".join(channels))

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}")

    async def run(
        self, handler: EventHandler, on_connect: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Receive events forever. After every (re)connection `on_connect` runs, so the app can
        re-read live channels it missed while away; back-off grows to `max_backoff_s`."""
        backoff = 0.5
        while True:
            try:
                http = await self._http()
                ws_url = self._base.replace("http", "ws", 1) + "/events"
                async with http.ws_connect(ws_url, params={"app": self.app}, heartbeat=20) as ws:
                    logger.info("ARI connected as app %s", self.app)
                    backoff = 0.5
                    if on_connect is not None:
                        await on_connect()
                    # `connected` means subscribed *and* caught up with live channels.
                    self.connected.set()
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            await self._dispatch(handler, msg.json())
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                logger.warning("ARI connection failed (%s); retrying in %.1fs", exc, backoff)
            finally:
                # Whatever ended the connection (the caller's supervisor restarts us after
                # anything else), nobody may believe it is still up.
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    @staticmethod
    async def _dispatch(handler: EventHandler, event: Mapping[str, Any]) -> None:
        try:
            await handler(event)
        except ChannelGone:
            logger.info("channel gone while handling %s", event.get("type"))
        except Exception:  # one bad event must not take the app down
            logger.exception("handler failed on %s", event.get("type"))
