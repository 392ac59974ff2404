"""Browser tests: the real hub as an operator runs it (`ioc setup`, `ioc user add`, `ioc run`
in a process of its own), Debian's Chromium driven by Playwright (PyPI `playwright` pointed at
/usr/bin/chromium: no browser is ever downloaded), fake microphone and camera.

Screenshots go to `test-artifacts/screens/` (git-ignored); with IOC_README_SCREENSHOTS=1 the
ones the README shows are also written to `docs/screens/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ioc_core.config import Settings
from ioc_core.web.screens import FrontEndUnavailable, build
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screens"
README_SHOTS = ROOT / "docs" / "screens"
CHROMIUM = os.environ.get("IOC_TEST_CHROMIUM", "/usr/bin/chromium")
IOC = [sys.executable, "-m", "ioc_core.cli"]
# What a WebRTC agent on this machine needs (shared/notes: measured with Asterisk 22):
# loopback ICE candidates, no mDNS names Asterisk cannot resolve, audio without a click,
# a fake microphone that needs no permission prompt.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
PASSWORD = "mat-khau-thu-nghiem-42"  # test accounts only; never a real deployment's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def front_built() -> Path:
    """The screens, built once into IOC_CACHE_DIR (npm ci + esbuild; cached by their sources)."""
    if not shutil.which("npm"):
        pytest.fail("Node.js and npm build the screens (`make test` installs them)")
    try:
        return build(Settings.from_env())
    except FrontEndUnavailable as exc:
        pytest.fail(str(exc))


@dataclass
class HubProcess:
    """`ioc run` on a free port with its own data folder; the switchboard when asked."""

    data_dir: Path
    port: int
    switchboard: bool
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ioc(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        done = subprocess.run(
            [*IOC, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise AssertionError(f"ioc {' '.join(args)} failed: {done.stderr}{done.stdout}")
        return done.stdout

    def add_user(
        self, name: str, role: str, *, extension: str | None = None, agency: str | None = None
    ) -> str:
        args = ["user", "add", name, "--role", role, "--password-stdin"]
        if extension:
            args += ["--extension", extension]
        if agency:
            args += ["--agency", agency]
        self.ioc(*args, stdin=PASSWORD + "\n")
        return PASSWORD

    def spawn(self) -> None:
        self.ioc("setup", "core", *(["asterisk"] if self.switchboard else []))
        assert self.log is not None
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*IOC, "run", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        await asyncio.to_thread(self.spawn)
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"the hub exited: {self.log_tail()}")
                try:
                    async with http.get(f"{self.url}/health") as r:
                        body = await r.json()
                except (aiohttp.ClientError, ValueError):
                    return False
                if not self.switchboard:
                    return r.status == 200
                sb = body.get("components", {}).get("switchboard", {})
                return bool(sb.get("status") == "ok")

            await wait_until(ready, 60, "the hub (and its switchboard) to be up", interval=0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.switchboard:
            with contextlib.suppress(Exception):
                self.ioc("asterisk", "stop", timeout=60)

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log and self.log.exists() else ""


def _hub_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    keep = ("IOC_CACHE_DIR", "IOC_RASA_PYTHON")
    env |= {k: os.environ[k] for k in keep if k in os.environ}
    return env | {
        "IOC_DATA_DIR": str(data_dir),
        "IOC_HTTP_PORT": str(port),
        "IOC_LOG_LEVEL": "INFO",
        "IOC_AREA_PROVINCES": "75",
        # Tests pick up their own calls; nobody answers a call-back at the test trunk.
        "IOC_CALLBACK_FIRST_DELAY_S": "3600",
        "IOC_STT_LIVE_MAX": "0",
        **extra,
    }


@contextlib.asynccontextmanager
async def running_hub(tmp: Path, *, switchboard: bool, **extra: str) -> AsyncIterator[HubProcess]:
    port = free_port()
    data = tmp / "hub"
    env = _hub_env(data, port, IOC_SWITCHBOARD="on" if switchboard else "off", **extra)
    log = tmp / "hub.log"
    hub = HubProcess(data_dir=data, port=port, switchboard=switchboard, env=env, log=log)
    try:
        await hub.start()
        yield hub
    finally:
        hub.stop()


@pytest.fixture
async def hub(front_built: Path, tmp_path: Path) -> AsyncIterator[HubProcess]:
    """The hub alone (embedded SQLite, in-process bus): screens that need no switchboard."""
    async with running_hub(tmp_path, switchboard=False) as h:
        yield h


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (once per test, before any await)
        pytest.fail(f"{CHROMIUM} is missing: `scripts/ensure-tools.sh` installs Debian's chromium")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def new_page(browser: Any, hub: HubProcess, *, lang: str = "vi", **ctx: Any) -> Any:
    """A fresh browser context (its own cookies: one person) on the hub."""
    context = await browser.new_context(
        base_url=hub.url,
        viewport=ctx.pop("viewport", {"width": 1366, "height": 768}),
        permissions=["microphone"],
        **ctx,
    )
    await context.add_init_script(
        f"if (!localStorage.getItem('ioc.lang')) localStorage.setItem('ioc.lang', '{lang}')"
    )
    page = await context.new_page()
    page.set_default_timeout(10_000)
    return page


async def sign_in(
    page: Any, username: str, password: str = PASSWORD, *, at: str = "/login"
) -> None:
    await page.goto(at)
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()


async def screenshot(page: Any, name: str, *, readme: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    if readme and os.environ.get("IOC_README_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, README_SHOTS / f"{name}.png")
    return path


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield ARTIFACTS
