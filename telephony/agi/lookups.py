"""The `lookup` FastAGI script: what the switchboard knows about a caller, for the dialplan.

`AGI(agi://127.0.0.1:<port>/lookup,<service>)` sets the channel variables below. Blocking
only ever applies to the 1022 hotline: a listed number calling 113/114/115 is answered like
any other emergency, only flagged (`IOC_CALLER_FLAGGED=1`) for the call-taker.

The three sources (the calls table, the core API, the blocked-numbers list) are injected by
the switchboard's composition root; this module only knows their shapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from telephony.agi.fastagi import AgiRequest, Handler
from telephony.numbers import normalise_msisdn

logger = logging.getLogger(__name__)
T = TypeVar("T")

SCRIPT = "lookup"
EMERGENCY_SERVICES = frozenset({"113", "114", "115"})  # police, fire, ambulance
BLOCKABLE_SERVICES = frozenset({"1022"})  # the citizens' hotline; nothing else is ever blocked

# Channel variables the look-up sets. Declared once here; the dialplan sets the same defaults
# before calling AGI, so a failed or skipped look-up leaves these values.
CALLER_CALLS = "IOC_CALLER_CALLS"  # earlier calls from this number
CALLER_OPEN = "IOC_CALLER_OPEN"  # open incidents this caller reported
CALLER_LAST_REF = "IOC_CALLER_LAST_REF"  # tracking code of the latest open one, or empty
CALLER_BLOCKED = "IOC_CALLER_BLOCKED"  # 1: refuse this 1022 call; always 0 for 113/114/115
CALLER_FLAGGED = "IOC_CALLER_FLAGGED"  # 1: the number is on the blocked list (any service)
VARIABLES = (CALLER_CALLS, CALLER_OPEN, CALLER_LAST_REF, CALLER_BLOCKED, CALLER_FLAGGED)
DEFAULTS: Mapping[str, str] = {
    CALLER_CALLS: "0",
    CALLER_OPEN: "0",
    CALLER_LAST_REF: "",
    CALLER_BLOCKED: "0",
    CALLER_FLAGGED: "0",
}

History = Callable[[str], Awaitable[int]]
OpenIncidents = Callable[[str], Awaitable[tuple[int, str | None]]]
Blocked = Callable[[str], Awaitable[bool]]


async def _awaited(awaitable: Awaitable[T]) -> T:
    """TaskGroup takes coroutines; the sources promise only awaitables."""
    return await awaitable


def service_of(request: AgiRequest) -> str:
    """The hotline dialled: the script's first argument, else the channel's extension.
    Pass the argument: inside a Gosub subroutine Asterisk reports `agi_extension: s`."""
    return request.arg(1).strip() or request.extension


def make_caller_lookup(
    *, history: History, open_incidents: OpenIncidents, blocked: Blocked
) -> Handler:
    async def lookup(request: AgiRequest) -> Mapping[str, str]:
        number = normalise_msisdn(request.caller_id)
        if number is None:
            return dict(DEFAULTS)  # nothing to look up by: a withheld number
        # All three at once; one failing cancels the others (the server then says "failed").
        async with asyncio.TaskGroup() as group:
            calls = group.create_task(_awaited(history(number)))
            incidents = group.create_task(_awaited(open_incidents(number)))
            listed = group.create_task(_awaited(blocked(number)))
        open_count, last_ref = incidents.result()
        flagged = bool(listed.result())
        service = service_of(request)
        if flagged and service in EMERGENCY_SERVICES:
            logger.info("call %s: a listed number calls %s (answered)", request.unique_id, service)
        return {
            CALLER_CALLS: str(int(calls.result())),
            CALLER_OPEN: str(int(open_count)),
            CALLER_LAST_REF: last_ref or "",
            CALLER_BLOCKED: "1" if flagged and service in BLOCKABLE_SERVICES else "0",
            CALLER_FLAGGED: "1" if flagged else "0",
        }

    return lookup
