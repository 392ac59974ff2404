"""Settings: defaults, parsing, clear errors; the README documents every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bots.settings import VARIABLES as BOT_VARIABLES
from ioc_core.config import VARIABLES, ConfigError, Settings
from nlu.settings import VARIABLES as NLU_VARIABLES
from telephony.settings import VARIABLES as SWITCHBOARD_VARIABLES

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_defaults(tmp_path: Path) -> None:
    s = Settings.from_env({"IOC_DATA_DIR": str(tmp_path)})
    assert s.embedded_database and s.database_url.endswith(f"{tmp_path}/ioc.sqlite3")
    assert s.redis_url == "" and s.http_host == "127.0.0.1" and s.http_port == 8080
    assert s.attachments_dir == tmp_path / "attachments"
    assert s.area_provinces == ("75",)


def test_libpq_urls_get_the_async_driver() -> None:
    s = Settings.from_env({"IOC_DATABASE_URL": "postgresql://u@h/db"})
    assert s.database_url == "postgresql+asyncpg://u@h/db" and not s.embedded_database


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IOC_HTTP_PORT": "eighty"}, "IOC_HTTP_PORT"),
        ({"IOC_HTTP_PORT": "70000"}, "out of range"),
        ({"IOC_DATABASE_URL": "mysql://x/y"}, "sqlite or postgresql"),
        ({"IOC_WORKDAY_END": "5pm"}, "HH:MM"),
        ({"IOC_WORKDAY_END": "25:00"}, "HH:MM"),
        ({"IOC_TRACKING_BLOCK": "0"}, "at least 1"),
        ({"IOC_DUPLICATE_RADIUS_M": "near"}, "IOC_DUPLICATE_RADIUS_M"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_readme_documents_every_variable() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    declared = [*VARIABLES, *SWITCHBOARD_VARIABLES, *NLU_VARIABLES, *BOT_VARIABLES]
    missing = [v.name for v in declared if f"`{v.name}`" not in readme]
    assert not missing, f"README's configuration reference lacks {missing}"


def test_every_variable_the_code_reads_is_declared() -> None:
    """An `IOC_*` environment variable read anywhere must be in a VARIABLES table (and so in
    the README); dialplan variables (channel variables, not environment) are listed apart."""
    from telephony.agi.lookups import VARIABLES as AGI_VARIABLES
    from telephony.dialplan_vars import ALL as DIALPLAN

    declared = {
        v.name for v in (*VARIABLES, *SWITCHBOARD_VARIABLES, *NLU_VARIABLES, *BOT_VARIABLES)
    }
    channel = {*DIALPLAN, *AGI_VARIABLES, "IOC_AGI_STATUS"}
    used: set[str] = set()
    for package in ("ioc_core", "telephony", "nlu", "bots"):
        for path in (ROOT / package).rglob("*.py"):
            used |= set(re.findall(r"\"(IOC_[A-Z0-9_]+)\"", path.read_text("utf-8")))
    assert used - declared - channel == set()
