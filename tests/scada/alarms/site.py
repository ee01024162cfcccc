"""A real site in a real database for the alarm tests: rooms, meters, links."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from scada.alarms.clock import ManualClock
from scada.alarms.config import AlarmsConfig
from scada.alarms.engine import AlarmEngine
from scada.db import Database
from scada.site.assets import AssetRegistry
from scada.site.importer import apply_site, parse_toml
from scada.users.audit import Actor
from tags import DataType, TagDB, TagMeta

__all__ = ["MAINT", "OPERATOR", "VIEWER", "build_site", "engine_for", "site_toml"]

OPERATOR = Actor("olga", "api", "operator")
MAINT = Actor("max", "api", "maintenance")
VIEWER = Actor("vic", "api", "viewer")
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def site_toml(rooms: int = 4, *, link: str = "gw-1", max_power_kw: str | None = "10") -> str:
    """``rooms`` rooms R001.., one electricity meter E-R001.. each, all on ``link``."""
    out = [
        '[site]\nid = "t"\nname = "T"\ntimezone = "Asia/Shanghai"\n',
        '[[buildings]]\nid = "B1"\nname = "B1"\n',
        '[[floors]]\nid = "F1"\nbuilding = "B1"\nlevel = 1\nname = "F1"\n',
    ]
    for i in range(1, rooms + 1):
        out.append(f'[[rooms]]\nid = "R{i:03d}"\nfloor = "F1"\nname = "{100 + i}"\n')
        power = f'max_power_kw = "{max_power_kw}"\n' if max_power_kw else ""
        out.append(
            f'[[meters]]\nid = "E-R{i:03d}"\nkind = "electricity"\nroom = "R{i:03d}"\nprofile = "p"\n'
            f'link = "{link}"\nunit_id = {i % 247 + 1}\n{power}'
        )
    return "\n".join(out)


async def build_site(db: Database, text: str) -> AssetRegistry:
    await apply_site(db, parse_toml(text, "<test site>"), Actor.system("test"))
    assets = AssetRegistry(db)
    await assets.load()
    return assets


def register_condition_tags(tagdb: TagDB, assets: AssetRegistry) -> None:
    """What the poller and the prepaid engine register (they are built elsewhere)."""
    snap = assets.snapshot
    links = {m.link for m in snap.meters.values()}
    for m in snap.meters.values():
        for point, dt in (("comm_ok", DataType.BOOL), ("relay_fault", DataType.BOOL), ("review_hold", DataType.BOOL),
                          ("tamper", DataType.BOOL), ("reverse_energy", DataType.BOOL), ("power", DataType.FLOAT)):
            tagdb.register(TagMeta(f"{m.id}.{point}", dt, unit="kW" if point == "power" else "", meter_id=m.id, point=point))
    for r in snap.rooms.values():
        tagdb.register(TagMeta(f"room:{r.id}.alarm_level", DataType.INT, room_id=r.id, point="alarm_level"))
        tagdb.register(TagMeta(f"room:{r.id}.balance", DataType.FLOAT, room_id=r.id, point="balance"))
    for link in links:
        tagdb.register(TagMeta(f"link:{link}.comm_ok", DataType.BOOL, point="comm_ok"))
    tagdb.register(TagMeta("system:historian.buffer_fill", DataType.FLOAT, point="buffer_fill"))


@asynccontextmanager
async def engine_for(
    db: Database, assets: AssetRegistry, config: AlarmsConfig | None = None, *, tagdb: TagDB | None = None,
    clock: ManualClock | None = None,
) -> AsyncIterator[AlarmEngine]:
    tagdb = tagdb or TagDB()
    if not any(True for _ in tagdb.names()):
        register_condition_tags(tagdb, assets)
    engine = AlarmEngine(db, tagdb, assets, config or no_delays(), clock=clock or ManualClock(START))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


def no_delays(**extra: object) -> AlarmsConfig:
    """Every class without delays, so each test states the delays it is about."""
    from scada.alarms.classes import BUILTIN

    classes = {name: {"delay_on_s": 0.0, "delay_off_s": 0.0} for name in BUILTIN}
    for name, override in dict(extra.pop("classes", {})).items():  # type: ignore[arg-type]
        classes[name] = {**classes[name], **override}
    return AlarmsConfig.model_validate({"classes": classes, **extra})
