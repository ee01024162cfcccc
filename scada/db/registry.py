"""Imports every module that declares tables, so ``Base.metadata`` is complete.

A part that adds tables adds its module here (and a migration on its own branch).
"""

from . import models  # noqa: F401
from ..alarms import models as alarm_models  # noqa: F401
from ..alarms.notify import models as notification_models  # noqa: F401
from .. import commandstore  # noqa: F401
from ..prepaid import models as prepaid_models  # noqa: F401

__all__: list[str] = []
