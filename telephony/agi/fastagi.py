"""A FastAGI server for quick dialplan look-ups, on pyst2's AGI protocol class.

pyst2's quirks and how this module wraps them (threads, bounded reads, no SIGHUP handler):
docs/quirks/pyst2.md.

What the dialplan sees (a look-up must never hold a call, so every path ends promptly):
`IOC_AGI_STATUS=ok` (set last, after the handler's variables), `failed` (the handler raised,
timed out or returned something unusable) or `unknown-script`. When all sessions are busy a
new connection is closed at once: Asterisk then reports AGISTATUS=SUCCESS (measured on 22.10)
and the dialplan's defaults stand, so the dialplan tests `IOC_AGI_STATUS`, not AGISTATUS.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from asterisk.agi import AGI

logger = logging.getLogger(__name__)

STATUS_VARIABLE = "IOC_AGI_STATUS"
DEFAULT_PORT = 4573  # FastAGI's registered port; Asterisk's default for agi:// URLs

MAX_LINE_BYTES = 2048  # Asterisk's environment lines are short; a caller name is at most 80
MAX_LINES = 200  # about 25 environment lines plus up to 128 agi_arg_N (res_agi's limit)
MAX_VALUE_CHARS = 256
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,79}")
_ARG = re.compile(r"agi_arg_(\d+)")


class AgiStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN_SCRIPT = "unknown-script"


@dataclass(frozen=True, kw_only=True)
class AgiRequest:
    """One FastAGI request: the `agi_*` environment Asterisk sent, with the usual fields named."""

    script: str  # agi_network_script: the path of agi://host:port/<script>
    caller_id: str  # agi_callerid: the number ("unknown" when the caller withheld it)
    extension: str  # agi_extension
    unique_id: str  # agi_uniqueid: the channel's unique id, the call's correlation id
    channel: str  # agi_channel
    args: tuple[str, ...] = ()  # agi_arg_1.. in order: AGI(agi://.../script,arg1,arg2)
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgiRequest:
        numbered = {int(m.group(1)): v for k, v in env.items() if (m := _ARG.fullmatch(k))}
        args: list[str] = []
        while len(args) + 1 in numbered:  # contiguous from 1, as res_agi sends them
            args.append(numbered[len(args) + 1])
        return cls(
            script=env.get("agi_network_script", "").strip("/"),
            caller_id=env.get("agi_callerid", ""),
            extension=env.get("agi_extension", ""),
            unique_id=env.get("agi_uniqueid", ""),
            channel=env.get("agi_channel", ""),
            args=tuple(args),
            env=dict(env),
        )

    def arg(self, number: int, default: str = "") -> str:
        """`agi_arg_<number>` (1-based, like the dialplan's), or `default`."""
        return self.args[number - 1] if 0 < number <= len(self.args) else default


Handler = Callable[[AgiRequest], Awaitable[Mapping[str, str]]]


class PeerError(Exception):
    """The peer broke the protocol, went quiet or went away: log and close the session."""


def safe_value(value: object) -> str:
    """A value `SET VARIABLE` carries intact: one line, no quote or backslash (res_agi's
    argument parser gives both a meaning inside the quotes pyst2 adds), bounded length."""
    text = str(value)
    return "".join(ch for ch in text if ch.isprintable() and ch not in '"\\')[:MAX_VALUE_CHARS]


def safe_variables(variables: Mapping[str, object]) -> dict[str, str]:
    """Names are plain identifiers (a bad name is the handler's bug, so it raises ValueError);
    values go through `safe_value`."""
    if not isinstance(variables, Mapping):
        raise TypeError(f"a handler returns a mapping, not {type(variables).__name__}")
    clean: dict[str, str] = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"unsafe channel variable name {name!r}")
        clean[name] = safe_value(value)
    return clean


# ---------------------------------------------------------------------- pyst2 adapters


