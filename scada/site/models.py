"""Tables of the asset registry: sites, buildings, floors, rooms and meters."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import ExactDecimal, UtcDateTime

__all__ = ["Building", "Floor", "Meter", "MeterParent", "Room", "Site"]


class Site(Base):
    """The site (one per database)."""
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))


class Building(Base):
    """A building of the site."""
    __tablename__ = "buildings"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))


class Floor(Base):
    """A floor of a building."""
    __tablename__ = "floors"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[int] = mapped_column(Integer)


class Room(Base):
    """A room (a tenant's unit) on a floor."""
    __tablename__ = "rooms"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    floor_id: Mapped[str] = mapped_column(ForeignKey("floors.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    area_m2: Mapped[Decimal | None] = mapped_column(ExactDecimal(12, 3), nullable=True)


class Meter(Base):
    """A meter: where it is polled (link, unit id), its profile and its room.

    A ``manual`` meter has no communications (its readings are entered by hand) and a virtual
    meter (role ``virtual``) is a ``formula`` of other meters; neither is polled, and both keep
    ``link`` and ``profile`` empty and ``unit_id`` 0.
    """
    __tablename__ = "meters"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # electricity | water
    role: Mapped[str] = mapped_column(String(16), default="tenant")  # tenant | common | utility | virtual
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.id"), nullable=True, index=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    profile: Mapped[str] = mapped_column(String(64))
    link: Mapped[str] = mapped_column(String(64))
    unit_id: Mapped[int] = mapped_column(Integer)
    # a protocol address where a unit id does not do: a DL/T 645 meter's 12 digits, an MQTT
    # gateway's device id (None for Modbus meters)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    circuit: Mapped[int | None] = mapped_column(Integer, nullable=True)  # multi-circuit devices
    multiplier: Mapped[Decimal] = mapped_column(ExactDecimal(12, 4), default=Decimal(1))
    install_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    initial_reading: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    max_power_kw: Mapped[Decimal | None] = mapped_column(ExactDecimal(12, 3), nullable=True)
    replaced_by: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    formula: Mapped[str | None] = mapped_column(String(1000), nullable=True)  # virtual: "A + B - C"


class MeterParent(Base):
    """From ``valid_from`` on, ``meter_id`` hangs below ``parent_id`` (None: below nothing).

    The rows of a meter form its timeline of parents: a change adds a row, so a past period
    keeps the tree it had.
    """

    __tablename__ = "meter_parents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(ForeignKey("meters.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True, index=True)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("meter_id", "valid_from", name="uq_meter_parents_meter_valid_from"),)
