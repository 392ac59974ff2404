"""The FastAGI server, spoken to over TCP the way Asterisk does: the `agi_*` environment, a
blank line, then one `200 result=1` reply per command the server sends."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from telephony.agi.fastagi import (
    MAX_LINE_BYTES,
    STATUS_VARIABLE,
    AgiRequest,
    FastAgiServer,
    Handler,
    safe_value,
)
from tests.helpers import wait_until

SET = re.compile(r'SET VARIABLE "(?P<name>[^"]*)" "(?P<value>[^"]*)"')
Serve = Callable[..., Awaitable[FastAgiServer]]


def environment(script: str = "lookup", **over: str) -> dict[str, str]:
    """What Asterisk 22 sends for `AGI(agi://127.0.0.1:4573/lookup,1022)`."""
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:4573/{script}",
        "agi_channel": "PJSIP/carrier-00000001",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1732550000.17",
        "agi_version": "22.10.0",
        "agi_callerid": "+84912345678",
        "agi_calleridname": "unknown",
        "agi_callingpres": "0",
        "agi_dnid": "1022",
        "agi_rdnis": "unknown",
        "agi_context": "hotline",
        "agi_extension": "1022",
        "agi_priority": "3",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "139872",
        "agi_arg_1": "1022",
    }
    env.update(over)
    return env


async def agi_call(
    port: int, env: Mapping[str, str], *, reply: str = "200 result=1", within: float = 5
) -> list[str]:
    """One FastAGI session as Asterisk runs it; returns the commands the server sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
        await writer.drain()
        commands = []
        while line := await asyncio.wait_for(reader.readline(), within):
            commands.append(line.decode().rstrip("\n"))
            writer.write(reply.encode() + b"\n")
            await writer.drain()
        return commands
    finally:
        writer.close()


def variables(commands: list[str]) -> dict[str, str]:
    found = {}
    for command in commands:
        match = SET.fullmatch(command)
        assert match, command
        found[match["name"]] = match["value"]
    return found


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[FastAgiServer] = []

    async def make(handlers: Mapping[str, Handler], **options: Any) -> FastAgiServer:
        server = FastAgiServer(handlers=handlers, port=0, **options)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


def answering(variables: Mapping[str, str], seen: list[AgiRequest] | None = None) -> Handler:
    async def handler(request: AgiRequest) -> Mapping[str, str]:
        if seen is not None:
            seen.append(request)
        return variables

    return handler


async def test_success_sets_the_handlers_variables_then_ok(serve: Serve) -> None:
    seen: list[AgiRequest] = []
    server = await serve({"lookup": answering({"IOC_A": "3", "IOC_B": "PA-2026-000123"}, seen)})
    commands = await agi_call(server.port, environment(agi_arg_2="x"))
    assert commands == [
        'SET VARIABLE "IOC_A" "3"',
        'SET VARIABLE "IOC_B" "PA-2026-000123"',
        'SET VARIABLE "IOC_AGI_STATUS" "ok"',  # last: "ok" means everything else is set
    ]
    [request] = seen
    assert request.script == "lookup"
    assert request.caller_id == "+84912345678"
    assert request.extension == "1022"
    assert request.unique_id == "1732550000.17"
    assert request.channel == "PJSIP/carrier-00000001"
    assert request.args == ("1022", "x") and request.arg(1) == "1022" and request.arg(3) == ""
    assert request.env["agi_context"] == "hotline"


async def test_values_are_made_safe_for_asterisk(serve: Serve) -> None:
    tricky = {"IOC_NAME": 'Nguyễn "Văn"\nAn\\', "IOC_LONG": "x" * 1000}
    server = await serve({"lookup": answering(tricky)})
    found = variables(await agi_call(server.port, environment()))
    assert found["IOC_NAME"] == "Nguyễn VănAn"  # UTF-8 kept; quotes, newline, backslash gone
    assert len(found["IOC_LONG"]) == 256
    assert found[STATUS_VARIABLE] == "ok"


async def test_a_handler_cannot_fake_the_status(serve: Serve) -> None:
    server = await serve({"lookup": answering({STATUS_VARIABLE: "whatever", "IOC_A": "1"})})
    found = variables(await agi_call(server.port, environment()))
    assert found == {"IOC_A": "1", STATUS_VARIABLE: "ok"}


