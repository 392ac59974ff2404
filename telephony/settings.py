"""The switchboard's settings: hotline services and call-back policy from `dialplans/services.toml`
(data), deployment knobs from `IOC_*` variables (declared once in `VARIABLES`; the README's
configuration reference is checked against it). Every telephony module reads them through
`variables()`, the reader the core, the NLU and the bots use for theirs."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ioc_core.config import ConfigError, Variable, VariableReader, variable_reader
from telephony.calls.callback_policy import MAX_PER_HOUR_DEFAULT, NATIONAL_DEFAULT, compile_allowed

SERVICES_FILE = Path(__file__).resolve().parents[1] / "dialplans" / "services.toml"

VARIABLES: tuple[Variable, ...] = (
    Variable("IOC_ASTERISK_HTTP_PORT", "8088", "Asterisk's HTTP port: ARI and WebSocket.", int),
    Variable("IOC_ASTERISK_AMI_PORT", "5038", "Asterisk's manager interface port.", int),
    Variable("IOC_ASTERISK_SIP_PORT", "5060", "SIP (UDP) port for the trunk and agents.", int),
    Variable("IOC_ASTERISK_RTP_START", "10000", "First RTP port.", int),
    Variable("IOC_ASTERISK_RTP_END", "20000", "Last RTP port.", int),
    Variable("IOC_ARI_PASSWORD", "(generated)", "ARI password; kept in secrets.json if unset."),
    Variable("IOC_AMI_PASSWORD", "(generated)", "AMI password; kept in secrets.json if unset."),
    Variable("IOC_ASTERISK_TRUNK_IPS", "127.0.0.1", "Carrier/SBC addresses (comma-separated)."),
    Variable(
        "IOC_ASTERISK_AGENTS", "1001,1002,1003,1004,1005", "Agent extensions (comma-separated)."
    ),
    Variable(
        "IOC_ASTERISK_BROWSER_AGENTS",
        "2001,2002,2003,2004,2005",
        "Browser (WebRTC) agent extensions for the call-taker console (comma-separated).",
    ),
    Variable("IOC_ASTERISK_WSS_PORT", "8089", "Asterisk's TLS port: wss:// for browsers.", int),
    Variable(
        "IOC_ASTERISK_WSS_BIND",
        "127.0.0.1",
        "Address the wss:// port binds (the agents' LAN address to reach it from their PCs).",
    ),
    Variable(
        "IOC_ASTERISK_BROWSER_LOCAL",
        "1",
        "Browser agents run on this machine: loopback media and ICE candidates; 0 = agents' "
        "PCs elsewhere (real interface candidates).",
        bool,
    ),
    Variable("IOC_PROMPTS_DIR", "", "Recorded prompts (<lang>/<name>.wav) replacing espeak-ng."),
    Variable(
        "IOC_STT_MODEL_DIR",
        "",
        "A CTranslate2 Whisper model folder (e.g. PhoWhisper); unset: the bundled Whisper base.",
    ),
    Variable("IOC_STT_LANGUAGE", "vi", "Language forced on speech recognition (vi or en)."),
    Variable("IOC_STT_ENGINE", "whisper", "Speech engine: whisper (bundled), vosk or external."),
    Variable("IOC_STT_VOSK_MODEL_DIR", "", "Vosk model folder (e.g. vosk-model-vn-0.4) for vosk."),
    Variable("IOC_STT_VOSK_GRAMMAR", "", "Vosk grammar mode: a file of phrases, one per line."),
    Variable(
        "IOC_STT_EXTERNAL_URL", "", "ws:// URL of an external engine (docs/speech-websocket.md)."
    ),
    Variable("IOC_SERVICES_FILE", "(dialplans/services.toml)", "Hotline services and call-backs."),
    Variable(
        "IOC_CALLBACK_ATTEMPTS", "", "Automatic call-back attempts (overrides the file).", int
    ),
    Variable("IOC_CALLBACK_SPACING_S", "", "Seconds between call-back attempts (overrides).", int),
    Variable("IOC_CALLBACK_FIRST_DELAY_S", "", "Seconds before the first call-back.", int),
    Variable(
        "IOC_CALLBACK_ALLOWED",
        "(Vietnamese national numbers)",
        "Numbers called back automatically: patterns (space-separated), each matching a whole "
        "number of digits; others wait for a person (overrides the file).",
    ),
    Variable(
        "IOC_CALLBACK_MAX_PER_HOUR",
        "",
        "Automatic call-backs to one number in an hour; more wait for a person (overrides the "
        f"file, else {MAX_PER_HOUR_DEFAULT}).",
        int,
    ),
    Variable(
        "IOC_ASTERISK_TRUNK_CONTACT",
        "sip:127.0.0.1:5070",
        "SIP URI of the carrier/SBC that call-backs are sent through.",
    ),
    Variable("IOC_ASTERISK_AGI_PORT", "4573", "Port of the FastAGI look-up server.", int),
    Variable(
        "IOC_ASTERISK_CDR_FILE",
        "(IOC_DATA_DIR/asterisk/log/cdr-custom/ioc-calls.json)",
        "Asterisk's own call records the switchboard reconciles from (ADR 0018).",
    ),
    Variable(
        "IOC_ASTERISK_AUDIOSOCKET_PORT",
        "9092",
        "Port where the switchboard receives live call audio (ARI externalMedia, AudioSocket).",
        int,
    ),
    Variable(
        "IOC_STT_LIVE_MAX",
        "2",
        "Calls transcribed live at once (while queued and answered); 0 = no live transcripts.",
        int,
    ),
    Variable(
        "IOC_HOTLINE_MAX_WAIT_S",
        "300",
        "Seconds a 1022 caller waits in the queue before leaving a message.",
        int,
    ),
    Variable(
        "IOC_QUEUE_ANNOUNCE_S",
        "45",
        "Seconds between telling waiting callers their place in line; 0 = never.",
        int,
    ),
    Variable("IOC_RECORD_CALLS", "1", "Record answered calls (MixMonitor, wav); 0 = off.", bool),
    Variable("IOC_SWITCHBOARD", "auto", "Run the switchboard app: auto (when set up), on, off."),
    Variable("IOC_ASTERISK_HOST", "127.0.0.1", "Where the switchboard reaches ARI and AMI."),
    Variable(
        "IOC_SWITCHBOARD_AGENT_NAMES",
        "",
        "Optional display names: 1001=Nguyễn Văn A,1002=... (staff names on drafts).",
    ),
)


def variables(env: Mapping[str, str] | None = None) -> VariableReader:
    """Telephony's `VARIABLES` read from `env` (default: the process environment)."""
    return variable_reader(VARIABLES, env)


