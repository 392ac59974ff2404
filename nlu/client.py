"""What the hub understands of a citizen's message: the emergency pre-check first, then Rasa
(`/model/parse`). The bots, `ioc nlu parse` and the benchmarks all go through `Nlu`.

When Rasa does not answer within IOC_NLU_TIMEOUT_MS, the answer says so (`source:
"unavailable"`) and Rasa is left alone for IOC_NLU_RETRY_S, so a dead server costs one
timeout, not one per message; the bots then work menu-driven."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ioc_core.config import Settings
from nlu.safety import INTENT_OF, NUMBER_OF, emergency_number
from nlu.settings import NluSettings

logger = logging.getLogger(__name__)

MAX_CHARS = 1000
MODEL_EMERGENCY_MIN = 0.5  # longer messages are understood by their beginning
ENTITIES = ("category", "location", "report_code", "rating")


@dataclass(frozen=True)
class Understanding:
    text: str
    intent: str | None
    confidence: float
    entities: list[dict[str, Any]] = field(default_factory=list)
    # rasa: the model's answer; safety: the pre-check found an emergency the model missed
    # (or the model was not asked); unavailable: no model answered and no emergency was seen.
    source: str = "rasa"
    emergency: str | None = None  # 113, 114 or 115

    def entity(self, name: str) -> str | None:
        return next((str(e["value"]) for e in self.entities if e["entity"] == name), None)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _entities(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per entity and span (CRF and regex may both find a code), in text order."""
    seen: dict[tuple[str, int, int], dict[str, Any]] = {}
    for e in raw:
        name = e.get("entity")
        if name not in ENTITIES:
            continue
        value = e.get("value")
        if name == "report_code" and isinstance(value, str):
            value = value.upper()
        key = (name, int(e.get("start", 0)), int(e.get("end", 0)))
        seen.setdefault(key, {"entity": name, "value": value, "start": key[1], "end": key[2]})
    return sorted(seen.values(), key=lambda e: (e["start"], e["entity"]))


def understanding(text: str, parsed: dict[str, Any] | None) -> Understanding:
    """Combine the pre-check with Rasa's parse (None: Rasa did not answer). Pure."""
    number = emergency_number(text)
    if parsed is None:
        if number:
            return Understanding(text, INTENT_OF[number], 1.0, [], "safety", number)
        return Understanding(text, None, 0.0, [], "unavailable", None)
    # The project's model runs the same pre-check in Rasa (components/precheck.py) and keeps
    # its own answer as model_intent: judged here, as for any other Rasa.
    intent = parsed.get("model_intent") or parsed.get("intent") or {}
    name, confidence = intent.get("name"), float(intent.get("confidence") or 0.0)
    entities = _entities(parsed.get("entities") or [])
    if number and INTENT_OF[number] != name:
        # The pre-check's words name the service more reliably than the model, which mixes
        # up emergencies it has seen few examples of (measured: bench/nlu.py).
        return Understanding(text, INTENT_OF[number], 1.0, entities, "safety", number)
    if not number and confidence >= MODEL_EMERGENCY_MIN:
        # An unsure model does not raise an alarm by itself (a bare "co o ga o duong ..."
        # once scored 0.42 as police); the pre-check's words still do.
        number = NUMBER_OF.get(name or "")
    return Understanding(text, name, confidence, entities, "rasa", number)


class Nlu:
    def __init__(
        self,
        *,
        url: str,
        token: str = "",
        timeout_ms: int = 1500,
        retry_s: float = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._params = {"token": token} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._retry_s = retry_s
        self._clock = clock
        self._down_until = 0.0
        self._session: aiohttp.ClientSession | None = None

    @property
    def available(self) -> bool:
        """False while Rasa is being left alone after a failure (url unset: never)."""
        return bool(self.url) and self._clock() >= self._down_until

    async def understand(self, text: str) -> Understanding:
        return understanding(text, await self._parse(text[:MAX_CHARS]))

    async def _parse(self, text: str) -> dict[str, Any] | None:
        if not self.available or not text.strip():
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                f"{self.url}/model/parse", json={"text": text}, params=self._params
            ) as r:
                if r.status != 200:
                    raise aiohttp.ClientResponseError(
                        r.request_info, (), status=r.status, message=await r.text()
                    )
                data: dict[str, Any] = await r.json()
                return data
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            logger.warning(
                "rasa at %s did not answer (%s): menu-driven for %.0f s",
                self.url,
                exc.__class__.__name__,
                self._retry_s,
            )
            self._down_until = self._clock() + self._retry_s
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def rasa_state_dir(settings: Settings) -> Path:
    return settings.data_dir / "rasa"


def configured_nlu(settings: Settings, nlu: NluSettings | None = None) -> Nlu:
    """The NLU as configured: IOC_RASA_URL, else the project's own server (token from its
    secrets); IOC_RASA=off gives one that never asks Rasa (pre-check only)."""
    from nlu.server import RasaServer

    nlu = nlu or NluSettings.from_env()
    if nlu.mode == "off":
        url, token = "", ""
    elif nlu.url:
        url, token = nlu.url, nlu.token
    else:
        server = RasaServer(state_dir=rasa_state_dir(settings), port=nlu.port, token=nlu.token)
        url, token = server.url, server.token
    return Nlu(url=url, token=token, timeout_ms=nlu.timeout_ms, retry_s=nlu.retry_s)
