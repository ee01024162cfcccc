"""ORM models of the foundation: asset registry, users, API tokens and the audit log.

Other parts (prepaid, alarms, commands) declare their tables on the same ``Base`` in their own
modules and add Alembic migrations on their own branch (see ``migrations/README``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import ExactDecimal, UtcDateTime

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "BigId",
    "Building",
    "Floor",
    "Meter",
    "Room",
    "Site",
    "User",
]

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
    metadata = MetaData(naming_convention=NAMING)


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))


class Building(Base):
    __tablename__ = "buildings"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))


class Floor(Base):
    __tablename__ = "floors"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[int] = mapped_column(Integer)


class Room(Base):
    __tablename__ = "rooms"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    floor_id: Mapped[str] = mapped_column(ForeignKey("floors.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    area_m2: Mapped[Decimal | None] = mapped_column(ExactDecimal(12, 3), nullable=True)


class Meter(Base):
    __tablename__ = "meters"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # electricity | water
    role: Mapped[str] = mapped_column(String(16), default="tenant")  # tenant | common
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.id"), nullable=True, index=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    profile: Mapped[str] = mapped_column(String(64))
    link: Mapped[str] = mapped_column(String(64))
    unit_id: Mapped[int] = mapped_column(Integer)
    circuit: Mapped[int | None] = mapped_column(Integer, nullable=True)  # multi-circuit devices
    multiplier: Mapped[Decimal] = mapped_column(ExactDecimal(12, 4), default=Decimal(1))
    install_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    initial_reading: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    max_power_kw: Mapped[Decimal | None] = mapped_column(ExactDecimal(12, 3), nullable=True)
    replaced_by: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str] = mapped_column(String(16), default="en")
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class AuditEntry(Base):
    """Append-only: who did what to which object, when, why, with the state before and after."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(64))  # user name, or "system:<component>"
    source: Mapped[str] = mapped_column(String(16))  # cli | api | hmi | opcua | engine
    action: Mapped[str] = mapped_column(String(64))  # e.g. site.import, user.add, relay.open
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16), default="ok")  # ok | denied | failed
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)
