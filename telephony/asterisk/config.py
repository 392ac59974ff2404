"""Asterisk configuration as data: `dialplans/etc/*.conf` with `@{NAME}` placeholders,
rendered from settings into the instance's state folder and bound over the chroot's
/etc/asterisk (the cached chroot itself stays pristine)."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template

from ioc_core.config import ConfigError, listed
from telephony.asterisk.webrtc import (
    DTLS,
    IN_ASTERISK,
    WSS,
    ensure_certificates,
    host_ipv4_addresses,
    ice_host_candidates,
)
from telephony.settings import SERVICES_FILE, variables

SECRETS = "secrets.json"
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
    # Browser (WebRTC) agents, the console's softphones: extension -> SIP password.
    browser_agents: Mapping[str, str] = field(default_factory=dict)
    wss_port: int = 8089
    wss_bind: str = "127.0.0.1"
    # Browsers on this machine: loopback media, and the host's addresses mapped to 127.0.0.1
    # as ICE host candidates (`ice_addresses`, found at start).
    browser_local: bool = True
    ice_addresses: tuple[str, ...] = ()
    dialout: Dialout = field(default_factory=lambda: Dialout())

    @classmethod
    def from_env(cls, state_dir: Path, env: Mapping[str, str] | None = None) -> AsteriskSettings:
        """IOC_ASTERISK_* and the others from `env` (default: the process environment), with
        the passwords not given there from the state folder's secrets, once `ensure_secrets`
        has made them (before that they are blank, and `placeholders` refuses to render)."""
        g = variables(env)
        secrets_file = state_dir / SECRETS
        kept: dict[str, str] = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}

        def port(name: str) -> int:
            value: int = g(f"IOC_ASTERISK_{name}", 1)
            return value

        return cls(
            http_port=port("HTTP_PORT"),
            ami_port=port("AMI_PORT"),
            sip_port=port("SIP_PORT"),
            rtp_start=port("RTP_START"),
            rtp_end=port("RTP_END"),
            agi_port=port("AGI_PORT"),
            audiosocket_port=port("AUDIOSOCKET_PORT"),
            live_max=g("IOC_STT_LIVE_MAX", 0),
            announce_s=g("IOC_QUEUE_ANNOUNCE_S", 0),
            hotline_max_wait_s=g("IOC_HOTLINE_MAX_WAIT_S", 0),
            trunk_contact=g("IOC_ASTERISK_TRUNK_CONTACT"),
            record_calls=g("IOC_RECORD_CALLS"),
            ari_password=g("IOC_ARI_PASSWORD") or kept.get("ari_password", ""),
            ami_password=g("IOC_AMI_PASSWORD") or kept.get("ami_password", ""),
            trunk_ips=listed(g("IOC_ASTERISK_TRUNK_IPS")),
            agents={a: kept.get(f"agent_{a}", "") for a in listed(g("IOC_ASTERISK_AGENTS"))},
            browser_agents={
                a: kept.get(f"agent_{a}", "") for a in listed(g("IOC_ASTERISK_BROWSER_AGENTS"))
            },
            wss_port=port("WSS_PORT"),
            wss_bind=g("IOC_ASTERISK_WSS_BIND"),
            browser_local=g("IOC_ASTERISK_BROWSER_LOCAL"),
            ice_addresses=tuple(host_ipv4_addresses()) if g("IOC_ASTERISK_BROWSER_LOCAL") else (),
            dialout=Dialout.load(Path(g("IOC_SERVICES_FILE") or SERVICES_FILE)),
        )

    def all_agents(self) -> dict[str, str]:
        """Desk phones and browser softphones alike: extension -> password."""
        return {**self.agents, **self.browser_agents}

    def placeholders(self) -> dict[str, str]:
        blank = [n for n in ("ari_password", "ami_password") if not getattr(self, n)]
        blank += [f"agent {a}" for a, pw in self.all_agents().items() if not pw]
        if both := sorted(set(self.agents) & set(self.browser_agents)):
            raise ConfigError(
                f"extensions {both} are in both IOC_ASTERISK_AGENTS and "
                "IOC_ASTERISK_BROWSER_AGENTS: a desk phone or a browser, not both"
            )
        if blank:
            # Never an Asterisk that takes an empty password.
            raise ConfigError(
                f"no password for {', '.join(blank)}: run `ioc setup asterisk` (it keeps them "
                f"in IOC_DATA_DIR/asterisk/{SECRETS})"
            )
        values = {
            k.upper(): str(v)
            for k, v in asdict(self).items()
            if k
            not in (
                "trunk_ips", "agents", "record_calls", "browser_agents", "browser_local",
                "ice_addresses", "dialout",
            )
        }  # fmt: skip
        values["MONITOR_FORMAT"] = "wav" if self.record_calls else ""
        values["TRUNK_IPS"] = ",".join(self.trunk_ips)
        values["AGENT_SECTIONS"] = "".join(_agent(ext, pw) for ext, pw in self.agents.items())
        values["AGENT_SECTIONS"] += "".join(
            _browser_agent(ext, pw) for ext, pw in self.browser_agents.items()
        )
        values["KEYS"] = IN_ASTERISK
        values["DTLS_CERT"] = f"{IN_ASTERISK}/{DTLS}.crt"
        values["DTLS_KEY"] = f"{IN_ASTERISK}/{DTLS}.key"
        values["WSS_CERT"] = f"{IN_ASTERISK}/{WSS}.crt"
        values["WSS_KEY"] = f"{IN_ASTERISK}/{WSS}.key"
        values["BROWSER_MEDIA"] = (
            "media_address = 127.0.0.1\nbind_rtp_to_media_address = yes\n"
            if self.browser_local
            else ""
        )
        values["ICE_HOST_CANDIDATES"] = ice_host_candidates(self.ice_addresses)
        values["AGENTS_DIALPLAN"] = self.dialout.dialplan(self.all_agents())
        values["DIALOUT_CALLER_ID"] = self.dialout.caller_id
        return values


def ensure_secrets(state_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """The setup step that makes the passwords not given in the environment (ARI, AMI, one
    per agent extension): generated once, kept in the state folder's secrets.json, mode 0600,
    never in the repository. Those already kept stay; returns the file."""
    secrets_file = state_dir / SECRETS
    kept: dict[str, str] = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    g = variables(env)
    agents = [*listed(g("IOC_ASTERISK_AGENTS")), *listed(g("IOC_ASTERISK_BROWSER_AGENTS"))]
    wanted = ("ari_password", "ami_password", *(f"agent_{a}" for a in agents))
    missing = [name for name in wanted if name not in kept]
    for name in missing:
        kept[name] = secrets.token_urlsafe(18)
    state_dir.mkdir(parents=True, exist_ok=True)
    if missing or not secrets_file.exists():
        # Created 0600, never readable by others even for a moment.
        with open(secrets_file, "w", opener=_private) as out:
            out.write(json.dumps(kept))
    secrets_file.chmod(0o600)
    # The browser agents' certificates are made here too: the one setup step every start
    # path (ioc setup, ioc asterisk start, the tests' own instances) already takes.
    ensure_certificates(state_dir, names=[g("IOC_ASTERISK_WSS_BIND"), socket.gethostname()])
    return secrets_file


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


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
""" + _credentials(extension, password)


