"""Asterisk configuration as data: `dialplans/etc/*.conf` with `@{NAME}` placeholders,
rendered from settings into the instance's state folder and bound over the chroot's
/etc/asterisk (the cached chroot itself stays pristine)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template

DEFAULT_AGENTS = "1001,1002,1003,1004,1005"  # five call-takers per shift, as in the seed
DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans" / "etc"


_PLACEHOLDER = (
    r"@(?:(?P<escaped>@@)|\{(?P<braced>[A-Z][A-Z0-9_]*)\}|(?P<named>(?!))|(?P<invalid>(?!)))"
)


class _Template(Template):
    """`@{NAME}` (upper case, braces required): Asterisk's own `${VAR}` and `user@host`
    pass through untouched."""

    delimiter = "@"
    # A str that Template.__init_subclass__ compiles (typeshed declares the compiled type).
    pattern = _PLACEHOLDER  # type: ignore[assignment]


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
    agi_port: int = 4573
    audiosocket_port: int = 9092
    live_max: int = 2  # calls transcribed live at once
    announce_s: int = 45  # waiting callers hear their place in line this often (0: never)
    trunk_ips: tuple[str, ...] = ("127.0.0.1",)
    trunk_contact: str = "sip:127.0.0.1:5070"
    record_calls: bool = True
    hotline_max_wait_s: int = 300  # then the 1022 caller leaves a message (overflow)
    agents: Mapping[str, str] = field(default_factory=dict)  # extension -> SIP password

    @classmethod
    def from_env(cls, state_dir: Path, env: Mapping[str, str] | None = None) -> AsteriskSettings:
        """IOC_ASTERISK_* from the environment; passwords not given there are generated once
        and kept (mode 0600) in the state folder, never in the repository."""
        env = os.environ if env is None else env
        secrets_file = state_dir / "secrets.json"
        kept: dict[str, str] = {}
        if secrets_file.exists():
            kept = json.loads(secrets_file.read_text())
        agents = [
            a.strip()
            for a in env.get("IOC_ASTERISK_AGENTS", DEFAULT_AGENTS).split(",")
            if a.strip()
        ]
        for name in ("ari_password", "ami_password", *(f"agent_{a}" for a in agents)):
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
            agi_port=num("AGI_PORT", 4573),
            audiosocket_port=num("AUDIOSOCKET_PORT", 9092),
            live_max=int(env.get("IOC_STT_LIVE_MAX", 2)),
            announce_s=int(env.get("IOC_QUEUE_ANNOUNCE_S", 45)),
            hotline_max_wait_s=int(env.get("IOC_HOTLINE_MAX_WAIT_S", 300)),
            trunk_contact=env.get("IOC_ASTERISK_TRUNK_CONTACT", "sip:127.0.0.1:5070"),
            record_calls=env.get("IOC_RECORD_CALLS", "1").lower()
            not in ("0", "false", "no", "off"),
            ari_password=env.get("IOC_ARI_PASSWORD") or kept["ari_password"],
            ami_password=env.get("IOC_AMI_PASSWORD") or kept["ami_password"],
            trunk_ips=tuple(
                ip.strip()
                for ip in env.get("IOC_ASTERISK_TRUNK_IPS", "127.0.0.1").split(",")
                if ip.strip()
            ),
            agents={a: kept[f"agent_{a}"] for a in agents},
        )

    def placeholders(self) -> dict[str, str]:
        values = {
            k.upper(): str(v)
            for k, v in asdict(self).items()
            if k not in ("trunk_ips", "agents", "record_calls")
        }
        values["MONITOR_FORMAT"] = "wav" if self.record_calls else ""
        values["TRUNK_IPS"] = ",".join(self.trunk_ips)
        values["AGENT_SECTIONS"] = "".join(_agent(ext, pw) for ext, pw in self.agents.items())
        return values


def _agent(extension: str, password: str) -> str:
    """A call-taker's phone: registers with a password, one contact, internal calls only."""
    return f"""
[{extension}]
type = endpoint
context = agents
disallow = all
allow = ulaw,alaw
auth = {extension}
aors = {extension}
direct_media = no
rtp_symmetric = yes
callerid = Agent {extension} <{extension}>

[{extension}]
type = auth
auth_type = userpass
username = {extension}
password = {password}

[{extension}]
type = aor
max_contacts = 1
remove_existing = yes
"""


def render(values: Mapping[str, str], source: Path = DIALPLANS) -> dict[str, str]:
    """Every file of `source`, placeholders filled; a missing value is an error, not blank."""
    return {
        p.name: _Template(p.read_text()).substitute(values) for p in sorted(source.glob("*.conf"))
    }


def write(target: Path, files: Mapping[str, str]) -> None:
    """Replace the rendered configuration in `target` (files only we wrote)."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.conf"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (target / name).write_text(text)
