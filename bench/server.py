"""The real server as a subprocess (`ioc run`), started and stopped by PID only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

HOST = "127.0.0.1"


def ioc_command() -> list[str]:
    """The `ioc` console script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("ioc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ioc_core.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_env(values: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any inherited IOC_* setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(values)
    return env


def create_token(env: Mapping[str, str]) -> str:
    """`ioc token create --role service` prints the token alone on stdout."""
    out = subprocess.run(
        [*ioc_command(), "token", "create", "--role", "service", "--name", "bench"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    workers: int
    log: Path
    stop_seconds: float = 0.0  # SIGTERM to exit: how long a graceful stop took

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(env: Mapping[str, str], *, workers: int, log: Path) -> Server:
    port = free_port()
    cmd = [*ioc_command(), "run", "--port", str(port), "--workers", str(workers)]
    with log.open("wb") as out:
        # Own session: its PID is also the group id of the workers it spawns, for the fallback.
        proc = subprocess.Popen(
            cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(proc=proc, port=port, workers=workers, log=log)


async def wait_healthy(server: Server, *, timeout_s: float = 60.0) -> None:
    """Until GET /health answers 200 on every worker (the kernel spreads connections, so a
    handful of fresh connections in a row must all succeed)."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while streak < 4 * server.workers:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited ({server.proc.returncode}):\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not healthy after {timeout_s}s:\n{server.log_tail()}")
            try:
                async with http.get(
                    server.base_url + "/health", headers={"Connection": "close"}
                ) as r:
                    streak = streak + 1 if r.status == 200 else 0
            except (aiohttp.ClientError, TimeoutError):
                streak = 0
            if streak == 0:
                await asyncio.sleep(0.1)


def stop(server: Server, *, timeout_s: float = 10.0) -> None:
    """SIGTERM to the server's PID: it forwards it to its workers and waits for them. If it has
    not exited in time, SIGKILL to the process group it leads (itself and its workers)."""
    if server.proc.poll() is not None:
        return
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.proc.wait(5)
    server.stop_seconds = time.monotonic() - started


@contextlib.contextmanager
def running(env: Mapping[str, str], *, workers: int, log: Path) -> Iterator[Server]:
    server = start(env, workers=workers, log=log)
    try:
        yield server
    finally:
        stop(server)


async def run_child(cmd: list[str], *, env: Mapping[str, str], timeout_s: float) -> str:
    """Run a load generator to completion and return its stdout; on timeout or cancellation
    it is killed (by its PID) and reaped, so its CPU time is in RUSAGE_CHILDREN either way."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {err.decode(errors='replace')}")
    return out.decode(errors="replace")


def tool_version(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"
