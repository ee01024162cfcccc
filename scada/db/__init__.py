"""The database layer: SQLAlchemy 2 (async) + Alembic, SQLite by default, PostgreSQL via DSN."""

from scada.db.engine import Database, async_url
from scada.db.models import Base

__all__ = ["Base", "Database", "async_url"]
