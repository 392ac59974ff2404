"""`python -m bench.bots`: how fast the Telegram bot answers many citizens at once.

The hub runs as a subprocess (`ioc run`, one worker); Telegram is the local
stand-in from tests/fakes, which records when each reply arrives; the project's Rasa serves
the NLU. CHATS citizens are in conversation at once, each writing ROUNDS messages with 5-10 s
of reading and typing between them (random, starts spread over the first pause): about 13
turns a second at 100 chats, under Telegram's 30 messages a second per bot, which the sender
keeps to (a burst of 100 simultaneous first messages would, by that limit alone, wait up to
3 s). Latency is from the start of the webhook POST to the moment the first reply of that turn
reaches the cloud: what the citizen feels; the webhook's own answer time is shown too.

Five runs, same load: the hub with the NLU (Rasa and the pre-check) on PostgreSQL (as in
production) and on embedded SQLite; where the time goes: the hub without Rasa (IOC_RASA=off,
the pre-check only) and Rasa's /model/parse alone; and the bare baseline: a webhook that
sends its reply at once with the same library (python-telegram-bot) — no engine, store,
queue or NLU. Figures only; nothing is asserted. Target (issue 5): p95 <= 150 ms at 100
chats with the NLU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from telegram import Bot, Update

from bench import pgdb
from bench import server as srv
from bench.stats import percentile
from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from nlu.server import RasaServer, ensure_env, ensure_model, find_python
from nlu.settings import NluSettings
from tests.fakes.telegram_cloud import TelegramCloud, update_factory

SECRET = "bench-secret"
MESSAGES = (
    "xin chào",
    "cho hỏi hồ sơ PA-2026-000001 xử lý tới đâu rồi",
    "tôi muốn hỏi thủ tục làm căn cước",
    "cam on nhieu nha",
    "tạm biệt",
)


THINK_S = [5.0, 10.0]


Turn = Callable[[int, int, float], Awaitable[float]]  # (chat, round, began) -> latency ms


async def citizen(chat: int, rounds: int, turn: Turn) -> list[float]:
    """One citizen: `rounds` turns with 5-10 s of reading and typing between them."""
    out = []
    rng = random.Random(chat)
    await asyncio.sleep(rng.uniform(0, THINK_S[1]))
    for i in range(rounds):
        began = time.monotonic()
        out.append(await turn(chat, i, began))
        await asyncio.sleep(
            max(0.0, began + rng.uniform(THINK_S[0], THINK_S[1]) - time.monotonic())
        )
    return out


def webhook_turn(
    http: aiohttp.ClientSession, url: str, cloud: TelegramCloud, handler_ms: list[float]
) -> Turn:
    """A Telegram update posted; latency until the turn's first reply reaches the cloud."""
    updates = update_factory()

    async def turn(chat: int, i: int, began: float) -> float:
        update = updates.text(chat, MESSAGES[i % len(MESSAGES)])
        update["update_id"] = chat * 1000 + i  # unique across citizens
        async with http.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
        ) as r:
            if r.status != 200:
                raise RuntimeError(f"webhook answered {r.status}: {await r.text()}")
        handler_ms.append((time.monotonic() - began) * 1000)
        return (await cloud.delivered_after(chat, began) - began) * 1000

    return turn


def parse_turn(http: aiohttp.ClientSession, rasa: RasaServer, handler_ms: list[float]) -> Turn:
    """Rasa's /model/parse alone, asked as the hub asks it: its share of a turn."""

    async def turn(chat: int, i: int, began: float) -> float:
        async with http.post(
            f"{rasa.url}/model/parse",
            json={"text": MESSAGES[i % len(MESSAGES)]},
            params={"token": rasa.token},
        ) as r:
            if r.status != 200:
                raise RuntimeError(f"rasa answered {r.status}: {await r.text()}")
            await r.read()
        handler_ms.append((time.monotonic() - began) * 1000)
        return handler_ms[-1]

    return turn


@contextlib.asynccontextmanager
async def bare_webhook(cloud: TelegramCloud) -> AsyncIterator[str]:
    """The baseline: parse the update, send one reply through PTB, answer 200."""
    bot = Bot(cloud.token, base_url=f"{cloud.base}/bot")
    await bot.initialize()

    async def hook(request: web.Request) -> web.Response:
        update = Update.de_json(await request.json(), bot)
        assert update.message is not None
        await bot.send_message(chat_id=update.message.chat.id, text="ok")
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = srv.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()
        await bot.shutdown()


