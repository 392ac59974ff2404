"""Settings from the environment (`IOC_*`), with safe defaults for the embedded mode.

Every variable is declared once in `VARIABLES`; the README's configuration reference is
checked against this table by a test, so the two cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ConfigError(ValueError):
    """A variable holds a value we cannot use; the message names it."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    help: str
    kind: type = str


VARIABLES: tuple[Variable, ...] = (
    Variable("IOC_DATA_DIR", "var", "Data directory: SQLite file (embedded mode) and attachments."),
    Variable(
        "IOC_CACHE_DIR",
        "~/.cache/ioc-hub",
        "Cache for heavy artefacts (Asterisk chroot, Rasa env, models), keyed by inputs.",
    ),
    Variable(
        "IOC_DATABASE_URL",
        "",
        "SQLAlchemy URL, e.g. postgresql+asyncpg://user@host/db. Unset: SQLite in IOC_DATA_DIR.",
    ),
    Variable(
        "IOC_REDIS_URL", "", "Redis URL for the event bus (Redis Streams). Unset: in-process bus."
    ),
    Variable("IOC_HTTP_HOST", "127.0.0.1", "Address the HTTP server binds."),
    Variable("IOC_HTTP_PORT", "8080", "Port of the HTTP server.", int),
    Variable(
        "IOC_HTTP_WORKERS",
        "1",
        "HTTP worker processes sharing the port (SO_REUSEPORT); 0 = one per CPU.",
        int,
    ),
    Variable(
        "IOC_HTTP_MAX_INFLIGHT",
        "64",
        "Requests a worker handles at once; more wait (see IOC_HTTP_QUEUE_MS).",
        int,
    ),
    Variable(
        "IOC_HTTP_QUEUE_MS",
        "1000",
        "How long a request may wait for a slot before a 503 with Retry-After.",
        int,
    ),
    Variable(
        "IOC_SOCKETS_MAX",
        "512",
        "Long-lived connections (web chat sockets, live feeds) a worker holds; more get 503.",
        int,
    ),
    Variable(
        "IOC_SOCKETS_PER_CLIENT",
        "16",
        "Long-lived connections one client address may hold at once; more get 429.",
        int,
    ),
    Variable(
        "IOC_SOCKET_MESSAGES_PER_S",
        "2",
        "Messages a second a client may send on one socket (bursts of IOC_SOCKET_BURST).",
        float,
    ),
    Variable("IOC_SOCKET_BURST", "10", "Messages a client may send on a socket at once.", int),
    Variable(
        "IOC_SOCKET_ORIGINS",
        "",
        "Other page origins allowed to open sockets (comma-separated scheme://host[:port]).",
    ),
    Variable("IOC_DB_POOL_SIZE", "20", "Database connections per process (PostgreSQL).", int),
    Variable("IOC_PUBLIC_URL", "", "Public base URL used in links (default http://HOST:PORT)."),
    Variable("IOC_TIMEZONE", "Asia/Ho_Chi_Minh", "Time zone at the edges (deadlines, display)."),
    Variable("IOC_WORKDAY_END", "17:00", "End of the working day; timed deadlines fall on it."),
    Variable("IOC_TRACKING_PREFIX", "PA", "Prefix of tracking codes (PA-2026-000123)."),
    Variable(
        "IOC_TRACKING_BLOCK",
        "100",
        "Tracking numbers a process reserves at once (fewer DB round trips; gaps on restart).",
        int,
    ),
    Variable("IOC_DUPLICATE_RADIUS_M", "150", "Duplicate reports: radius in metres.", float),
    Variable("IOC_DUPLICATE_WINDOW_MIN", "120", "Duplicate reports: time window in minutes.", int),
    Variable("IOC_MAX_ATTACHMENT_BYTES", "10485760", "Largest accepted photo in bytes.", int),
    Variable("IOC_MAX_ATTACHMENTS", "10", "Most photos per incident.", int),
    Variable("IOC_MAX_BODY_BYTES", "26214400", "Largest accepted HTTP request body in bytes.", int),
    Variable(
        "IOC_AREA_PROVINCES",
        "75",
        "Province codes loaded from the vietnam-provinces dataset ('all' for every one).",
    ),
    Variable(
        "IOC_AREA_FILE", "", "JSON area tree to load instead of the dataset (any depth; see docs)."
    ),
    Variable("IOC_OPEN311_JURISDICTION", "ioc.local", "Open311 jurisdiction_id of this server."),
    Variable("IOC_BUS_STREAM", "ioc:events", "Redis stream that carries events."),
    Variable(
        "IOC_BUS_MAX_DELIVERIES",
        "5",
        "Deliveries before an event goes to the dead-letter stream.",
        int,
    ),
    Variable(
        "IOC_BUS_CLAIM_IDLE_MS",
        "30000",
        "Pending events idle this long are claimed from a dead consumer.",
        int,
    ),
    Variable("IOC_TOKEN_CACHE_S", "30", "Seconds a verified API token is cached in memory.", int),
    Variable(
        "IOC_SESSION_HOURS",
        "12",
        "Hours a staff sign-in lasts (absolute, from sign-in: one shift).",
        float,
    ),
    Variable(
        "IOC_LOGIN_MAX_FAILURES",
        "5",
        "Failed sign-ins for one username within IOC_LOGIN_WINDOW_S before 429 (20 per address).",
        int,
    ),
    Variable("IOC_LOGIN_WINDOW_S", "300", "Seconds the sign-in throttle counts failures.", int),
    Variable("IOC_LOG_LEVEL", "INFO", "Logging level."),
    Variable(
        "IOC_MAP_TILES",
        "",
        "Map tile URL for the staff screens ({z}/{x}/{y}; e.g. a tile server on the IOC's own "
        "network). Unset: maps draw places on a plain grid, no tiles fetched from anywhere.",
    ),
    Variable("IOC_MAP_CENTER", "11.5349,106.8832", "Where the screens' maps open: lat,lon."),
)


