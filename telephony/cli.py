"""`ioc asterisk ...` and the `asterisk` setup step, plugged into the `ioc` command through
entry points (pyproject.toml), so the core never imports telephony."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from telephony.asterisk.chroot import ChrootUnavailable, ensure_chroot
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render, write
from telephony.asterisk.process import AsteriskProcess
from telephony.asterisk.webrtc import copy_certificates
from telephony.ivr.prompts import PromptToolMissing, ensure_prompts
from telephony.settings import variables


def _process(settings: Settings) -> AsteriskProcess:
    root = ensure_chroot(ArtifactCache(settings.cache_dir))
    return AsteriskProcess(root=root, state_dir=settings.data_dir / "asterisk")


def _config(state_dir: Path) -> dict[str, str]:
    """The rendered /etc/asterisk for the instance whose state (and secrets) live there: the
    passwords not given in the environment are made here, once."""
    ensure_secrets(state_dir)
    return render(AsteriskSettings.from_env(state_dir).placeholders())


def setup_asterisk(settings: Settings) -> dict[str, Any]:
    """Build (or reuse) the chroot, make the prompts and start Asterisk. Missing prerequisites
    are reported, not fatal: the rest of the hub runs without the switchboard."""
    try:
        proc = _process(settings)
    except ChrootUnavailable as exc:
        print(f"ioc setup asterisk: {exc}; the hub runs without the switchboard", file=sys.stderr)
        return {"status": "unavailable", "reason": str(exc)}
    prompts = _prompts(proc)
    try:
        pid = proc.start(_config(proc.state_dir))
    except (RuntimeError, TimeoutError, OSError) as exc:
        # E.g. another SIP server holds port 5060: say so, and let the hub run without it.
        print(f"ioc setup asterisk: Asterisk did not start: {exc}", file=sys.stderr)
        return {"status": "failed", "reason": str(exc), "prompts": prompts}
    return {"status": "running", "pid": pid, "root": str(proc.root), "prompts": prompts}


def _prompts(proc: AsteriskProcess) -> dict[str, Any]:
    """The voice menu's prompts into the instance's sounds folder (bound into the chroot).
    IOC_PROMPTS_DIR: recorded prompts (<lang>/<name>.wav) that replace the synthetic ones.
    Without espeak-ng/sox the switchboard still starts: a silent menu times out into the
    queue, which beats no 113/114/115 at all."""
    recorded = variables()("IOC_PROMPTS_DIR")
    try:
        made = ensure_prompts(proc.state_dir / "sounds", Path(recorded) if recorded else None)
        return {k: len(v) for k, v in made.items()}
    except PromptToolMissing as exc:
        print(f"ioc setup asterisk: {exc}; the voice menu will be silent", file=sys.stderr)
        return {"error": str(exc)}


def _cmd(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.action == "render":
        # For the production container (docker/asterisk): no chroot needed.
        if len(args.command) != 1:
            print("usage: ioc asterisk render DIR", file=sys.stderr)
            return 2
        target, state_dir = Path(args.command[0]), settings.data_dir / "asterisk"
        write(target, _config(state_dir))
        copy_certificates(state_dir, target)  # /etc/asterisk/keys in the container
        return 0
    proc = _process(settings)
    if args.action == "prepare":
        # Build what a start needs (chroot, prompts) without starting: `make test` warms the
        # cache this way, and its tests start their own instances.
        print(json.dumps({"root": str(proc.root), "prompts": _prompts(proc)}))
    elif args.action == "start":
        prompts = _prompts(proc)
        print(json.dumps({"pid": proc.start(_config(proc.state_dir)), "prompts": prompts}))
    elif args.action == "stop":
        proc.stop()
    elif args.action == "status":
        st = proc.status()
        print(json.dumps({"running": st.running, "pid": st.pid, "version": st.version}))
        return 0 if st.running else 3
    else:
        print(proc.cli(" ".join(args.command)), end="")
    return 0


def register(sub: Any) -> None:
    ast = sub.add_parser("asterisk", help="the project's own Asterisk (start/stop/status/cli)")
    ast.add_argument("action", choices=["prepare", "start", "stop", "status", "cli", "render"])
    ast.add_argument(
        "command", nargs="*", help="cli: an Asterisk CLI command; render: the folder to write"
    )
    ast.set_defaults(fn=_cmd)