@dataclass(frozen=True, kw_only=True)
class Service:
    number: str
    name_vi: str
    name_en: str
    queue: str
    category: str
    priority: str
    emergency: bool


@dataclass(frozen=True, kw_only=True)
class CallbackPolicy:
    automatic: frozenset[str]
    attempts: int
    spacing_s: float
    first_delay_s: float
    ring_s: int
    # Only these numbers are dialled automatically (callback_policy.decide), at most
    # `max_per_hour` times an hour each.
    allowed: tuple[re.Pattern[str], ...] = ()
    max_per_hour: int = MAX_PER_HOUR_DEFAULT


@dataclass(frozen=True, kw_only=True)
class SwitchboardSettings:
    services: Mapping[str, Service]
    callback: CallbackPolicy
    agent_names: Mapping[str, str] | None = None

    def service(self, number: str) -> Service | None:
        return self.services.get(number)

    def service_of_queue(self, queue: str) -> Service | None:
        return next((s for s in self.services.values() if s.queue == queue), None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SwitchboardSettings:
        g = variables(env)
        path = Path(g("IOC_SERVICES_FILE") or SERVICES_FILE)
        # Read before the file's entries, so a bad variable is named as itself.
        attempts, spacing_s = g("IOC_CALLBACK_ATTEMPTS", 0), g("IOC_CALLBACK_SPACING_S", 0)
        first_delay_s, max_per_hour = (
            g("IOC_CALLBACK_FIRST_DELAY_S", 0),
            g("IOC_CALLBACK_MAX_PER_HOUR", 0),
        )
        allowed = g("IOC_CALLBACK_ALLOWED")
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"IOC_SERVICES_FILE {path}: {exc}") from exc
        try:
            services = {
                str(number): Service(number=str(number), **spec)
                for number, spec in data["services"].items()
            }
            cb = data["callback"]
            policy = CallbackPolicy(
                automatic=frozenset(str(n) for n in cb["automatic"]),
                attempts=_or(attempts, cb["attempts"]),
                spacing_s=_or(spacing_s, cb["spacing_s"]),
                first_delay_s=_or(first_delay_s, cb["first_delay_s"]),
                ring_s=int(cb["ring_s"]),
                allowed=_allowed(allowed, cb.get("allowed", NATIONAL_DEFAULT)),
                max_per_hour=_or(max_per_hour, cb.get("max_per_hour", MAX_PER_HOUR_DEFAULT)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"IOC_SERVICES_FILE {path}: missing or bad entry {exc}") from exc
        unknown = policy.automatic - set(services)
        if unknown:
            raise ConfigError(f"IOC_SERVICES_FILE {path}: call-back for unknown {sorted(unknown)}")
        names = dict(
            item.split("=", 1)
            for item in g("IOC_SWITCHBOARD_AGENT_NAMES").split(",")
            if "=" in item
        )
        return cls(
            services=services,
            callback=policy,
            agent_names={k.strip(): v.strip() for k, v in names.items()},
        )


def _allowed(raw: str, default: list[str] | tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    patterns = raw.split() if raw else [str(p) for p in default]
    try:
        return compile_allowed(patterns)
    except ValueError as exc:
        raise ConfigError(f"IOC_CALLBACK_ALLOWED: {exc}") from exc


def _or(value: int | None, default: int) -> int:
    """A variable that overrides the services file: its value when set, else the file's."""
    return int(default) if value is None else value