class _PeerReader:
    """pyst2's stdin: one bounded line per readline(), each before a deadline."""

    def __init__(self, sock: socket.socket, *, within_s: float) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._lines = 0
        self.hung_up = False
        self.deadline = time.monotonic() + within_s

    def readline(self) -> str:
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise PeerError("the peer is too slow")
            self._lines += 1
            if self._lines > MAX_LINES:
                raise PeerError("too many lines")
            self._sock.settimeout(remaining)
            try:
                data = self._file.readline(MAX_LINE_BYTES + 1)
            except TimeoutError:
                raise PeerError("the peer is too slow") from None
            if not data:
                # pyst2 would take end-of-file for the blank line ending the environment.
                raise PeerError("the peer closed the connection")
            if len(data) > MAX_LINE_BYTES:
                raise PeerError("line too long")
            line = data.decode("utf-8", errors="replace")
            if line.strip() == "HANGUP":
                # Asterisk's FastAGI hang-up notice (instead of SIGHUP); later commands get
                # "511 Command Not Permitted on a dead channel", which pyst2 raises on.
                self.hung_up = True
                continue
            return line

    def close(self) -> None:
        self._file.close()


class _PeerWriter:
    """pyst2's stdout: buffers write() calls, sends the whole command on flush()."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        data, self._parts = "".join(self._parts).encode(), []
        self._sock.sendall(data)


class _DebugSink:
    """pyst2's stderr: it writes fragments (`'ENV LINE: '`, the line, `'\\n'`); log whole lines
    at DEBUG, and keep callers' numbers out of the process's stderr."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            logger.debug("pyst2: %s", line)
        return len(text)

    def flush(self) -> None:
        pass


class _ThreadAgi(AGI):  # type: ignore[misc]  # pyst2 ships no type hints
    """pyst2's AGI without the SIGHUP handler its __init__ installs (see the module docs)."""

    def __init__(self, *, stdin: _PeerReader, stdout: _PeerWriter, stderr: _DebugSink) -> None:
        # Deliberately not AGI.__init__: the same steps minus signal.signal() and argv printing.
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._got_sighup = False  # read by pyst2's test_hangup(); never set over FastAGI
        self.env: dict[str, str] = {}
        self._get_agi_env()