def _credentials(extension: str, password: str) -> str:
    """An agent's password and its one registration (a new one replaces the old)."""
    return f"""
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


def _browser_agent(extension: str, password: str) -> str:
    """A call-taker's console softphone (JsSIP over ws/wss): pjsip.conf's [webrtc-agent]."""
    return f"""
[{extension}](webrtc-agent)
auth = {extension}
aors = {extension}
callerid = Agent {extension} <{extension}>
""" + _credentials(extension, password)


_DIGITS = re.compile(r"^[0-9]{2,15}$")
_PATTERN = re.compile(r"^_[0-9XZN\[\]-]+\.?$")


@dataclass(frozen=True, kw_only=True)
class Dialout:
    """Where agents' own phones may call (extensions.conf [agents]), from the services file's
    `[dialout]` table: agencies' duty numbers by short number, national numbers through the
    trunk (Asterisk patterns), and the caller id those outgoing calls show."""

    caller_id: str = "1022"
    national: tuple[str, ...] = ()
    agencies: Mapping[str, str] = field(default_factory=dict)  # short number -> number

    @classmethod
    def load(cls, path: Path) -> Dialout:
        try:
            data = tomllib.loads(path.read_text("utf-8")).get("dialout", {})
            dialout = cls(
                caller_id=str(data.get("caller_id", "1022")),
                national=tuple(str(p) for p in data.get("national", ())),
                agencies={
                    str(short): str(entry["number"])
                    for short, entry in data.get("agencies", {}).items()
                },
            )
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"IOC_SERVICES_FILE {path}: [dialout]: {exc}") from exc
        # Each value lands in extensions.conf as it is: only digits and dialplan patterns.
        bad = [p for p in dialout.national if not _PATTERN.match(p)]
        bad += [] if _DIGITS.match(dialout.caller_id) else [dialout.caller_id]
        bad += [
            f"{k}={v}"
            for k, v in dialout.agencies.items()
            if not (_DIGITS.match(k) and _DIGITS.match(v))
        ]
        if bad:
            raise ConfigError(f"IOC_SERVICES_FILE {path}: [dialout] bad entries {bad}")
        return dialout

    def dialplan(self, agents: Mapping[str, str]) -> str:
        """The rendered part of [agents]: each agent's extension, each agency's short number,
        each national pattern (everything else falls to the context's 404)."""
        clash = sorted(set(agents) & set(self.agencies))
        if clash:
            raise ConfigError(f"agency short numbers {clash} are also agent extensions")
        lines = [f"exten => {ext},1,Goto(agent-dial,${{EXTEN}},1)" for ext in agents]
        lines += [f"exten => {short},1,Goto(dialout,{n},1)" for short, n in self.agencies.items()]
        lines += [f"exten => {p},1,Goto(dialout,${{EXTEN}},1)" for p in self.national]
        return "\n".join(lines)


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
