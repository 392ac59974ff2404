"""The API's OpenAPI document, complete and valid, and Schemathesis run against it.

The hub is composed as `ioc run` composes it (the core plus every feature's `ioc.web` entry
point) and served on a real database; Schemathesis reads the document the hub serves and runs
its coverage, fuzzing and stateful phases (links lead from a created incident to every
`{ref}` operation) with a real token of each role. No request may get a server error.
Deterministic (fixed seed, derandomized) and bounded (a few hundred requests per role).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.engine.run import PhaseName

from ioc_core.bus import InProcessBus
from ioc_core.config import Settings
from ioc_core.runtime import Core, start_core
from ioc_core.web.app import make_app
from ioc_core.web.openapi import document
from tests.conftest import make_settings
from tests.helpers import auth, make_token, report

ROLES = ("public", "citizen", "agency", "service", "calltaker")


# ------------------------------------------------------------------ the document


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path with every {parameter} as {}) of each documented operation."""
    return {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
        for path, item in doc["paths"].items()
        for method in item
    }


def _served(app: web.Application) -> set[tuple[str, str]]:
    """The same for each route the application serves; a parameter whose pattern is a list
    of words (`{action:claim|close}`) is one route per word, as the document lists them."""
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp's automatic twin of each GET
            continue
        info = route.resource.get_info() if route.resource else {}
        paths = [route.resource.canonical if route.resource else ""]
        if pattern := info.get("pattern"):
            for name, alternatives in re.findall(r"\(\?P<(\w+)>([\w|]+)\)", pattern.pattern):
                paths = [
                    p.replace("{" + name + "}", word)
                    for p in paths
                    for word in alternatives.split("|")
                ]
        out |= {(route.method, re.sub(r"\{[^}]+\}", "{}", p)) for p in paths}
    return out


def _refs(node: Any) -> Iterator[str]:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            if isinstance(n.get("$ref"), str):
                yield n["$ref"]
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)


