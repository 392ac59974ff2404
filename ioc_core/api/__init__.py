"""The core's public surface for other packages (telephony, bots).

They ask the core through a `CoreApi` — in-process when they run in the same process as the
core, over HTTP otherwise — and listen to facts on the bus. Both clients return the same JSON
shapes the REST API returns, rendered by the same serialisation layer.
"""

from ioc_core.api.client import CoreApi, CoreApiError, HttpCoreApi, InProcessCoreApi
from ioc_core.incidents.tracking import format_tracking_code

__all__ = ["CoreApi", "CoreApiError", "HttpCoreApi", "InProcessCoreApi", "format_tracking_code"]
