"""The meter topology's pages: the meter tree of the site (parents, children, virtual meters,
each node's consumption and loss over a chosen period, manual-reading entry and CSV import),
the losses page (a parent's loss day by day, with a chart) and the apportionment rules with
their preview table and runs. Writes go through the JSON API (``/api/v1/meters...``,
``/api/v1/readings/import``, ``/api/v1/apportionment/...``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from aiohttp import web

from historian import BackendError
from scada.config import CONFIG
from scada.polling.component import MODBUS
from scada.topology.losses import compute_losses
from scada.topology.service import TOPOLOGY, Topology
from scada.topology.usage import UNIT_OF_KIND, Span
from scada.users.auth import Permission

from ..render import render
from . import PageCall, PageSet

__all__ = ["pages"]

pages = PageSet("topology", requires=(TOPOLOGY,))

ROLE_ORDER = {"utility": 0, "common": 1, "tenant": 2, "virtual": 3}


def _dates(call: PageCall, topology: Topology) -> tuple[dt.date, dt.date, str | None]:
    """The page's period (``from``, ``to`` exclusive, as dates), default this month so far."""
    today = topology.clock().astimezone(topology.tz).date()
    first, last = today.replace(day=1), today + dt.timedelta(days=1)
    try:
        start = dt.date.fromisoformat(call.request.query["from"]) if call.request.query.get("from") else first
        end = dt.date.fromisoformat(call.request.query["to"]) if call.request.query.get("to") else last
    except ValueError:
        return first, last, call.t("topology.bad_period")
    if end <= start or (end - start).days > 400:
        return first, last, call.t("topology.bad_period")
    return start, end, None


