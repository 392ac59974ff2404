"""Asterisk configuration as data: `dialplans/etc/*.conf` with `${NAME}` placeholders,
rendered from settings into the instance's state folder and bound over the chroot's
/etc/asterisk (the cached chroot itself stays pristine)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans" / "etc"


@dataclass(frozen=True, kw_only=True)
class AsteriskSettings:
    http_port: int = 8088
    ami_port: int = 5038
    sip_port: int = 5060
    rtp_start: int = 10000
    rtp_end: int = 20000
    ari_user: str = "ioc"
    ari_password: str = ""
    ami_user: str = "ioc"
    ami_password: str = ""

    @classmethod
    def from_env(cls, state_dir: Path, env: Mapping[str, str] | None = None) -> AsteriskSettings:
        """IOC_ASTERISK_* from the environment; passwords not given there are generated once
        and kept (mode 0600) in the state folder, never in the repository."""
        env = os.environ if env is None else env
        secrets_file = state_dir / "secrets.json"
        kept: dict[str, str] = {}
        if secrets_file.exists():
            kept = json.loads(secrets_file.read_text())
        for name in ("ari_password", "ami_password"):
            kept.setdefault(name, secrets.token_urlsafe(18))
        state_dir.mkdir(parents=True, exist_ok=True)
        secrets_file.write_text(json.dumps(kept))
        secrets_file.chmod(0o600)

        def num(name: str, default: int) -> int:
            return int(env.get(f"IOC_ASTERISK_{name}", default))

        return cls(
            http_port=num("HTTP_PORT", 8088),
            ami_port=num("AMI_PORT", 5038),
            sip_port=num("SIP_PORT", 5060),
            rtp_start=num("RTP_START", 10000),
            rtp_end=num("RTP_END", 20000),
            ari_password=env.get("IOC_ARI_PASSWORD") or kept["ari_password"],
            ami_password=env.get("IOC_AMI_PASSWORD") or kept["ami_password"],
        )

    def placeholders(self) -> dict[str, str]:
        return {k.upper(): str(v) for k, v in asdict(self).items()}


def render(values: Mapping[str, str], source: Path = DIALPLANS) -> dict[str, str]:
    """Every file of `source`, placeholders filled; a missing value is an error, not blank."""
    return {
        p.name: Template(p.read_text()).substitute(values) for p in sorted(source.glob("*.conf"))
    }


def write(target: Path, files: Mapping[str, str]) -> None:
    """Replace the rendered configuration in `target` (files only we wrote)."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.conf"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (target / name).write_text(text)
