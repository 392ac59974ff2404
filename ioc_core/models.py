"""Every table's model imported once, so Alembic and tests see the whole schema."""

from __future__ import annotations

from ioc_core import outbox as _outbox  # noqa: F401
from ioc_core.access import models as _access  # noqa: F401
from ioc_core.catalogue import models as _catalogue  # noqa: F401
from ioc_core.db import Base
from ioc_core.incidents import models as _incidents  # noqa: F401

metadata = Base.metadata