def _resolves(doc: dict[str, Any], pointer: str) -> bool:
    if not pointer.startswith("#/"):
        return False
    node: Any = doc
    for part in pointer[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


async def test_defect_17_every_route_is_in_a_valid_document(core: Core) -> None:
    """Every route of the full app (core, switchboard, bots) is in the document it serves;
    every $ref resolves (`#/$defs/State` and `RatingIn` did not), and the document is valid
    OpenAPI 3.1 by its meta-schema."""
    app = make_app(core)
    doc = document(app)
    missing = _served(app) - _documented(doc)
    assert not missing, f"routes not in the document: {sorted(missing)}"
    assert not (_documented(doc) - _served(app)), "documented routes nobody serves"
    for path in ("/api/v1/calls", "/api/v1/chats/handoffs", "/api/v1/agents/{}/pause"):
        assert ("GET" if path.count("/") < 5 else "POST", path) in _documented(doc)
    broken = sorted({r for r in _refs(doc) if not _resolves(doc, r)})
    assert not broken, f"unresolvable references: {broken}"
    schemathesis.openapi.from_dict(doc).validate()  # OpenAPI 3.1's meta-schema
    for item in doc["paths"].values():
        for op in item.values():
            assert (op["x-roles"] and "4XX" in op["responses"]) or op["summary"].startswith("Comp")


# ------------------------------------------------------------------ the hub, served in a thread


@dataclass
class Hub:
    """The full app on a free port in its own thread and event loop (Schemathesis's client
    is synchronous), with a token per role and a few real incidents."""

    settings: Settings
    port: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    stop: asyncio.Event | None = None
    error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        core = await start_core(self.settings, bus=InProcessBus(), migrate=False)
        # primary=False: the routes and stores of every feature, without dialling Asterisk
        # or starting the chat clouds' senders, which a fuzzer has no business reaching.
        runner = web.AppRunner(make_app(core, primary=False), access_log=None)
        await runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        for role in ROLES[1:]:
            extra = {"agency": "CA-TINH"} if role == "agency" else {}
            self.tokens[role] = await make_token(
                core, role, subject="zalo:fuzz" if role == "citizen" else "", **extra
            )
        import aiohttp

        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                r = await http.post(
                    f"http://127.0.0.1:{self.port}/api/v1/incidents",
                    json=report(),
                    headers=auth(self.tokens["calltaker"]),
                )
                assert r.status == 201, await r.text()
        self.ready.set()
        await self.stop.wait()
        await runner.cleanup()
        await core.close()

    def close(self) -> None:
        if self.loop and self.stop:
            self.loop.call_soon_threadsafe(self.stop.set)


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    h = Hub(settings=make_settings(tmp_path / "data", database_url))
    thread = threading.Thread(target=h.run, daemon=True)
    thread.start()
    assert h.ready.wait(60), "the hub did not start"
    if h.error:
        raise h.error
    yield h
    h.close()
    thread.join(30)


def _config(base: str, token: str | None, max_examples: int) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 20261204,
            "base-url": base,
            "headers": {"Authorization": f"Bearer {token}"} if token else {},
            "workers": 1,
            "generation": {
                "max-examples": max_examples,
                "deterministic": True,
                "no-shrink": True,
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": False},
                "coverage": {"enabled": True},
                # Values seen in answers (the incidents' ids) feed later requests' parameters.
                "fuzzing": {"enabled": True, "extra-data-sources": {"responses": True}},
                "stateful": {"enabled": True, "max-steps": 20},
            },
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            "request-timeout": 20,
            "operations": [
                {
                    # The agents' actions, three-way calls and call-back dialling go through
                    # the switchboard, which this hub does not run: their documented answer
                    # is 503 switchboard-down (checked below).
                    "include-path-regex": (
                        "^/api/v1/(agents/|calls/[^/]+/conference|callbacks/[^/]+/dial)"
                    ),
                    "include-method": "POST",
                    "checks": {
                        "not_a_server_error": {"expected-statuses": ["2XX", "3XX", "4XX", "503"]}
                    },
                }
            ],
        }
    )


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])  # the database that refuses NUL
@pytest.mark.timeout(400)
def test_defect_17_fuzzing_finds_no_server_error(hub: Hub, backend: str) -> None:
    base = f"http://127.0.0.1:{hub.port}"
    failures: list[str] = []
    requests = 0
    reached: set[str] = set()  # {ref} operations a link led to a real incident
    for role in ROLES:
        schema = schemathesis.openapi.from_url(
            f"{base}/api/v1/openapi.json", config=_config(base, hub.tokens.get(role), 8)
        )
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.FatalError):
                raise AssertionError(f"{role}: Schemathesis stopped: {event.exception!r}")
            if isinstance(event, events.NonFatalError):
                failures.append(f"{role}: {event.label}: {event.value!r}")
            if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
                requests += len(event.recorder.interactions)
                phase = getattr(event, "phase", None)
                for i in event.recorder.interactions.values():
                    status = i.response.status_code if i.response else 0
                    path = i.request.uri.split("?")[0].removeprefix(base)
                    if phase is PhaseName.STATEFUL_TESTING and 200 <= status < 300:
                        reached.add(re.sub(r"/PA-[0-9-]+|/[0-9a-f-]{36}", "/{ref}", path))
                for checks in event.recorder.checks.values():
                    failures += [
                        f"{role}: {c.name}: {c.failure_info.failure.title} "
                        f"{c.failure_info.code_sample}"
                        for c in checks
                        if c.status == Status.FAILURE and c.failure_info
                    ]
    print(f"schemathesis: {requests} requests; links reached {sorted(reached)}")
    assert not failures, "\n\n".join(failures[:20])
    assert requests > 500, f"only {requests} requests: the run tested too little"
    on_incidents = {p for p in reached if p.startswith("/api/v1/incidents/{ref}")}
    assert len(on_incidents) >= 3, f"links reached too few incident routes: {sorted(reached)}"
