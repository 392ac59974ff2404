"""A small asyncio AMI client: actions with replies, list actions, and the event stream.

Why our own (and not panoramisk): the switchboard must control reconnection and re-reading of
state after a reconnect exactly as it does for ARI (one back-off policy, one `connected` flag),
and AMI's wire format is a page of code. ADR 0010: AMI observes queue and agent events and
carries the agent commands app_queue only takes from AMI (QueueAdd/QueueRemove/QueuePause).

Wire format (Asterisk Manager Interface 2.x): after a one-line banner, messages are blocks of
`Key: Value` lines ended by an empty line, CRLF-separated. A reply carries `Response:` and our
`ActionID`; list actions (QueueStatus, ...) reply `Response: Success`, then send events tagged
with the same ActionID, then a `...Complete` event (`EventList: Complete`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

Message = dict[str, str]
EventHandler = Callable[[Message], Awaitable[None]]


class AmiError(Exception):
    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"AMI {action}: {message}")
        self.action = action
        self.message = message


class AmiUnavailable(AmiError):
    """Not connected (Asterisk down or restarting): the caller decides whether to retry."""


def encode(fields: Mapping[str, Any]) -> bytes:
    lines = []
    for key, value in fields.items():
        # A CR or LF inside a value would start a new header (or end the message): refuse.
        text = str(value)
        if "\r" in text or "\n" in text:
            raise ValueError(f"AMI field {key} contains a line break")
        lines.append(f"{key}: {text}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse(block: str) -> Message:
    msg: Message = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            msg.setdefault(key.strip(), value.strip())
    return msg


class AmiClient:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 5038,
        user: str,
        secret: str,
        timeout_s: float = 5.0,
        max_backoff_s: float = 10.0,
    ) -> None:
        self._host, self._port = host, port
        self._user, self._secret = user, secret
        self._timeout = timeout_s
        self._max_backoff = max_backoff_s
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future[Message]] = {}
        self._lists: dict[str, list[Message]] = {}
        self._logged_in = False
        self.connected = asyncio.Event()

    # ------------------------------------------------------------------ actions

    async def action(self, name: str, **fields: Any) -> Message:
        """Send one action; return its reply, or raise AmiError on `Response: Error`."""
        reply = await self._send(name, fields)
        if reply.get("Response") == "Error":
            raise AmiError(name, reply.get("Message", "error"))
        return reply

    async def list_action(self, name: str, **fields: Any) -> list[Message]:
        """An action whose result is a list of events (QueueStatus, CoreShowChannels, ...)."""
        action_id = f"ioc-{next(self._ids)}"
        self._lists[action_id] = []
        try:
            reply = await self._send(name, fields, action_id=action_id, until_complete=True)
            if reply.get("Response") == "Error":
                raise AmiError(name, reply.get("Message", "error"))
            return self._lists[action_id]
        finally:
            self._lists.pop(action_id, None)

    async def _send(
        self,
        name: str,
        fields: Mapping[str, Any],
        *,
        action_id: str | None = None,
        until_complete: bool = False,
    ) -> Message:
        writer = self._writer
        if writer is None or not (self._logged_in or name == "Login"):
            raise AmiUnavailable(name, "not connected to Asterisk's manager interface")
        action_id = action_id or f"ioc-{next(self._ids)}"
        # A list action is answered when its `EventList: Complete` event arrives.
        key = action_id + ("/complete" if until_complete else "")
        done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[key] = done
        if until_complete:
            self._replies[action_id] = asyncio.get_running_loop().create_future()
        try:
            writer.write(encode({"Action": name, "ActionID": action_id, **fields}))
            await writer.drain()
            first = await asyncio.wait_for(
                self._replies[action_id] if until_complete else done, self._timeout
            )
            if until_complete and first.get("Response") != "Error":
                await asyncio.wait_for(done, self._timeout)
            return first
        except (TimeoutError, ConnectionError) as exc:
            raise AmiUnavailable(name, f"no reply ({exc.__class__.__name__})") from exc
        finally:
            self._replies.pop(key, None)
            self._replies.pop(action_id, None)

    # ------------------------------------------------------------------ connection

    async def run(
        self, handler: EventHandler, on_connect: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Receive events forever, reconnecting with back-off; `on_connect` runs after every
        (re)connection (the switchboard re-reads queue state there)."""
        backoff = 0.5
        while True:
            try:
                reader, writer = await asyncio.open_connection(self._host, self._port)
                try:
                    await self._session(reader, writer, handler, on_connect)
                    backoff = 0.5
                finally:
                    self._disconnected()
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
            except asyncio.CancelledError:
                raise
            except (OSError, AmiError, asyncio.IncompleteReadError) as exc:
                logger.warning("AMI connection failed (%s); retrying in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: EventHandler,
        on_connect: Callable[[], Awaitable[None]] | None,
    ) -> None:
        banner = await asyncio.wait_for(reader.readline(), self._timeout)
        if not banner.startswith(b"Asterisk Call Manager"):
            raise AmiError("connect", f"unexpected banner {banner[:60]!r}")
        self._writer = writer
        # Events are handled in order by their own task, so a handler may itself send an
        # action and await its reply (which the reader task delivers) without deadlocking.
        events: asyncio.Queue[Message] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._read(reader, events)),
            asyncio.create_task(self._dispatch(events, handler)),
        ]
        try:
            await self.action("Login", Username=self._user, Secret=self._secret)
            self._logged_in = True
            logger.info("AMI connected to %s:%d", self._host, self._port)
            if on_connect is not None:
                await on_connect()
            # `connected` means logged in *and* caught up (on_connect re-read the state).
            self.connected.set()
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raise the reader's connection error
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    @staticmethod
    async def _dispatch(events: asyncio.Queue[Message], handler: EventHandler) -> None:
        while True:
            msg = await events.get()
            try:
                await handler(msg)
            except Exception:  # one bad event must not stop the stream
                logger.exception("AMI handler failed on %s", msg.get("Event"))

    async def _read(self, reader: asyncio.StreamReader, events: asyncio.Queue[Message]) -> None:
        while True:
            raw = await reader.readuntil(b"\r\n\r\n")
            msg = parse(raw.decode("utf-8", errors="replace"))
            action_id = msg.get("ActionID", "")
            if "Response" in msg and action_id in self._replies:
                self._resolve(action_id, msg)
            elif "Event" in msg and action_id in self._lists:
                if msg.get("EventList") == "Complete":
                    self._resolve(action_id + "/complete", msg)
                else:
                    self._lists[action_id].append(msg)
            elif "Event" in msg:
                events.put_nowait(msg)

    def _resolve(self, key: str, msg: Message) -> None:
        fut = self._replies.get(key)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _disconnected(self) -> None:
        self.connected.clear()
        self._logged_in = False
        self._writer = None
        # Waiters see the lost connection as ConnectionError (-> AmiUnavailable in _send).
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(ConnectionError("AMI connection lost"))
                fut.exception()  # retrieved here too: no "never retrieved" noise when unawaited
        self._replies.clear()

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        self.connected.clear()
        self._logged_in = False
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
