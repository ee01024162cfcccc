"""The alarm console (standing alarms first by priority, live; acknowledge; shelve with a
reason and an expiry) and the alarm history with filters. Actions go through the alarms API."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scada.alarms.alarm import AlarmState, alarm_document
from scada.alarms.component import ALARMS
from scada.alarms.store import AlarmFilter
from scada.config import CONFIG
from scada.users.auth import Permission

from ..render import render
from . import PageCall, PageSet

__all__ = ["pages"]

pages = PageSet("alarms", requires=(ALARMS,))

SHELVED = frozenset({AlarmState.SHELVED})


@pages.get("/alarms", permission=Permission.VIEW, nav=("nav.alarms", 40))
async def console(call: PageCall) -> web.StreamResponse:
    engine = call.ctx[ALARMS]
    standing = [alarm_document(a) for a in engine.active(AlarmFilter(limit=500))]
    shelved = [alarm_document(a) for a in engine.active(AlarmFilter(states=SHELVED, limit=500))]
    return render(
        call.request, "alarms.html", alarms=standing, shelved=shelved,
        can_ack=call.user.can(Permission.ALARM_ACK), can_shelve=call.user.can(Permission.ALARM_SHELVE),
        classes=sorted(engine.classes),
    )


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: date | None = None
    until: date | None = None
    alarm_class: str | None = Field(default=None, max_length=64)
    room: str | None = Field(default=None, max_length=64)
    meter: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=200, ge=1, le=2000)


@pages.get("/alarms/history", permission=Permission.VIEW)
async def history(call: PageCall) -> web.StreamResponse:
    engine = call.ctx[ALARMS]
    raw = {k: v for k, v in call.request.query.items() if v != ""}
    error = None
    try:
        q = HistoryQuery.model_validate(raw)
        if q.alarm_class is not None and q.alarm_class not in engine.classes:
            raise ValueError("alarm_class")
    except ValidationError as exc:
        error = call.t("history.bad_filter", field=".".join(str(p) for p in exc.errors()[0]["loc"]))
        q = HistoryQuery()
    except ValueError as exc:
        error = call.t("history.bad_filter", field=str(exc))
        q = HistoryQuery()
    tz = call.ctx[CONFIG].site.tz
    f = AlarmFilter(
        states=None, open_only=False, classes=frozenset({q.alarm_class}) if q.alarm_class else None,
        room_id=q.room, meter_id=q.meter, limit=q.limit,
        since=datetime.combine(q.since, time(), tz) if q.since else None,
        until=datetime.combine(q.until + timedelta(days=1), time(), tz) if q.until else None,
    )
    rows: list[dict[str, Any]] = [alarm_document(a) for a in await engine.history(f)]
    return render(call.request, "alarm_history.html", rows=rows, query=q, classes=sorted(engine.classes), error=error)
