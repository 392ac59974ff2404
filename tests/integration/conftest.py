"""Shared fixtures of the integration tests that run the project's Asterisk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from telephony.asterisk.chroot import ensure_chroot

IOC = str(Path(sys.executable).with_name("ioc"))


@pytest.fixture(scope="session")
def chroot_root() -> Path:
    """The Asterisk chroot: the real cache (IOC_CACHE_DIR; built once, about a minute), or
    IOC_TEST_ASTERISK_ROOT — a private copy, to run beside another Asterisk (two instances
    must not share a chroot: each binds its own /etc/asterisk over it). Ports come from
    IOC_ASTERISK_* through AsteriskSettings."""
    if root := os.environ.get("IOC_TEST_ASTERISK_ROOT"):
        return Path(root)
    return ensure_chroot(ArtifactCache(Settings.from_env().cache_dir))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def rasa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The project's Rasa, started once for the session by `ioc rasa start` (env and model
    from IOC_CACHE_DIR, built by `make test`'s `ioc rasa prepare`) on a free port, in a data
    folder of its own; stopped by `ioc rasa stop`. Yields the environment that points `ioc`
    at it (IOC_DATA_DIR, IOC_RASA_PORT) plus its url and token. Rasa's own REST channel is
    on, and its custom actions call the hub at `hub_port` (tests/integration/
    test_rasa_actions.py serves the hub there)."""
    data = tmp_path_factory.mktemp("rasa-data")
    credentials = data / "credentials.yml"
    credentials.write_text("rest:\n")
    env = {
        **os.environ,
        "IOC_DATA_DIR": str(data),
        "IOC_RASA_PORT": str(_free_port()),
        "IOC_HTTP_PORT": str(_free_port()),
        "IOC_RASA_CREDENTIALS": str(credentials),
    }
    env.pop("IOC_RASA_URL", None)
    started = subprocess.run(
        [IOC, "rasa", "start"], env=env, capture_output=True, text=True, timeout=900
    )
    assert started.returncode == 0, started.stderr[-3000:]
    info = json.loads(started.stdout)
    token = json.loads((Path(env["IOC_DATA_DIR"]) / "rasa" / "secrets.json").read_text())["token"]
    yield {
        **env,
        "url": info["url"],
        "token": token,
        "pid": str(info["pid"]),
        "hub_port": env["IOC_HTTP_PORT"],
    }
    subprocess.run([IOC, "rasa", "stop"], env=env, timeout=60, check=True)
