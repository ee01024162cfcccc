"""The declarative base every table is declared on, with its naming convention.

Each feature declares its tables in its own ``models.py`` on this ``Base`` and adds Alembic
migrations on its own branch (see ``migrations/README``); :mod:`scada.models` imports them all.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase

__all__ = ["NAMING", "Base", "BigId"]

# deterministic constraint names so migrations behave the same on both engines
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    """The declarative base of every table, with deterministic constraint names."""
    metadata = MetaData(naming_convention=NAMING)