@contextlib.asynccontextmanager
async def hub_webhook(env: dict[str, str], cloud: TelegramCloud, log: Path) -> AsyncIterator[str]:
    env = {
        **env,
        "IOC_TELEGRAM_TOKEN": cloud.token,
        "IOC_TELEGRAM_WEBHOOK_SECRET": SECRET,
        "IOC_TELEGRAM_API_BASE": cloud.base,
    }
    with srv.running(env, workers=1, log=log) as server:
        await srv.wait_healthy(server)
        yield server.base_url + "/bots/telegram/webhook"


async def run(
    kind: str,
    chats: int,
    rounds: int,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    rasa: RasaServer | None = None,
    postgres: bool = False,
) -> dict[str, Any]:
    """kind: hub (the hub's webhook, env), bare (the baseline webhook) or parse (Rasa's
    /model/parse alone, under the same arrivals)."""
    cloud = await TelegramCloud().start()
    handler_ms: list[float] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=chats))
            )
            if kind == "parse":
                assert rasa is not None
                turn = parse_turn(http, rasa, handler_ms)
            elif kind == "bare":
                url = await stack.enter_async_context(bare_webhook(cloud))
                turn = webhook_turn(http, url, cloud, handler_ms)
            else:
                assert env is not None
                if postgres:
                    name = await stack.enter_async_context(pgdb.fresh_database())
                    env = {**env, "IOC_DATABASE_URL": pgdb.sqlalchemy_url(name)}
                url = await stack.enter_async_context(hub_webhook(env, cloud, log))
                turn = webhook_turn(http, url, cloud, handler_ms)
            started = time.monotonic()
            results = await asyncio.gather(
                *(citizen(900_000 + c, rounds, turn) for c in range(chats))
            )
            wall = time.monotonic() - started
    finally:
        await cloud.close()
    samples = sorted(x for r in results for x in r)
    return {
        "chats": chats,
        "turns": len(samples),
        "wall_s": wall,
        "p50_ms": percentile(samples, 50),
        "p95_ms": percentile(samples, 95),
        "p99_ms": percentile(samples, 99),
        "max_ms": samples[-1],
        "webhook_p95_ms": percentile(sorted(handler_ms), 95),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--chats", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--think", type=float, nargs=2, default=THINK_S, help="seconds between a chat's messages"
    )
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    THINK_S[:] = args.think
    settings = Settings.from_env()
    cache = ArtifactCache(settings.cache_dir)
    env_dir = ensure_env(cache, find_python(NluSettings.from_env().python))
    model_dir = ensure_model(cache, env_dir)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-bots-") as tmp:
        rasa = RasaServer(state_dir=Path(tmp) / "rasa", port=srv.free_port())
        rasa.start(env_dir=env_dir, model_dir=model_dir, actions_url="http://127.0.0.1:9/")
        try:
            nlu = {"IOC_RASA_URL": rasa.url, "IOC_RASA_TOKEN": rasa.token}
            plan: list[tuple[str, str, dict[str, str] | None, bool]] = [
                ("hub+NLU, PG", "hub", nlu, True),
                ("hub+NLU, SQLite", "hub", nlu, False),
                # Where the time goes: the hub without Rasa (the pre-check only), and Rasa
                # without the hub, under the same arrivals.
                ("hub alone, PG", "hub", {"IOC_RASA": "off"}, True),
                ("Rasa parse alone", "parse", None, False),
                ("bare baseline", "bare", None, False),
            ]
            for name, kind, extra, postgres in plan:
                env = None
                if extra is not None:
                    folder = str(Path(tmp) / f"hub{len(rows)}")
                    env = srv.server_env(
                        {"IOC_DATA_DIR": folder, "IOC_SWITCHBOARD": "off", **extra}
                    )
                figures = asyncio.run(
                    run(
                        kind,
                        args.chats,
                        args.rounds,
                        Path(tmp) / "hub.log",
                        env=env,
                        rasa=rasa,
                        postgres=postgres,
                    )
                )
                rows.append({"run": name, **figures})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            rasa.stop()
    print(
        f"{'run':<17} {'chats':>5} {'turns':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} "
        f"{'webhook p95':>12}"
    )
    for r in rows:
        print(
            f"{r['run']:<17} {r['chats']:>5} {r['turns']:>5} {r['p50_ms']:7.1f}ms "
            f"{r['p95_ms']:7.1f}ms {r['p99_ms']:7.1f}ms {r['max_ms']:7.1f}ms "
            f"{r['webhook_p95_ms']:10.1f}ms"
        )
    print("webhook POST -> first reply at the Telegram stand-in (Rasa alone: its answer);")
    print("target p95 <= 150 ms with NLU")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
