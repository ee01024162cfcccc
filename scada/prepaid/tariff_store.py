"""The tariff store: tariffs and their effective-dated versions, and the pricing cache.

A tariff is created with its first version; a price change is a new version with an
effective time, never an edit. Timelines are cached and reloaded when the version table
changed (checked cheaply by the billing transaction), so a new version — even one added by
another process — is used from its effective time on.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.core.configbase import key_path
from scada.db import Database
from scada.prepaid.models import Tariff, TariffVersionRow
from scada.prepaid.pricing import TariffTimeline, TariffVersion
from scada.prepaid.tariff_definition import TariffDefinition
from scada.users.audit import Actor, AuditLog
from tags import utcnow

__all__ = ["COMMODITIES", "TariffError", "TariffInfo", "TariffStore", "parse_definition"]

log = logging.getLogger(__name__)

COMMODITIES = ("electricity", "water")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# a new version may not take effect before it exists (that would re-price billed readings);
# this much clock slack between caller and server is tolerated
PAST_TOLERANCE = dt.timedelta(seconds=60)


class TariffError(ValueError):
    def __init__(self, message: str, *, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True)
class TariffInfo:
    id: str
    name: str
    commodity: str
    created_at: dt.datetime
    created_by: str
    versions: tuple[TariffVersion, ...]

    @property
    def unit(self) -> str:
        return "kWh" if self.commodity == "electricity" else "m3"

    def current(self, now: dt.datetime) -> TariffVersion:
        return TariffTimeline(self.versions).at(now)

    def as_json(self, now: dt.datetime) -> dict[str, Any]:
        current = self.current(now)
        return {
            "id": self.id, "name": self.name, "commodity": self.commodity, "unit": self.unit,
            "kind": current.definition.kind, "current_version": current.version,
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "versions": [
                {"version": v.version, "effective_from": v.effective_from.isoformat(), "kind": v.definition.kind,
                 "definition": v.definition.to_json()}
                for v in self.versions
            ],
        }


def parse_definition(data: Any, field: str = "definition") -> TariffDefinition:
    try:
        return TariffDefinition.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        msg = str(err.get("ctx", {}).get("error", err["msg"])) if err["type"] == "value_error" else err["msg"]
        path = key_path((field, *loc))
        raise TariffError(f"{path}: {msg}", field=path) from None


class TariffStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._timelines: dict[str, TariffTimeline] = {}
        self._commodity: dict[str, str] = {}
        self._generation: int | None = None
        # version row id → (the row's fields, the version parsed): a version is never changed once
        # written, and parsing a time-of-use definition costs ~0.4 ms, once a meter in the
        # time-of-use checks (50,000 at a site's start) and at every tariff page
        self._parsed: dict[int, tuple[tuple[Any, ...], TariffVersion]] = {}

    def _version(self, r: TariffVersionRow) -> TariffVersion:
        fields = (r.tariff_id, r.version, r.effective_from, r.definition)
        hit = self._parsed.get(r.id)
        if hit is not None and hit[0] == fields:  # the same row (not another database's row of that id)
            return hit[1]
        version = _version(r)
        if len(self._parsed) > 10_000:
            self._parsed.clear()
        self._parsed[r.id] = (fields, version)
        return version

    # -- queries ----------------------------------------------------------------------------
    # Both read through Database.reads: on SQLite no write lock. The time-of-use checks ask for a
    # meter's tariff once a meter (50,000 at a site's start), and a session of Database.sessions
    # held the write lock for as long as a busy loop took to run its two statements (up to 7.5 s)
    async def list(self) -> list[TariffInfo]:
        async with self.db.reads() as s:
            tariffs = (await s.scalars(select(Tariff).order_by(Tariff.id))).all()
            rows = (await s.scalars(select(TariffVersionRow).order_by(TariffVersionRow.tariff_id, TariffVersionRow.version))).all()
        versions: dict[str, list[TariffVersion]] = {}
        for r in rows:
            versions.setdefault(r.tariff_id, []).append(self._version(r))
        return [_info(t, versions.get(t.id, [])) for t in tariffs]

    async def get(self, tariff_id: str) -> TariffInfo | None:
        async with self.db.reads() as s:
            t = await s.get(Tariff, tariff_id)
            if t is None:
                return None
            rows = (await s.scalars(select(TariffVersionRow).where(TariffVersionRow.tariff_id == tariff_id).order_by(TariffVersionRow.version))).all()
        return _info(t, [self._version(r) for r in rows])

    async def timelines(self, session: AsyncSession) -> dict[str, TariffTimeline]:
        """Every tariff's timeline, reloaded inside ``session`` when a version was added."""
        generation = await session.scalar(select(func.max(TariffVersionRow.id)))
        if generation != self._generation:
            rows = (await session.scalars(select(TariffVersionRow))).all()
            by_tariff: dict[str, list[TariffVersion]] = {}
            for r in rows:
                by_tariff.setdefault(r.tariff_id, []).append(self._version(r))
            self._timelines = {k: TariffTimeline(v) for k, v in by_tariff.items()}
            self._commodity = dict((await session.execute(select(Tariff.id, Tariff.commodity))).all())
            self._generation = generation
        return self._timelines

    def commodity(self, tariff_id: str) -> str | None:
        return self._commodity.get(tariff_id)

    # -- changes ----------------------------------------------------------------------------
    async def create(
        self,
        tariff_id: str,
        name: str,
        commodity: str,
        definition: TariffDefinition,
        actor: Actor,
        *,
        effective_from: dt.datetime | None = None,
        reason: str = "",
    ) -> TariffInfo:
        if not _ID.match(tariff_id):
            raise TariffError(f"id: 1-64 letters, digits, '_' or '-', found {tariff_id!r}", field="id")
        if commodity not in COMMODITIES:
            raise TariffError(f"commodity: one of {', '.join(COMMODITIES)}, found {commodity!r}", field="commodity")
        if not name.strip():
            raise TariffError("name: must not be empty", field="name")
        now = utcnow()
        start = _aware(effective_from, "effective_from") if effective_from is not None else now
        async with self.db.transaction() as s:
            if await s.get(Tariff, tariff_id) is not None:
                raise TariffError(f"tariff {tariff_id!r} exists already", field="id", status=409)
            s.add(Tariff(id=tariff_id, name=name.strip(), commodity=commodity, created_at=now, created_by=actor.name))
            await s.flush()
            s.add(TariffVersionRow(
                tariff_id=tariff_id, version=1, effective_from=start, definition=definition.to_json(),
                created_at=now, created_by=actor.name, reason=reason,
            ))
            AuditLog.record(
                s, actor, "tariff.create", "tariff", tariff_id, reason=reason,
                after={"name": name, "commodity": commodity, "effective_from": start, "definition": definition.to_json()},
            )
        info = await self.get(tariff_id)
        assert info is not None
        return info

    async def add_version(
        self,
        tariff_id: str,
        definition: TariffDefinition,
        actor: Actor,
        *,
        effective_from: dt.datetime | None = None,
        reason: str = "",
        retroactive: bool = False,
    ) -> TariffVersion:
        """A price change from ``effective_from`` (default now). Before now only when
        ``retroactive``: the version then prices what is billed from now on, and consumption
        already billed is re-priced only by an approved adjustment (``scada.billing``)."""
        now = utcnow()
        start = _aware(effective_from, "effective_from") if effective_from is not None else now
        if start < now - PAST_TOLERANCE and not retroactive:
            raise TariffError(
                f"effective_from: {start.isoformat()} is in the past; a new version applies from now on, "
                "unless it is created as retroactive (re-pricing billed consumption is then a separate adjustment)", field="effective_from",
            )
        if retroactive and start >= now:
            raise TariffError(f"effective_from: a retroactive version takes effect in the past, found {start.isoformat()}", field="effective_from")
        async with self.db.transaction() as s:
            tariff = await s.get(Tariff, tariff_id)
            if tariff is None:
                raise TariffError(f"no tariff {tariff_id!r}", status=404)
            last = await s.scalar(select(func.max(TariffVersionRow.version)).where(TariffVersionRow.tariff_id == tariff_id))
            version = (last or 0) + 1
            row = TariffVersionRow(
                tariff_id=tariff_id, version=version, effective_from=start, definition=definition.to_json(),
                created_at=now, created_by=actor.name, reason=reason,
            )
            s.add(row)
            AuditLog.record(
                s, actor, "tariff.version", "tariff", tariff_id, reason=reason,
                after={"version": version, "effective_from": start, "definition": definition.to_json(), "retroactive": retroactive},
            )
        log.info("tariff version added", extra={"tariff": tariff_id, "version": version, "effective_from": start.isoformat()})
        return TariffVersion(tariff_id, version, start, definition)


def _aware(value: dt.datetime, field: str) -> dt.datetime:
    if value.tzinfo is None:
        raise TariffError(f"{field}: a time with a UTC offset is required, found {value.isoformat()}", field=field)
    return value.astimezone(dt.UTC)


def _version(r: TariffVersionRow) -> TariffVersion:
    return TariffVersion(r.tariff_id, r.version, r.effective_from, TariffDefinition.model_validate(r.definition))


def _info(t: Tariff, versions: list[TariffVersion]) -> TariffInfo:
    return TariffInfo(t.id, t.name, t.commodity, t.created_at, t.created_by, tuple(versions))
