"""The `ioc` command as an operator uses it: run (embedded and scaled), tokens, audit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import REDIS_URL, _pg, pg_url
from tests.helpers import report, wait_until

IOC = [sys.executable, "-m", "ioc_core.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ioc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IOC, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    e |= {"IOC_DATA_DIR": str(tmp_path / "data"), "IOC_LOG_LEVEL": "WARNING"}
    return e


@pytest.fixture
def pg_env(env: dict[str, str]) -> Iterator[dict[str, str]]:
    name = f"ioc_cli_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    yield env | {
        "IOC_DATABASE_URL": pg_url(name),
        "IOC_REDIS_URL": REDIS_URL,
        "IOC_BUS_STREAM": f"test:cli:{name}",
    }
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _exercise(port: int, token: str) -> None:
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            try:
                async with http.get(f"{base}/health") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(healthy, within=30, what="the hub to answer /health")
        async with http.get(f"{base}/api/v1/categories") as r:
            cats = (await r.json())["items"]
        assert any(c["name"]["vi"] == "Cháy" for c in cats)
        async with http.post(
            f"{base}/api/v1/incidents", json=report(), headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 201, await r.text()


@pytest.mark.parametrize(
    "scaled", [False, pytest.param(True, marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def test_run_on_an_empty_database(
    scaled: bool, env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    if scaled:
        env = request.getfixturevalue("pg_env")
    port = free_port()
    # A token first: `ioc token create` also prepares an empty database.
    created = ioc(env, "token", "create", "--role", "service", "--name", "portal")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("ioc_") and "Mã truy cập" in created.stderr
    proc = subprocess.Popen(
        [*IOC, "run", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        asyncio.run(_exercise(port, token))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/api/v1/openapi.json" in out
    assert "IOC Hub đang chạy" in out
    assert ("Redis Streams" in out) is scaled


def test_token_rules(env: dict[str, str]) -> None:
    bad = ioc(env, "token", "create", "--role", "agency", "--name", "x")
    assert bad.returncode == 2 and "--agency" in bad.stderr
    bad = ioc(env, "token", "create", "--role", "agency", "--agency", "NOPE")
    assert bad.returncode == 2 and "NOPE" in bad.stderr
    ok = ioc(env, "token", "create", "--role", "agency", "--agency", "PCCC")
    assert ok.returncode == 0 and ok.stdout.startswith("ioc_")
    db = Path(env["IOC_DATA_DIR"]) / "ioc.sqlite3"
    with sqlite3.connect(db) as conn:
        stored = [r[0] for r in conn.execute("SELECT token_hash FROM api_tokens")]
    assert ok.stdout.strip() not in stored and len(stored[0]) == 64  # only the hash is kept
    listed = [json.loads(line) for line in ioc(env, "token", "list").stdout.splitlines()]
    assert [t["agency"] for t in listed] == ["PCCC"] and listed[0]["revoked_at"] is None
    assert ioc(env, "token", "revoke", listed[0]["id"]).returncode == 0
    assert ioc(env, "token", "revoke", listed[0]["id"]).returncode == 1  # already revoked
    listed = [json.loads(line) for line in ioc(env, "token", "list").stdout.splitlines()]
    assert listed[0]["revoked_at"] is not None


def test_audit_verify_detects_tampering(env: dict[str, str]) -> None:
    token = ioc(env, "token", "create", "--role", "calltaker").stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [*IOC, "run", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(_exercise(port, token))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    ok = ioc(env, "audit", "verify")
    assert ok.returncode == 0 and "nguyên vẹn" in ok.stdout, ok.stdout + ok.stderr
    db = Path(env["IOC_DATA_DIR"]) / "ioc.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE timeline SET actor = 'admin:someone-else' WHERE seq = 1")
    bad = ioc(env, "audit", "verify")
    assert bad.returncode == 1 and "hash does not match" in bad.stdout
    with sqlite3.connect(db) as conn:  # put it back
        conn.execute("UPDATE timeline SET actor = 'calltaker:token' WHERE seq = 1")
    assert ioc(env, "audit", "verify").returncode == 0
    with sqlite3.connect(db) as conn:  # a state change that bypassed the timeline
        conn.execute("UPDATE incidents SET state = 'closed'")
    bad = ioc(env, "audit", "verify")
    assert bad.returncode == 1 and "not reached through the timeline" in bad.stdout


def test_db_upgrade_is_idempotent(env: dict[str, str]) -> None:
    first = ioc(env, "db", "upgrade")
    second = ioc(env, "db", "upgrade")
    assert first.returncode == second.returncode == 0
    assert json.loads(first.stdout)["catalogue_loaded"]["categories"] > 40
    assert json.loads(second.stdout)["catalogue_loaded"] == {}


def _workers(pid: int) -> set[int]:
    """The HTTP worker processes of `ioc run` (its children, less multiprocessing's helper)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {
        int(k)
        for k in kids
        if "resource_tracker"
        not in Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace")
    }


@pytest.mark.postgres
@pytest.mark.redis
def test_defect_11_killed_workers_the_primary_too_start_again(
    pg_env: dict[str, str],
) -> None:
    port = free_port()
    token = ioc(pg_env, "token", "create", "--role", "service").stdout.strip()
    proc = subprocess.Popen(
        [*IOC, "run", "--port", str(port), "--workers", "2"],
        env=pg_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        asyncio.run(_exercise(port, token))

        def two() -> set[int] | None:
            now = _workers(proc.pid)
            return now if len(now) == 2 else None

        first = asyncio.run(wait_until(two, 30, "two workers"))
        for pid in first:  # the primary (worker 0, the switchboard's) among them
            os.kill(pid, signal.SIGKILL)

        def replaced() -> set[int] | None:
            now = _workers(proc.pid)
            return now if len(now) == 2 and not now & first else None

        asyncio.run(wait_until(replaced, 30, "both workers started again"))
        asyncio.run(_exercise(port, token))
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "HTTP worker 0 (primary)" in out and "starting it again" in out