def _bounds(topology: Topology, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return (dt.datetime.combine(start, dt.time(), topology.tz), dt.datetime.combine(end, dt.time(), topology.tz))


def _num(d: Decimal | None) -> str | None:
    return format(d.normalize(), "f") if d is not None and d != 0 else ("0" if d is not None else None)


@pages.get("/meters", permission=Permission.VIEW, nav=("nav.meters", 55))
async def meter_tree(call: PageCall) -> web.StreamResponse:
    topology = call.ctx[TOPOLOGY]
    start, end, period_error = _dates(call, topology)
    t0, t1 = _bounds(topology, start, end)
    snap = topology.snapshot
    now = topology.clock()
    poller = call.ctx.get(MODBUS)

    def device_state(meter_id: str) -> str | None:
        stats = poller.device_stats(meter_id) if poller is not None else []
        return stats[0].state if stats else None

    active = [m for m in snap.meters.values() if m.active]
    meters = {m["id"]: m for m in topology.meters_json(active, device_state)}
    source = topology.usage_source()
    history_error = None
    try:
        usages = await source.usage([Span(m.id, t0, t1) for m in active])
        losses = {r.meter_id: r for r in await compute_losses(source, snap, t0, t1)}
    except BackendError as exc:
        usages, losses, history_error = [], {}, str(exc)
    for u in usages:
        meters[u.meter_id]["consumption"] = _num(u.quantity)
        meters[u.meter_id]["estimated"] = u.estimated
    for meter_id, row in losses.items():
        if meter_id in meters:
            meters[meter_id]["loss"] = {"loss": _num(row.loss), "pct": _num(row.loss_pct), "estimated": row.estimated,
                                        "children": _num(row.children_total)}
    parents = snap.tree.parents_at(now)
    children: dict[str, list[str]] = {}
    for child, parent in parents.items():
        if child in meters and parent in meters:
            children.setdefault(parent, []).append(child)

    def order(meter_id: str) -> tuple[int, str]:
        return ROLE_ORDER.get(meters[meter_id]["role"], 9), meter_id

    for kids in children.values():
        kids.sort(key=order)
    roots_by_building: dict[str, list[str]] = {}
    for meter_id, m in meters.items():
        # a virtual meter is a node of the tree when meters hang below it (a losses parent):
        # without it there its children, whose parent it is, would be shown nowhere
        if meter_id not in parents and (m["role"] != "virtual" or children.get(meter_id)):
            roots_by_building.setdefault(m["building"], []).append(meter_id)
    buildings = [
        {"id": b.id, "name": b.name, "roots": sorted(roots_by_building.get(b.id, []), key=order)}
        for b in sorted(snap.buildings.values(), key=lambda b: b.id)
    ]
    virtual = sorted((m for m in meters.values() if m["role"] == "virtual"), key=lambda m: m["id"])
    manual = sorted((m for m in meters.values() if m["manual"]), key=lambda m: m["id"])
    rooms = {r.id: r.name for r in snap.rooms.values()}
    return render(
        call.request, "meters.html", meters=meters, children=children, buildings=buildings, virtual=virtual, manual=manual,
        rooms=rooms, units=UNIT_OF_KIND, start=start.isoformat(), end=end.isoformat(), period_error=period_error,
        history_error=history_error, can_read=call.user.can(Permission.METER_SERVICE),
        now_local=now.astimezone(topology.tz).strftime("%Y-%m-%dT%H:%M"),
    )


@pages.get("/losses", permission=Permission.VIEW, nav=("nav.losses", 56))
async def losses_page(call: PageCall) -> web.StreamResponse:
    topology = call.ctx[TOPOLOGY]
    today = topology.clock().astimezone(topology.tz).date()
    month = call.request.query.get("month") or today.strftime("%Y-%m")
    try:
        first = dt.date.fromisoformat(month + "-01")
    except ValueError:
        first = today.replace(day=1)
        month = first.strftime("%Y-%m")
    following = (first + dt.timedelta(days=32)).replace(day=1)
    t0, t1 = _bounds(topology, first, following)
    snap = topology.snapshot
    history_error = None
    try:
        rows = [r.as_json(topology.tz) for r in await topology.losses(t0, t1)]
    except BackendError as exc:
        rows, history_error = [], str(exc)
    parents = [r["meter"] for r in rows]
    meter = call.request.query.get("meter")
    if meter not in parents:
        meter = parents[0] if parents else None
    limit = call.ctx[CONFIG].alarms.resolved_classes()["loss_high"].limit
    chart_to = max(first + dt.timedelta(days=1), min(following, today + dt.timedelta(days=1)))  # no bars for days to come
    return render(
        call.request, "losses.html", rows=rows, parents=parents, meter=meter, month=month, first=first.isoformat(),
        following=chart_to.isoformat(), limit=limit, history_error=history_error,
        kinds={m.id: m.kind for m in snap.meters.values()},
    )


@pages.get("/apportionment", permission=Permission.VIEW, nav=("nav.apportionment", 57))
async def apportionment_page(call: PageCall) -> web.StreamResponse:
    topology = call.ctx[TOPOLOGY]
    rules = [r.as_json() for r in await topology.apportionment.rules()]
    runs = await topology.apportionment.runs(limit=20)
    today = topology.clock().astimezone(topology.tz).date()
    last_month_end = today.replace(day=1)
    last_month = (last_month_end - dt.timedelta(days=1)).replace(day=1)
    snap = topology.snapshot
    sources = sorted(m.id for m in snap.meters.values() if m.active and m.role != "tenant")
    parents = sorted(set(snap.tree.parents_at(topology.clock()).values()))
    context: dict[str, Any] = {
        "rules": rules, "runs": runs, "sources": sources + [f"loss:{p}" for p in parents],
        "floors": sorted(snap.floors.values(), key=lambda f: f.id), "buildings": sorted(snap.buildings.values(), key=lambda b: b.id),
        "preview_from": last_month.isoformat(), "preview_to": last_month_end.isoformat(), "period": last_month.strftime("%Y-%m"),
        "can_edit": call.user.can(Permission.TARIFF_MANAGE), "can_run": call.user.can(Permission.ACCOUNT_MANAGE),
    }
    return render(call.request, "apportionment.html", **context)
