"""`ioc rasa prepare|start|stop|status`, `ioc nlu parse`, and the `rasa` setup step."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ioc_core.config import Settings
from nlu.client import configured_nlu, rasa_state_dir
from nlu.server import RasaServer, RasaUnavailable, prepare
from nlu.settings import NluSettings


def _server(settings: Settings, nlu: NluSettings) -> RasaServer:
    return RasaServer(state_dir=rasa_state_dir(settings), port=nlu.port, token=nlu.token)


def actions_url(settings: Settings) -> str:
    """Where Rasa calls the custom actions: the hub itself, on loopback."""
    return f"http://127.0.0.1:{settings.http_port}/nlu/actions"


def start(settings: Settings, nlu: NluSettings) -> dict[str, Any]:
    env_dir, model_dir = prepare(settings.cache_dir, nlu.python)
    server = _server(settings, nlu)
    credentials = Path(nlu.credentials).expanduser() if nlu.credentials else None
    if credentials is not None and not credentials.is_file():
        raise RasaUnavailable(f"IOC_RASA_CREDENTIALS: no such file {credentials}")
    pid = server.start(
        env_dir=env_dir,
        model_dir=model_dir,
        actions_url=actions_url(settings),
        credentials=credentials,
    )
    return {"status": "running", "pid": pid, "url": server.url, "model": str(model_dir)}


def setup_rasa(settings: Settings) -> dict[str, Any]:
    """Build (or reuse) the env and model, and start the server. Without Python 3.10 or with
    IOC_RASA=off the hub still runs: the bots answer menu-driven, the safety net stays."""
    nlu = NluSettings.from_env()
    if nlu.mode == "off":
        return {"status": "off"}
    if nlu.url:
        return {"status": "external", "url": nlu.url}
    try:
        return start(settings, nlu)
    except (RasaUnavailable, RuntimeError, TimeoutError, OSError) as exc:
        print(f"ioc setup rasa: {exc}; the bots run menu-driven", file=sys.stderr)
        return {"status": "unavailable", "reason": str(exc)}


def _rasa(args: argparse.Namespace) -> int:
    settings, nlu = Settings.from_env(), NluSettings.from_env()
    server = _server(settings, nlu)
    try:
        if args.action == "prepare":
            env_dir, model_dir = prepare(settings.cache_dir, nlu.python)
            print(json.dumps({"env": str(env_dir), "model": str(model_dir)}))
        elif args.action == "start":
            print(json.dumps(start(settings, nlu)))
        elif args.action == "stop":
            server.stop()
        else:
            st = server.status()
            print(
                json.dumps({"running": st.running, "pid": st.pid, "url": st.url, "model": st.model})
            )
            return 0 if st.running else 3
    except (RasaUnavailable, subprocess.CalledProcessError) as exc:
        print(f"ioc rasa: {exc}", file=sys.stderr)
        return 2
    return 0


async def _parse_lines(settings: Settings) -> int:
    nlu = configured_nlu(settings)
    try:
        for line in sys.stdin:
            text = line.strip()
            if not text:
                continue
            u = await nlu.understand(text)
            out: dict[str, Any] = {
                "text": u.text,
                "intent": u.intent,
                "confidence": round(u.confidence, 4),
            }
            out |= {"entities": u.entities, "source": u.source, "emergency": u.emergency}
            print(json.dumps(out, ensure_ascii=False), flush=True)
    finally:
        await nlu.close()
    return 0


def _nlu(args: argparse.Namespace) -> int:
    return asyncio.run(_parse_lines(Settings.from_env()))


def register(sub: Any) -> None:
    rasa = sub.add_parser("rasa", help="the project's own Rasa server")
    rasa.add_argument("action", choices=["prepare", "start", "stop", "status"])
    rasa.set_defaults(fn=_rasa)
    nlu = sub.add_parser("nlu", help="natural language understanding")
    nlu.add_argument(
        "action", choices=["parse"], help="parse: lines on stdin -> one JSON object per line"
    )
    nlu.set_defaults(fn=_nlu)
