"""Sources, delay-on/off, deadband, balance levels, flood control, exposure tags, restart."""

from __future__ import annotations

from datetime import timedelta

from scada.alarms.alarm import AlarmState
from scada.alarms.config import AlarmsConfig
from scada.alarms.operations import acknowledge
from scada.alarms.store import AlarmFilter
from scada.db import Database
from tags import Quality, QualityReason, TagWrite

from .site import MAINT, build_site, engine_for, no_delays, site_toml

S = AlarmState


async def test_delay_on_and_off_absorb_chattering(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    config = no_delays(classes={"comm_loss": {"delay_on_s": 30.0, "delay_off_s": 10.0}})
    async with engine_for(db, assets, config) as engine:
        tags, clock = engine.tagdb, engine.clock
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        # a flapping meter: down for 20 s, up, down again: never 30 s in a row
        for _ in range(5):
            tags.write("E-R001.comm_ok", False)
            await engine.settle()
            clock.advance(20)
            await engine.settle()
            tags.write("E-R001.comm_ok", True)
            await engine.settle()
            clock.advance(5)
        assert engine.active() == []
        tags.write("E-R001.comm_ok", False)
        await engine.settle()
        clock.advance(29)
        await engine.settle()
        assert engine.active() == []
        clock.advance(1)
        await engine.settle()
        [alarm] = engine.active()
        assert alarm.raised_at == clock.now()
        # up for 5 s then down again: no clear
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        clock.advance(5)
        tags.write("E-R001.comm_ok", False)
        await engine.settle()
        clock.advance(60)
        await engine.settle()
        assert engine.get(alarm.id).state is S.ACTIVE_UNACK and engine.get(alarm.id).activations == 1  # type: ignore[union-attr]
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        clock.advance(10)
        await engine.settle()
        assert engine.get(alarm.id).state is S.CLEARED_UNACK  # type: ignore[union-attr]


async def test_over_power_with_deadband_and_bad_quality(db: Database) -> None:
    assets = await build_site(db, site_toml(2, max_power_kw="10"))
    config = no_delays(classes={"over_power": {"deadband_pct": 10.0}})
    async with engine_for(db, assets, config) as engine:
        tags = engine.tagdb
        tags.write("E-R001.power", 9.9)
        await engine.settle()
        assert engine.active() == []
        tags.write("E-R001.power", 10.5)
        await engine.settle()
        [alarm] = engine.active()
        assert alarm.alarm_class == "over_power" and alarm.detail == "10.5 kW, limit 10 kW"
        # inside the deadband (9..10 kW): still active
        tags.write("E-R001.power", 9.5)
        await engine.settle()
        assert engine.get(alarm.id).condition_active  # type: ignore[union-attr]
        # a bad reading says nothing about power
        tags.write("E-R001.power", None, Quality.BAD, QualityReason.COMM_FAILURE)
        await engine.settle()
        assert engine.get(alarm.id).condition_active  # type: ignore[union-attr]
        tags.write("E-R001.power", 8.9)
        await engine.settle()
        assert engine.get(alarm.id).state is S.CLEARED_UNACK  # type: ignore[union-attr]


async def test_historian_buffer_and_boolean_sources(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    async with engine_for(db, assets) as engine:
        tags = engine.tagdb
        tags.write("system:historian.buffer_fill", 0.5)
        tags.write("E-R001.review_hold", True, detail="jump")
        tags.write("E-R001.reverse_energy", True)
        tags.write("E-R001.tamper", False)
        await engine.settle()
        assert {a.alarm_class for a in engine.active()} == {"review_hold", "reverse_energy"}
        tags.write("system:historian.buffer_fill", 0.85)
        await engine.settle()
        [buffer] = engine.active(AlarmFilter(classes=frozenset({"historian_buffer"})))
        assert buffer.object_type == "system" and buffer.detail == "buffer 85% full (limit 80%)"
        assert buffer.message == "Historian buffer filling: historian"


async def test_balance_levels_one_alarm_per_level(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    async with engine_for(db, assets) as engine:
        tags = engine.tagdb
        seen = []
        for level in (0, 1, 2, 3):
            tags.write("room:R001.alarm_level", level)
            await engine.settle()
            seen.append([(a.alarm_class, a.state.value) for a in engine.active() if a.condition_active])
        assert seen == [
            [],
            [("balance_low", "active_unack")],
            [("balance_very_low", "active_unack")],
            [("balance_exhausted", "active_unack")],
        ]
        # the lower levels cleared when the next level came, waiting for acknowledgement
        assert sorted((a.alarm_class, a.state.value) for a in engine.active()) == [
            ("balance_exhausted", "active_unack"),
            ("balance_low", "cleared_unack"),
            ("balance_very_low", "cleared_unack"),
        ]
        assert all(a.room_id == "R001" and a.object_type == "room" for a in engine.active())
        assert tags.read("room:R001.alarm_priority").value == 3
        assert tags.read("room:R001.active_alarms").value == 3


async def test_flood_one_link_alarm_for_200_meters(db: Database) -> None:
    assets = await build_site(db, site_toml(200, link="gw-9"))
    config = no_delays(classes={"link_down": {"delay_on_s": 5.0}, "comm_loss": {"delay_on_s": 30.0}})
    async with engine_for(db, assets, config) as engine:
        tags, clock = engine.tagdb, engine.clock
        meters = [m.id for m in assets.snapshot.meters_on_link("gw-9")]
        assert len(meters) == 200
        tags.write_many([TagWrite(f"{m}.comm_ok", True) for m in meters] + [TagWrite("link:gw-9.comm_ok", True)])
        await engine.settle()
        # one meter dies first, alone: it alarms on its own
        tags.write(f"{meters[0]}.comm_ok", False)
        await engine.settle()
        clock.advance(30)
        await engine.settle()
        [single] = engine.active()
        assert single.meter_id == meters[0]

        # the gateway goes down: the poller reports every meter and the link
        tags.write_many([TagWrite(f"{m}.comm_ok", False) for m in meters] + [TagWrite("link:gw-9.comm_ok", False)])
        await engine.settle()
        for _ in range(12):
            clock.advance(10)
            await engine.settle()
        active = engine.active()
        assert [(a.alarm_class, a.object_id) for a in active] == [("link_down", "gw-9")]
        assert engine.get(single.id).state is S.SUPPRESSED  # type: ignore[union-attr]
        # every meter shows the alarm that stands for it; one standing alarm in all
        assert {tags.read(f"{m}.active_alarms").value for m in meters} == {1}
        assert tags.read("room:R001.alarm_priority").value == 3
        assert tags.read("system:alarms.standing").value == 1
        async with db.sessions() as s:
            from sqlalchemy import func, select

            from scada.alarms.models import AlarmRow

            assert await s.scalar(select(func.count()).select_from(AlarmRow)) == 2

        # the gateway recovers with all but two meters
        still_dead = set(meters[5:7])
        tags.write_many([TagWrite(f"{m}.comm_ok", m not in still_dead) for m in meters])
        tags.write("link:gw-9.comm_ok", True)
        await engine.settle()
        link_alarm = next(a for a in engine.active() if a.alarm_class == "link_down")
        assert link_alarm.state is S.CLEARED_UNACK
        await engine.acknowledge(link_alarm.id, MAINT, "gateway power restored")
        clock.advance(30)
        await engine.settle()
        remaining = sorted(a.meter_id for a in engine.active())
        assert remaining == sorted(still_dead)
        assert (await engine.find(single.id)).state is S.NORMAL  # type: ignore[union-attr]
        assert tags.read(f"{meters[0]}.active_alarms").value == 0
        assert tags.read(f"{meters[5]}.active_alarms").value == 1


async def test_restart_keeps_open_alarms_and_cli_changes_are_picked_up(db: Database) -> None:
    assets = await build_site(db, site_toml(2))
    config = no_delays()
    async with engine_for(db, assets, config) as engine:
        engine.tagdb.write("E-R001.comm_ok", False)
        engine.tagdb.write("E-R002.comm_ok", False)
        await engine.settle()
        by_meter = {a.meter_id: a.id for a in engine.active()}
        ids = [by_meter["E-R001"], by_meter["E-R002"]]
        clock = engine.clock
    async with engine_for(db, assets, config, clock=clock) as engine:
        assert sorted(a.id for a in engine.active()) == sorted(ids)
        sub = engine.subscribe(name="test")
        # the command line acknowledges in the database, not through this engine
        await acknowledge(db, ids[0], MAINT, "from the shell", config.resolved_classes(), clock.now())
        assert engine.get(ids[0]).state is S.ACTIVE_UNACK  # type: ignore[union-attr]
        assert await engine.sync() == 1
        assert engine.get(ids[0]).state is S.ACTIVE_ACK  # type: ignore[union-attr]
        [event] = sub.drain()
        assert event.event == "acknowledge" and event.transition.actor == "max"
        # and the engine goes on from the version the shell wrote
        engine.tagdb.write("E-R001.comm_ok", True)
        await engine.settle()
        assert (await engine.find(ids[0])).state is S.NORMAL  # type: ignore[union-attr]
        sub.close()


async def test_disabled_class_raises_nothing(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    config = AlarmsConfig.model_validate({"classes": {"tamper": {"enabled": False}}})
    async with engine_for(db, assets, config) as engine:
        engine.tagdb.write("E-R001.tamper", True)
        await engine.settle()
        engine.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
        await engine.settle()
        assert engine.active() == []