@pytest.mark.parametrize("bad", [{"IOC A": "1"}, {'IOC"A': "1"}, {"": "1"}, {"1ABC": "1"}])
async def test_an_unsafe_variable_name_is_a_failed_lookup(
    serve: Serve, bad: dict[str, str]
) -> None:
    server = await serve({"lookup": answering(bad)})
    commands = await agi_call(server.port, environment())
    assert commands == ['SET VARIABLE "IOC_AGI_STATUS" "failed"']


async def test_unknown_script(serve: Serve) -> None:
    server = await serve({"lookup": answering({"IOC_A": "1"})})
    commands = await agi_call(server.port, environment("nosuch"))
    assert commands == ['SET VARIABLE "IOC_AGI_STATUS" "unknown-script"']


async def test_a_handler_that_raises_fails_and_the_server_goes_on(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: AgiRequest) -> Mapping[str, str]:
        raise ConnectionError("the calls table is unreachable")

    server = await serve({"lookup": broken, "ok": answering({})})
    with caplog.at_level(logging.ERROR, logger="telephony.agi.fastagi"):
        commands = await agi_call(server.port, environment())
    assert commands == ['SET VARIABLE "IOC_AGI_STATUS" "failed"']
    assert "unreachable" in caplog.text
    assert await agi_call(server.port, environment("ok")) == ['SET VARIABLE "IOC_AGI_STATUS" "ok"']


async def test_a_slow_handler_times_out_promptly_and_is_cancelled(serve: Serve) -> None:
    cancelled = asyncio.Event()

    async def slow(request: AgiRequest) -> Mapping[str, str]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {"IOC_A": "1"}

    server = await serve({"lookup": slow}, timeout_s=0.2)
    started = time.monotonic()
    commands = await agi_call(server.port, environment())
    elapsed = time.monotonic() - started
    assert commands == ['SET VARIABLE "IOC_AGI_STATUS" "failed"']
    assert elapsed < 1.0, f"a look-up held the call for {elapsed:.2f}s"
    await asyncio.wait_for(cancelled.wait(), 2)


async def test_a_handler_that_blocks_the_loop_still_gets_a_prompt_answer(serve: Serve) -> None:
    # A handler that blocks instead of awaiting stalls the loop: wait_for cannot fire, the
    # session thread's own deadline does.
    async def blocking(request: AgiRequest) -> Mapping[str, str]:
        time.sleep(1.0)  # noqa: ASYNC251  # the bug being survived
        return {"IOC_A": "1"}

    server = await serve({"lookup": blocking}, timeout_s=0.1)
    done: list[str] = []
    elapsed: list[float] = []

    def call() -> None:  # a client in a thread: the loop is the thing that stalls
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall("".join(f"{k}: {v}\n" for k, v in environment().items()).encode())
            sock.sendall(b"\n")
            line = sock.makefile("rb").readline().decode().rstrip("\n")
            elapsed.append(time.monotonic() - started)
            done.append(line)
            sock.sendall(b"200 result=1\n")

    await asyncio.to_thread(call)
    assert done == ['SET VARIABLE "IOC_AGI_STATUS" "failed"']
    assert elapsed[0] < 0.9


