"""What a report reads: the database (ledger, accounts, bills), the asset registry, interval
history and the meter topology's consumption source, and how meters and accounts fall into groups (meter, room, floor, building, customer).

The same :class:`Sources` serves the running server (history through the historian component,
within its query slots) and the command line (history straight from the configured backend).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import select

from historian.query import HistoryQuery
from scada.billing.models import AccountBilling, Customer
from scada.db import Database
from scada.prepaid.models import Account
from scada.reports.config import ReportsConfig
from scada.site.assets import AssetSnapshot
from scada.topology.usage import UsageSource

__all__ = ["Grouping", "HistoryRunner", "Sources", "account_grouping", "meter_grouping"]

# answers a history query (the caller has checked its size)
HistoryRunner = Callable[[HistoryQuery], Awaitable[pd.DataFrame]]


@dataclass
class Sources:
    db: Database
    snapshot: Callable[[], AssetSnapshot]
    history: HistoryRunner | None  # None: the historian is disabled
    tz: Any
    minor_units: int
    currency: str
    cfg: ReportsConfig
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    # reports begun (past every check of the request): tests see that bad input did no work
    started: int = 0
    # told each step of the work as it begins (the command line's progress bar): (step, share done)
    progress: Callable[[str, float], None] | None = None
    # a consumption source over the meter tree, one per report (the losses report); None: no topology
    usage: Callable[[], UsageSource] | None = None

    def step(self, name: str, done: float) -> None:
        if self.progress is not None:
            self.progress(name, done)

    def row_limit(self, request: Any) -> int:
        """The most rows a report may have: documents (XLSX, PDF) are built whole, so fewer."""
        return self.cfg.max_document_rows if request.format in ("xlsx", "pdf") else self.cfg.max_rows


@dataclass(frozen=True)
class Grouping:
    """Members (meters or accounts) → group id; group ids in order; their display names."""

    by_member: dict[Any, str]
    groups: list[str]
    names: dict[str, str] = field(default_factory=dict)

    def members(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {g: [] for g in self.groups}
        for m, g in self.by_member.items():
            out[g].append(m)
        return out


async def _customers(db: Database) -> tuple[dict[int, int], dict[int, str], dict[str, int]]:
    """account → customer, customer → name, room → customer (of the room's latest account with one)."""
    async with db.reads() as s:
        links = {b.account_id: b.customer_id for b in (await s.scalars(select(AccountBilling))).all() if b.customer_id is not None}
        names = {c.id: c.name for c in (await s.scalars(select(Customer))).all()}
        accounts = (await s.execute(select(Account.id, Account.room_id).order_by(Account.id))).all()
    by_room: dict[str, int] = {}
    for account_id, room_id in accounts:
        if account_id in links:
            by_room[room_id] = links[account_id]
    return links, names, by_room


def _sorted(groups: set[str]) -> list[str]:
    return sorted(groups, key=lambda g: (len(g), g) if g.isdigit() else (0, g))


async def meter_grouping(db: Database, snap: AssetSnapshot, group: str) -> Grouping:
    """Meters into groups: a meter outside any room counts only for its building."""
    by_meter: dict[str, str] = {}
    names: dict[str, str] = {}
    if group == "customer":
        _, cnames, by_room = await _customers(db)
        for m in snap.meters.values():
            if m.room_id is not None and m.room_id in by_room:
                by_meter[m.id] = str(by_room[m.room_id])
        names = {str(c): n for c, n in cnames.items()}
    else:
        for m in snap.meters.values():
            if group == "meter":
                by_meter[m.id] = m.id
            elif group == "building":
                by_meter[m.id] = m.building_id
            elif m.room_id is not None and m.room_id in snap.rooms:
                by_meter[m.id] = m.room_id if group == "room" else snap.rooms[m.room_id].floor_id
    return Grouping(by_meter, _sorted(set(by_meter.values())), names)


async def account_grouping(db: Database, snap: AssetSnapshot, group: str) -> Grouping:
    """Accounts into groups (room, floor, building, customer); an account of a room no longer in the
    registry keeps its room id and falls in no floor or building."""
    async with db.reads() as s:
        accounts = (await s.execute(select(Account.id, Account.room_id))).all()
    by_account: dict[int, str] = {}
    names: dict[str, str] = {}
    if group == "customer":
        links, cnames, _ = await _customers(db)
        by_account = {a: str(c) for a, c in links.items()}
        names = {str(c): n for c, n in cnames.items()}
    else:
        for account_id, room_id in accounts:
            room = snap.rooms.get(room_id)
            if group == "room":
                by_account[account_id] = room_id
            elif room is not None:
                by_account[account_id] = room.floor_id if group == "floor" else room.building_id
    return Grouping(by_account, _sorted(set(by_account.values())), names)
