"""Tables of the reports (Alembic branch ``reports``, revisions ``1200``-``1299``).

- ``report_ledger_days``: the money the ledger charged each meter on each local day, as
  :mod:`scada.reports.ledger_money` adds it up (charged minor units; the exact line amounts per
  time-of-use slot in 10⁻²⁰, as decimal text: a day's sum can pass 64 bits; and the charged
  money split over the slots in proportion to them, as the energy report splits a bucket that
  holds this meter's day alone), folded in from the ledger by :mod:`scada.reports.rollup`.
- ``report_ledger_rollup``: one row: the last ledger entry folded in, and the time zone the
  days were cut in.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base
from scada.db.types import UtcDateTime

__all__ = ["LedgerDay", "LedgerRollup"]


class LedgerDay(Base):
    """The money charged on one meter on one local day (see :mod:`scada.reports.rollup`)."""

    __tablename__ = "report_ledger_days"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    charged_minor: Mapped[int] = mapped_column(BigInteger)
    sharp: Mapped[str] = mapped_column(Text)
    peak: Mapped[str] = mapped_column(Text)
    flat: Mapped[str] = mapped_column(Text)
    valley: Mapped[str] = mapped_column(Text)
    other: Mapped[str] = mapped_column(Text)
    sharp_minor: Mapped[int] = mapped_column(BigInteger)
    peak_minor: Mapped[int] = mapped_column(BigInteger)
    flat_minor: Mapped[int] = mapped_column(BigInteger)
    valley_minor: Mapped[int] = mapped_column(BigInteger)
    other_minor: Mapped[int] = mapped_column(BigInteger)


class LedgerRollup(Base):
    """How far the ledger is folded into ``report_ledger_days`` (a single row, ``id = 1``)."""

    __tablename__ = "report_ledger_rollup"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    through_id: Mapped[int] = mapped_column(BigInteger)
    timezone: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
