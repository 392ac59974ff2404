"""The switchboard outlives its database: started by the telephony role (its `ioc.web` entry
point, as `ioc run` starts it) against the project's Asterisk while PostgreSQL refuses every
connection, it connects to Asterisk, keeps retrying its start-up and on-connect work, says so
in `/health`, and catches up by itself once the database is back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from ioc_core.config import Settings
from ioc_core.db import transaction
from ioc_core.runtime import Core
from ioc_core.web.app import make_app
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.ivr.prompts import ensure_prompts
from telephony.settings import SwitchboardSettings
from tests.conftest import database_accepts, make_settings
from tests.helpers import wait_until

pytestmark = pytest.mark.asterisk


@pytest.fixture
def backend() -> str:
    return "postgres"  # an outage we can cause for real: PostgreSQL refusing connections


@pytest.fixture(scope="module")
def pbx(chroot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path_factory.mktemp("pbx"))
    ensure_prompts(proc.state_dir / "sounds")
    ensure_secrets(proc.state_dir)
    proc.start(render(AsteriskSettings.from_env(proc.state_dir).placeholders()))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, pbx: AsteriskProcess, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    # The role's data folder holds this Asterisk's secrets: `ioc setup asterisk` was run.
    state = tmp_path / "data" / "asterisk"
    state.mkdir(parents=True)
    shutil.copy(pbx.state_dir / "secrets.json", state / "secrets.json")
    monkeypatch.setenv("IOC_SWITCHBOARD", "on")
    monkeypatch.setenv("IOC_STT_ENGINE", "vosk")  # no speech engine: not what this is about
    return make_settings(tmp_path / "data", database_url)


async def _switchboard(client: TestClient[Any, Any]) -> dict[str, Any] | None:
    answer = await client.get("/health")
    component: dict[str, Any] | None = (await answer.json())["components"].get("switchboard")
    return component


async def test_defect_11_the_switchboard_survives_a_database_outage_and_says_so(
    core: Core, settings: Settings
) -> None:
    name = settings.database_url.rsplit("/", 1)[1]
    # A call-back left ringing by a process that died: start-up puts it back to pending.
    store = CallStore(
        sessions=core.sessions,
        settings=SwitchboardSettings.from_env({}),
        on_commit=core.relay.notify,
    )
    await store.record("9.1", Fact.ARRIVED, ani="0912000099", service="1022")
    await store.record("9.1", Fact.QUEUED, queue="hotline-1022", position=1)
    await store.record("9.1", Fact.ABANDONED)
    async with transaction(core.sessions) as s:
        await s.execute(
            text(
                "UPDATE callbacks SET status = 'calling', "
                "updated_at = updated_at - interval '1 hour'"
            )
        )
    (stale,) = await store.callbacks.items(status=["calling"])

    await database_accepts(name, up=False)
    try:
        async with TestClient(TestServer(make_app(core), host="127.0.0.1")) as client:

            async def failing() -> dict[str, Any] | None:
                sb = await _switchboard(client)
                parts = (sb or {}).get("parts", {})
                ok = (
                    sb is not None
                    and sb["ari"] == "connected"
                    and parts.get("start-up", {}).get("restarts", 0) >= 2
                    and parts.get("ari-catch-up", {}).get("status") in ("failed", "running")
                )
                return sb if ok else None

            down = await wait_until(failing, 30, "the switchboard up, its start-up retried")
            assert down["status"] == "degraded" and down["asterisk"] == "reachable"
            assert down["fastagi"] == "connected"
            assert down["last_error"] and down["last_error"]["error"]
            assert down["parts"]["start-up"]["last_error"]

            await database_accepts(name, up=True)

            async def recovered() -> dict[str, Any] | None:
                sb = await _switchboard(client)
                parts = (sb or {}).get("parts", {})
                settled = all(
                    parts.get(p, {}).get("status") == "done"
                    for p in ("start-up", "ari-catch-up", "ami-catch-up")
                )
                return sb if sb and settled and sb["status"] == "ok" else None

            up = await wait_until(recovered, 60, "the switchboard caught up after the outage")
            assert up["ari"] == up["ami"] == "connected"
            assert up["last_error"], "the last error stays visible after recovery"
            back = await store.callbacks.get(stale["id"])
            assert back is not None and back["status"] == "pending"
    finally:
        await database_accepts(name, up=True)