# ---------------------------------------------------------------------- the server


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """One thread per session, at most `max_sessions`; full means refuse, never queue."""

    daemon_threads = True  # FastAgiServer.close() drains and aborts sessions itself
    allow_reuse_address = True  # a restart must not wait for TIME_WAIT to clear
    # socketserver's default backlog is 5: in a burst of calls a dropped SYN is retried
    # after a second, and the call waits that long; refusing over the limit is our choice.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], *, owner: FastAgiServer) -> None:
        self._owner = owner
        super().__init__(address, socketserver.BaseRequestHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self._owner._try_enter(request):
            return True
        logger.warning("FastAGI busy: refusing %s (the dialplan's defaults apply)", client_address)
        return False

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._owner._leave(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        self._owner._session(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("FastAGI session from %s failed", client_address)


class FastAgiServer:
    """Serves `agi://host:port/<script>` with `handlers[script]`; see the module docs."""

    def __init__(
        self,
        *,
        handlers: Mapping[str, Handler],
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        timeout_s: float = 0.5,
        max_sessions: int = 32,
        io_timeout_s: float = 2.0,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._handlers = dict(handlers)
        self._host = host
        self._port = port
        self.timeout_s = timeout_s
        self.max_sessions = max_sessions
        self.io_timeout_s = io_timeout_s  # for the environment, then for all replies together
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _TcpServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._active: set[socket.socket] = set()

    @property
    def port(self) -> int:
        """The bound port once started (port 0 picks a free one; still reported after close),
        else the configured one."""
        return self._port

    @property
    def listening(self) -> bool:
        """Started, not closed, and its serving thread alive (for `/health`)."""
        return self._server is not None and self._thread is not None and self._thread.is_alive()

    @property
    def active_sessions(self) -> int:
        with self._lock:
            return len(self._active)

    async def start(self) -> None:
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._server = _TcpServer((self._host, self._port), owner=self)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how quickly close() is noticed
            name=f"fastagi-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("FastAGI listening on %s:%d", self._host, self.port)

    async def close(self) -> None:
        """Stop accepting, give sessions in progress `timeout_s` to finish, then cut the rest
        off (Asterisk carries on with the dialplan's defaults)."""
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(self._stop, server)
        logger.info("FastAGI on port %d closed", self._port)

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _stop(self, server: _TcpServer) -> None:
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._lock.wait_for(lambda: not self._active, timeout=self.timeout_s + 0.5)
            for sock in self._active:
                with contextlib.suppress(OSError):  # already gone
                    sock.shutdown(socket.SHUT_RDWR)
            self._lock.wait_for(lambda: not self._active, timeout=self.io_timeout_s)

    # ------------------------------------------------------------------ sessions (threads)

    def _try_enter(self, sock: socket.socket) -> bool:
        with self._lock:
            if len(self._active) >= self.max_sessions:
                return False
            self._active.add(sock)
            return True

    def _leave(self, sock: socket.socket) -> None:
        with self._lock:
            self._active.discard(sock)
            self._lock.notify_all()

    def _session(self, sock: socket.socket, peer: Any) -> None:
        reader = _PeerReader(sock, within_s=self.io_timeout_s)
        request: AgiRequest | None = None
        try:
            agi = _ThreadAgi(stdin=reader, stdout=_PeerWriter(sock), stderr=_DebugSink())
            env: dict[str, str] = agi.env
            if "agi_network_script" not in env:
                raise PeerError("no agi_network_script in the environment: not a FastAGI peer")
            request = AgiRequest.from_env(env)
            variables = self._answer(request)
            reader.deadline = time.monotonic() + self.io_timeout_s  # for all the replies
            for name, value in variables.items():
                agi.set_variable(name, value)
        except Exception as exc:  # the peer's fault or a hang-up: never the server's end
            call = request.unique_id if request else "-"
            if reader.hung_up:
                logger.info("FastAGI %s: the caller hung up during the look-up", call)
            else:
                logger.warning(
                    "FastAGI session from %s (call %s) dropped: %s: %s",
                    peer,
                    call,
                    type(exc).__name__,
                    exc,
                )
        finally:
            reader.close()

    def _answer(self, request: AgiRequest) -> dict[str, str]:
        """The variables to set, the status last (so `ok` means everything else is set)."""
        handler = self._handlers.get(request.script)
        if handler is None:
            logger.warning("FastAGI %s: unknown script %r", request.unique_id, request.script[:80])
            return {STATUS_VARIABLE: AgiStatus.UNKNOWN_SCRIPT}
        assert self._loop is not None  # sessions only exist after start()
        started = time.monotonic()
        future: concurrent.futures.Future[Mapping[str, str]] | None = None
        try:
            if self._loop.is_closed():  # checked first: a coroutine never awaited warns
                raise RuntimeError("the event loop is closed")
            future = asyncio.run_coroutine_threadsafe(self._run(handler, request), self._loop)
            # The loop enforces timeout_s; this backstop covers a stalled or closed loop.
            variables = safe_variables(future.result(timeout=self.timeout_s + 0.25))
        except (TimeoutError, concurrent.futures.CancelledError):
            if future is not None:
                future.cancel()
            logger.warning(
                "FastAGI %s: %s timed out after %.2fs",
                request.unique_id,
                request.script,
                time.monotonic() - started,
            )
            return {STATUS_VARIABLE: AgiStatus.FAILED}
        except Exception:
            logger.exception("FastAGI %s: %s failed", request.unique_id, request.script)
            return {STATUS_VARIABLE: AgiStatus.FAILED}
        variables.pop(STATUS_VARIABLE, None)  # the server's own, whatever a handler says
        return {**variables, STATUS_VARIABLE: AgiStatus.OK}

    async def _run(self, handler: Handler, request: AgiRequest) -> Mapping[str, str]:
        return await asyncio.wait_for(handler(request), self.timeout_s)
