"""Every table of the server, for Alembic and for tests that build a schema: importing this
module completes ``scada.db.Base.metadata``.

A feature that adds tables adds its ``models`` module here (and a migration on its own branch).
"""

from scada.alarms import models as alarm_models
from scada.alarms.notify import models as notification_models
from scada.approvals import models as approval_models
from scada.billing import models as billing_models
from scada.commands import models as command_models
from scada.db.models import Base
from scada.operations import models as operations_models
from scada.payments import models as payment_models
from scada.prepaid import models as prepaid_models
from scada.reports import models as report_models
from scada.site import models as site_models
from scada.tenants import models as tenant_models
from scada.topology import models as topology_models
from scada.users import models as user_models

__all__ = [
    "Base", "alarm_models", "approval_models", "billing_models", "command_models", "notification_models", "operations_models",
    "payment_models", "prepaid_models", "report_models", "site_models", "tenant_models", "topology_models", "user_models",
]
