"""The project's own Rasa, for real: started by `ioc rasa start`, asked through `ioc nlu
parse` (the bots' path), Rasa's own tests on the project, and the safety net without it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ioc_core.config import Settings
from nlu.server import PROJECT, prepare, rasa_env
from tests.integration.conftest import IOC

pytestmark = pytest.mark.rasa


def parse(env: dict[str, str], *lines: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [IOC, "nlu", "parse"],
        input="\n".join(lines) + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_parse_through_rasa(rasa: dict[str, str]) -> None:
    out = parse(
        rasa,
        "Nhà hàng xóm đang cháy, khói nhiều lắm",
        "nha hang xom dang chay khoi nhieu lam",
        "cho hỏi hồ sơ pa-2026-000123 tới đâu rồi",
        "tui chấm 4 sao nhen",
        "",
        "xin chào",
    )
    assert out[0]["text"] == "Nhà hàng xóm đang cháy, khói nhiều lắm"
    assert len(out) == 5  # blank lines are skipped
    assert set(out[0]) >= {"text", "intent", "confidence", "entities"}
    assert [o["intent"] for o in out] == [
        "emergency_fire",
        "emergency_fire",
        "check_status",
        "rate_service",
        "greet",
    ]
    assert all(o["source"] in ("rasa", "safety") for o in out)
    assert {"entity": "report_code", "value": "PA-2026-000123", "start": 14, "end": 28} in out[2][
        "entities"
    ]
    assert any(e["entity"] == "rating" and e["value"] == "4" for e in out[3]["entities"])
    assert 0 < out[4]["confidence"] <= 1


def test_status_names_the_running_server(rasa: dict[str, str]) -> None:
    done = subprocess.run([IOC, "rasa", "status"], env=rasa, capture_output=True, text=True)
    status = json.loads(done.stdout)
    assert done.returncode == 0
    assert status["running"] and status["pid"] == int(rasa["pid"])
    assert status["model"], "the model is loaded"
    # Loopback only, and the API wants the token.
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rasa["url"] + "/status", timeout=5)
    assert refused.value.code == 401


def test_without_rasa_the_safety_net_still_answers(tmp_path: Path) -> None:
    env = {**os.environ, "IOC_DATA_DIR": str(tmp_path), "IOC_RASA_URL": "http://127.0.0.1:9"}
    started = time.monotonic()
    out = parse(env, "cứu với có cướp", "gọi 115 gấp", "đèn đường hỏng", "chay nha")
    assert [(o["intent"], o["source"]) for o in out] == [
        ("emergency_police", "safety"),
        ("emergency_medical", "safety"),
        (None, "unavailable"),
        ("emergency_fire", "safety"),
    ]
    # One refused connection, then Rasa is left alone: no timeout per line.
    assert time.monotonic() - started < 30


def test_rasa_own_tests_pass(rasa: dict[str, str], tmp_path: Path) -> None:
    """`rasa data validate` and `rasa test` (the project's test stories) on the same model."""
    env_dir, model_dir = prepare(Settings.from_env().cache_dir)
    python = str(env_dir / "bin" / "python")
    validate = subprocess.run(
        # Errors only: Rasa 3.6 also warns that the form's utter_ask_* are "unused".
        [python, "-m", "rasa", "data", "validate"],
        cwd=model_dir,
        env=rasa_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validate.returncode == 0, validate.stdout[-3000:] + validate.stderr[-3000:]
    out = tmp_path / "results"
    tested = subprocess.run(
        [
            python,
            "-m",
            "rasa",
            "test",
            "core",
            "--stories",
            str(PROJECT / "tests"),
            "--model",
            str(model_dir / "models" / "ioc.tar.gz"),
            "--out",
            str(out),
        ],
        cwd=model_dir,
        env=rasa_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    failed = (out / "failed_test_stories.yml").read_text()
    assert "None of the test stories failed" in failed, failed