async def _raw(port: int, data: bytes, *, close_after: bool = True, within: float = 5) -> bytes:
    """Send `data` as a misbehaving peer; returns whatever the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if close_after:
            writer.write_eof()
        try:
            return await asyncio.wait_for(reader.read(), within)
        except ConnectionResetError:
            return b""  # closed with our bytes unread: Linux answers with a reset
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("data", "close_after"),
    [
        pytest.param(b"\x00\xff\xfe garbage without newline", True, id="binary-then-eof"),
        pytest.param(b"agi_network: yes\nagi_chan", True, id="closed-mid-environment"),
        pytest.param(b"", True, id="closed-at-once"),
        pytest.param(b"hello\nworld\n\n", False, id="not-a-fastagi-peer"),
        pytest.param(b"x" * (MAX_LINE_BYTES + 10) + b"\n\n", False, id="line-too-long"),
        pytest.param(b"agi_x: 1\n" * 500, False, id="endless-environment"),
        pytest.param(b"agi_network_script: lookup\n", False, id="goes-quiet"),
    ],
)
async def test_a_misbehaving_peer_is_logged_and_closed(
    serve: Serve, caplog: pytest.LogCaptureFixture, data: bytes, close_after: bool
) -> None:
    called: list[AgiRequest] = []
    server = await serve({"lookup": answering({"IOC_A": "1"}, called)}, io_timeout_s=0.3)
    with caplog.at_level(logging.WARNING, logger="telephony.agi.fastagi"):
        sent = await _raw(server.port, data, close_after=close_after)
        assert sent == b""
        await wait_until(lambda: "dropped" in caplog.text, 2, "the session to be logged")
    assert called == []
    # The server is unharmed.
    assert variables(await agi_call(server.port, environment()))[STATUS_VARIABLE] == "ok"


async def test_garbage_replies_end_the_session(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve({"lookup": answering({"IOC_A": "1", "IOC_B": "2"})})
    with caplog.at_level(logging.WARNING, logger="telephony.agi.fastagi"):
        commands = await agi_call(server.port, environment(), reply="what?")
    assert commands == ['SET VARIABLE "IOC_A" "1"']  # the first reply made no sense: stop
    await wait_until(lambda: "dropped" in caplog.text, 2, "the session to be logged")
    assert variables(await agi_call(server.port, environment()))[STATUS_VARIABLE] == "ok"


async def test_a_caller_hanging_up_is_a_normal_end(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve({"lookup": answering({"IOC_A": "1", "IOC_B": "2"})})
    reply = "HANGUP\n511 Command Not Permitted on a dead channel or intercept routine"
    with caplog.at_level(logging.INFO, logger="telephony.agi.fastagi"):
        commands = await agi_call(server.port, environment(), reply=reply)
    assert commands == ['SET VARIABLE "IOC_A" "1"']
    await wait_until(lambda: "hung up" in caplog.text, 2, "the hang-up to be logged")
    assert "dropped" not in caplog.text


async def test_sessions_are_bounded_and_the_excess_refused_at_once(serve: Serve) -> None:
    release = asyncio.Event()
    inside = 0
    most = 0

    async def held(request: AgiRequest) -> Mapping[str, str]:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        try:
            await release.wait()
        finally:
            inside -= 1
        return {"IOC_A": request.arg(1)}

    server = await serve({"lookup": held}, max_sessions=2, timeout_s=5)
    first = [
        asyncio.create_task(agi_call(server.port, environment(agi_arg_1=str(i)))) for i in (1, 2)
    ]
    await wait_until(lambda: inside == 2, 3, "two sessions in their handler")
    started = time.monotonic()
    request = "".join(f"{k}: {v}\n" for k, v in environment().items()) + "\n"
    assert await _raw(server.port, request.encode(), close_after=False) == b""
    assert time.monotonic() - started < 0.5, "the third call is refused, not queued"
    release.set()
    results = [variables(c) for c in await asyncio.gather(*first)]
    assert sorted(r["IOC_A"] for r in results) == ["1", "2"]
    assert most == 2
    await wait_until(lambda: server.active_sessions == 0, 2, "the slots to be released")
    assert variables(await agi_call(server.port, environment()))[STATUS_VARIABLE] == "ok"


async def test_close_cuts_off_a_stuck_session_promptly(serve: Serve) -> None:
    server = await serve({"lookup": answering({})}, io_timeout_s=30, timeout_s=0.2)
    port = server.port
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"agi_network: yes\n")  # and then nothing: a peer that hangs
        await writer.drain()
        await wait_until(lambda: server.active_sessions == 1, 2, "the session to start")
        assert port > 0
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 2
        assert server.active_sessions == 0
    finally:
        writer.close()
    assert server.port == port
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_binds_loopback_and_picks_a_free_port() -> None:
    server = FastAgiServer(handlers={}, port=0)
    assert server.port == 0
    async with server:
        assert server.port > 0
        assert server._server is not None
        assert server._server.server_address == ("127.0.0.1", server.port)
    assert FastAgiServer(handlers={}).port == 4573


def test_request_from_environment() -> None:
    env = environment(agi_arg_2="b", agi_arg_4="gap", agi_network_script="/lookup")
    request = AgiRequest.from_env(env)
    assert request.script == "lookup"
    assert request.args == ("1022", "b")  # contiguous from 1, as res_agi sends them
    empty = AgiRequest.from_env({})
    assert (empty.script, empty.caller_id, empty.args) == ("", "", ())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PA-2026-000123", "PA-2026-000123"),
        (3, "3"),
        ("Trần Thị Bích", "Trần Thị Bích"),
        ('a"b', "ab"),
        ("a\\b", "ab"),
        ("line\r\nbreak", "linebreak"),
        ("tab\there", "tabhere"),
        ("nul\x00", "nul"),
        ("sep\u2028arator", "separator"),
        ("${SHELL(rm -rf /)}", "${SHELL(rm -rf /)}"),  # SET VARIABLE never evaluates it
    ],
)
def test_safe_value(value: object, expected: str) -> None:
    assert safe_value(value) == expected
