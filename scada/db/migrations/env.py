"""Alembic environment: migrations run on a connection handed over by ``Database.upgrade``."""

from __future__ import annotations

from alembic import context

import scada.models  # noqa: F401  (imports every part's models onto Base.metadata)
from scada.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through scada.db.Database.upgrade (scada db upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