class VariableReader(Protocol):
    def __call__(self, name: str, minimum: float | None = None) -> Any: ...


def variable_reader(
    variables: Sequence[Variable], env: Mapping[str, str] | None = None
) -> VariableReader:
    """Reads `variables` by name from `env` (default: the process environment) through
    `read_variable`; every settings class (core, NLU, bots) reads its own table with one."""
    source: Mapping[str, str] = os.environ if env is None else env
    by_name = {v.name: v for v in variables}

    def read(name: str, minimum: float | None = None) -> Any:
        return read_variable(source, by_name[name], minimum=minimum)

    return read


def listed(raw: str) -> tuple[str, ...]:
    """A comma-separated variable's items, stripped, blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


_FLAGS = {"1": True, "true": True, "yes": True, "on": True}
_FLAGS |= {"0": False, "false": False, "no": False, "off": False}


def read_variable(env: Mapping[str, str], var: Variable, *, minimum: float | None = None) -> Any:
    """`var` from `env`, parsed by its kind; unset gives its default, except a default in
    parentheses ("(generated)"), which only describes what happens and reads as "". A number
    or flag without a value reads as None (the caller's own default applies). A bad value, or
    one below `minimum`, is a ConfigError naming the variable. Feature packages read their
    own VARIABLES tables through this too."""
    raw = env.get(var.name, "").strip() or ("" if var.default.startswith("(") else var.default)
    if var.kind is str:
        return raw
    if not raw:
        return None
    if var.kind is bool:
        # bool("0") is True: flags are read by word, and a word we do not know is an error.
        flag = _FLAGS.get(raw.lower())
        if flag is None:
            raise ConfigError(f"{var.name}={raw!r} is not one of {', '.join(_FLAGS)}")
        return flag
    try:
        value = var.kind(raw)
    except ValueError:
        raise ConfigError(f"{var.name}={raw!r} is not a valid {var.kind.__name__}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{var.name} must be at least {minimum:g}")
    return value


@dataclass(frozen=True, kw_only=True)
class Settings:
    data_dir: Path
    cache_dir: Path
    database_url: str
    redis_url: str
    http_host: str
    http_port: int
    http_workers: int
    http_max_inflight: int
    http_queue_ms: int
    sockets_max: int
    sockets_per_client: int
    socket_messages_per_s: float
    socket_burst: int
    socket_origins: tuple[str, ...]
    db_pool_size: int
    public_url: str
    timezone: str
    workday_end_hour: int
    workday_end_minute: int
    tracking_prefix: str
    tracking_block: int
    duplicate_radius_m: float
    duplicate_window_min: int
    max_attachment_bytes: int
    max_attachments: int
    max_body_bytes: int
    area_provinces: tuple[str, ...]
    area_file: str
    open311_jurisdiction: str
    bus_stream: str
    bus_max_deliveries: int
    bus_claim_idle_ms: int
    token_cache_s: int
    session_hours: float
    login_max_failures: int
    login_window_s: int
    log_level: str
    map_tiles: str = ""
    map_center: tuple[float, float] = (11.5349, 106.8832)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "attachments"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        g = variable_reader(VARIABLES, env)
        data_dir = Path(g("IOC_DATA_DIR")).expanduser().absolute()
        db_url = g("IOC_DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'ioc.sqlite3'}"
        if not (db_url.startswith("sqlite") or db_url.startswith("postgresql")):
            raise ConfigError(
                f"IOC_DATABASE_URL must be a sqlite or postgresql URL, got {db_url!r}"
            )
        if db_url.startswith("postgresql://") or db_url.startswith("postgres://"):
            # People paste libpq URLs; the async driver is the only one we ship.
            db_url = "postgresql+asyncpg://" + db_url.split("://", 1)[1]
        end = g("IOC_WORKDAY_END")
        try:
            hh, mm = (int(x) for x in end.split(":"))
            if not (0 <= hh < 24 and 0 <= mm < 60):
                raise ValueError
        except ValueError:
            raise ConfigError(f"IOC_WORKDAY_END={end!r} must be HH:MM") from None
        port = g("IOC_HTTP_PORT")
        if not 0 <= port < 65536:
            raise ConfigError(f"IOC_HTTP_PORT={port} is out of range")
        for name in (
            "IOC_TRACKING_BLOCK",
            "IOC_MAX_ATTACHMENTS",
            "IOC_BUS_MAX_DELIVERIES",
            "IOC_HTTP_MAX_INFLIGHT",
            "IOC_DB_POOL_SIZE",
            "IOC_SOCKETS_MAX",
            "IOC_SOCKETS_PER_CLIENT",
            "IOC_SOCKET_BURST",
            "IOC_LOGIN_MAX_FAILURES",
            "IOC_LOGIN_WINDOW_S",
        ):
            if g(name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        provinces = listed(g("IOC_AREA_PROVINCES"))
        origins = listed(g("IOC_SOCKET_ORIGINS"))
        for origin in origins:
            if "://" not in origin or origin.rstrip("/").count("/") > 2:
                raise ConfigError(
                    f"IOC_SOCKET_ORIGINS: {origin!r} is not an origin (scheme://host[:port])"
                )
        values: dict[str, Any] = dict(
            data_dir=data_dir,
            cache_dir=Path(g("IOC_CACHE_DIR")).expanduser().absolute(),
            database_url=db_url,
            redis_url=g("IOC_REDIS_URL"),
            http_host=g("IOC_HTTP_HOST"),
            http_port=port,
            http_workers=max(0, g("IOC_HTTP_WORKERS")),
            http_max_inflight=g("IOC_HTTP_MAX_INFLIGHT"),
            http_queue_ms=max(0, g("IOC_HTTP_QUEUE_MS")),
            sockets_max=g("IOC_SOCKETS_MAX"),
            sockets_per_client=g("IOC_SOCKETS_PER_CLIENT"),
            socket_messages_per_s=g("IOC_SOCKET_MESSAGES_PER_S", 0.01),
            socket_burst=g("IOC_SOCKET_BURST"),
            socket_origins=origins,
            db_pool_size=g("IOC_DB_POOL_SIZE"),
            public_url=g("IOC_PUBLIC_URL"),
            timezone=g("IOC_TIMEZONE"),
            workday_end_hour=hh,
            workday_end_minute=mm,
            tracking_prefix=g("IOC_TRACKING_PREFIX"),
            tracking_block=g("IOC_TRACKING_BLOCK"),
            duplicate_radius_m=g("IOC_DUPLICATE_RADIUS_M"),
            duplicate_window_min=g("IOC_DUPLICATE_WINDOW_MIN"),
            max_attachment_bytes=g("IOC_MAX_ATTACHMENT_BYTES"),
            max_attachments=g("IOC_MAX_ATTACHMENTS"),
            max_body_bytes=g("IOC_MAX_BODY_BYTES"),
            area_provinces=provinces,
            area_file=g("IOC_AREA_FILE"),
            open311_jurisdiction=g("IOC_OPEN311_JURISDICTION"),
            bus_stream=g("IOC_BUS_STREAM"),
            bus_max_deliveries=g("IOC_BUS_MAX_DELIVERIES"),
            bus_claim_idle_ms=g("IOC_BUS_CLAIM_IDLE_MS"),
            token_cache_s=g("IOC_TOKEN_CACHE_S"),
            session_hours=g("IOC_SESSION_HOURS", 0.0001),
            login_max_failures=g("IOC_LOGIN_MAX_FAILURES"),
            login_window_s=g("IOC_LOGIN_WINDOW_S"),
            log_level=g("IOC_LOG_LEVEL").upper(),
            map_tiles=_tiles(g("IOC_MAP_TILES")),
            map_center=_lat_lon(g("IOC_MAP_CENTER")),
        )
        values.update(overrides)
        return cls(**values)

    def base_url(self) -> str:
        return self.public_url or f"http://{self.http_host}:{self.http_port}"


def _tiles(url: str) -> str:
    if url and (not url.startswith(("http://", "https://")) or "{z}" not in url):
        raise ConfigError(f"IOC_MAP_TILES={url!r} must be an http(s) URL with {{z}}, {{x}}, {{y}}")
    return url


def _lat_lon(value: str) -> tuple[float, float]:
    try:
        lat, lon = (float(x) for x in value.split(","))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError
    except ValueError:
        raise ConfigError(f"IOC_MAP_CENTER={value!r} must be lat,lon in degrees") from None
    return lat, lon
