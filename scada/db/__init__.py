"""The database layer: SQLAlchemy 2 (async) + Alembic, SQLite by default, PostgreSQL via DSN."""

from .engine import Database, async_url
from .models import Base

__all__ = ["Base", "Database", "async_url"]
