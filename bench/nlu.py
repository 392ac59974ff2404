"""`python -m bench.nlu`: how well and how fast the hub understands Vietnamese chat.

For each candidate pipeline (bench/nlu_pipelines/*.yml, and the project's own config.yml) it
trains an NLU model on nlu/rasa/data, starts a Rasa server on 127.0.0.1, and sends it every
sentence of the held-out set (nlu/rasa/heldout/, never used for training) through the same
path the bots use (`nlu.client.Nlu`: the emergency pre-check, then /model/parse). It prints:

- intent accuracy, overall and split by how the text was typed (with diacritics / without);
- emergency recall: emergency sentences the model alone sent to the right number, and the
  model with the safety net; and the safety net's cost: non-emergency sentences it flagged;
- entity F1 (entity and value, diacritics ignored);
- training time, start-up time, server memory, and /model/parse latency p50/p95.

Figures only; nothing is asserted. About 1.5 minutes per pipeline on 2 cores (`--diet` adds
Rasa's transformer, about 3 more); `--only NAME` runs one; `--json PATH` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.stats import percentile
from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from nlu.client import Nlu
from nlu.examples import Example, load_examples
from nlu.safety import NUMBER_OF
from nlu.server import PROJECT, RasaServer, copy_project, ensure_env, find_python, train
from nlu.settings import NluSettings
from nlu.text.vietnamese import fold, has_marks

PIPELINES = Path(__file__).parent / "nlu_pipelines"
HELDOUT = PROJECT / "heldout" / "heldout.yml"
LATENCY_ROUNDS = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def score(examples: list[Example], answers: list[Any]) -> dict[str, Any]:
    """Accuracy, emergency recall and entity F1 of `answers` (Understanding) on `examples`."""
    hits = Counter[str]()
    totals = Counter[str]()
    tp = fp = fn = 0
    for ex, u in zip(examples, answers, strict=True):
        form = "marked" if has_marks(ex.text) else "bare"
        for key in ("all", form):
            totals[key] += 1
            hits[key] += u.model_intent == ex.intent
        want = NUMBER_OF.get(ex.intent)
        if want:
            totals["emergency"] += 1
            hits["emergency_model"] += NUMBER_OF.get(u.model_intent or "") == want
            hits["emergency_net"] += u.emergency == want
        else:
            totals["other"] += 1
            hits["false_alarm"] += u.emergency is not None
        expected = {(e["entity"], fold(str(e["value"]))) for e in ex.entities}
        found = {(e["entity"], fold(str(e["value"]))) for e in u.entities}
        tp += len(expected & found)
        fp += len(found - expected)
        fn += len(expected - found)

    def share(hit: str, total: str) -> float:
        return hits[hit] / totals[total] if totals[total] else float("nan")

    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {
        "sentences": totals["all"],
        "accuracy": share("all", "all"),
        "accuracy_marked": share("marked", "marked"),
        "accuracy_bare": share("bare", "bare"),
        "emergency_recall_model": share("emergency_model", "emergency"),
        "emergency_recall_with_net": share("emergency_net", "emergency"),
        "false_alarms": share("false_alarm", "other"),
        "entity_f1": f1,
    }


class Judged:
    """An Understanding together with what the model alone said."""

    def __init__(self, u: Any, model_intent: str | None) -> None:
        self.model_intent = model_intent
        self.emergency = u.emergency
        self.entities = u.entities


async def evaluate(url: str, token: str, examples: list[Example]) -> dict[str, Any]:
    nlu = Nlu(url=url, token=token, timeout_ms=10_000, retry_s=0)
    judged, latencies = [], []
    try:
        for ex in examples:
            raw = await nlu._parse(ex.text)  # the model's own answer, before the safety net
            u = await nlu.understand(ex.text)
            model = (raw or {}).get("model_intent") or (raw or {}).get("intent") or {}
            judged.append(Judged(u, model.get("name")))
        for i in range(LATENCY_ROUNDS):
            text = examples[i % len(examples)].text
            t0 = time.perf_counter()
            await nlu._parse(text)
            latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        await nlu.close()
    latencies.sort()
    return score(examples, judged) | {
        "parse_p50_ms": percentile(latencies, 50),
        "parse_p95_ms": percentile(latencies, 95),
    }


def run_pipeline(name: str, config: Path, env_dir: Path, examples: list[Example]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-nlu-{name}-") as tmp:
        work = copy_project(Path(tmp) / "project", config=config)
        t0 = time.monotonic()
        train(env_dir, work, nlu_only=True)
        train_s = time.monotonic() - t0
        server = RasaServer(state_dir=Path(tmp) / "state", port=_free_port())
        t0 = time.monotonic()
        pid = server.start(env_dir=env_dir, model_dir=work, actions_url="http://127.0.0.1:9/")
        start_s = time.monotonic() - t0
        try:
            figures = asyncio.run(evaluate(server.url, server.token, examples))
            figures["rss_mb"] = _rss_mb(pid)
        finally:
            server.stop()
    return {"pipeline": name, "train_s": train_s, "start_s": start_s, **figures}


def _pct(x: float) -> str:
    return "   –" if x != x else f"{100 * x:3.0f}%"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'pipeline':<18} {'acc':>5} {'marked':>6} {'bare':>5} {'emerg':>6} {'+net':>5} "
        f"{'alarm':>6} {'ent F1':>6} {'train':>6} {'start':>6} {'RSS':>6} {'p50':>6} {'p95':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['pipeline']:<18} {_pct(r['accuracy']):>5} {_pct(r['accuracy_marked']):>6} "
            f"{_pct(r['accuracy_bare']):>5} {_pct(r['emergency_recall_model']):>6} "
            f"{_pct(r['emergency_recall_with_net']):>5} {_pct(r['false_alarms']):>6} "
            f"{_pct(r['entity_f1']):>6} {r['train_s']:5.0f}s {r['start_s']:5.0f}s "
            f"{r['rss_mb']:4.0f}MB {r['parse_p50_ms']:4.1f}ms {r['parse_p95_ms']:4.1f}ms"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", help="one pipeline by name (e.g. project, baseline)")
    p.add_argument("--diet", action="store_true", help="also Rasa's DIET classifier (slow)")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    env_dir = ensure_env(
        ArtifactCache(settings.cache_dir), find_python(NluSettings.from_env().python)
    )
    examples = load_examples(HELDOUT)
    candidates = {c.stem: c for c in sorted(PIPELINES.glob("*.yml"))}
    if not args.diet:
        candidates.pop("diet", None)
    candidates["project"] = PROJECT / "config.yml"
    if args.only:
        candidates = {args.only: candidates[args.only]}
    print(
        f"held-out set: {len(examples)} sentences, "
        f"{sum(has_marks(e.text) for e in examples)} with diacritics; "
        f"pipelines: {', '.join(candidates)}",
        flush=True,
    )
    rows = []
    for name, config in candidates.items():
        rows.append(run_pipeline(name, config, env_dir, examples))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print_table(rows)
    print(
        "acc: intent accuracy (model alone); marked/bare: typed with/without diacritics; "
        "emerg: emergency sentences sent to the right number by the model, +net: with the "
        "safety net; alarm: other sentences the net flagged; p50/p95: /model/parse"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
