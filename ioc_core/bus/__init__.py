"""Event bus: the facts many consumers want (`incident.created`, `call.abandoned`, ...).

Two implementations behind one interface (`base.Bus`):
- `InProcessBus` (`inprocess.py`) for the embedded default (no external services);
- `RedisStreamsBus` (`redis_streams.py`) when `IOC_REDIS_URL` is set (consumer groups, acks,
  retry, dead letters).
Callers import everything from `ioc_core.bus` itself.

Delivery is at least once; consumers must be idempotent (keyed on `event_id`).
Producers never publish directly from a request: services write an outbox row in their
transaction and `ioc_core.outbox.Relay` publishes it (see docs/adr).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ioc_core.bus.base import Bus, Event, Handler
from ioc_core.bus.inprocess import InProcessBus
from ioc_core.bus.redis_streams import RedisStreamsBus

if TYPE_CHECKING:
    from ioc_core.config import Settings

__all__ = ["Bus", "Event", "Handler", "InProcessBus", "RedisStreamsBus", "make_bus"]


def make_bus(settings: Settings) -> Bus:
    """Redis Streams when IOC_REDIS_URL is set, otherwise the in-process bus."""
    if settings.redis_url:
        return RedisStreamsBus(
            url=settings.redis_url,
            stream=settings.bus_stream,
            max_deliveries=settings.bus_max_deliveries,
            claim_idle_ms=settings.bus_claim_idle_ms,
        )
    return InProcessBus(max_deliveries=settings.bus_max_deliveries)
