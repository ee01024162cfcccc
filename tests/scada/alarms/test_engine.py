"""The alarm engine fed through a real TagDB, stored in a real database (SQLite and PostgreSQL).

Time is a manual clock: delays and shelving expiry are stepped through, never slept through.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from scada.alarms.alarm import AlarmState, Priority
from scada.alarms.lifecycle import IllegalTransition
from scada.alarms.operations import NotPermitted
from scada.alarms.store import AlarmFilter
from scada.db import Database
from scada.users.audit import AuditLog
from scada.users.models import AuditEntry

from .site import MAINT, OPERATOR, VIEWER, build_site, engine_for, no_delays, site_toml

S = AlarmState


async def states(engine, alarm_id: int) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(t.event, t.from_state.value, t.to_state.value) for t in await engine.transitions(alarm_id)]


async def test_raise_acknowledge_clear(db: Database) -> None:
    assets = await build_site(db, site_toml(2))
    async with engine_for(db, assets) as engine:
        tags, clock = engine.tagdb, engine.clock
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        assert engine.active() == []

        t_raise = clock.now()
        tags.write("E-R001.comm_ok", False)
        await engine.settle()
        [alarm] = engine.active()
        assert alarm.state is S.ACTIVE_UNACK and alarm.alarm_class == "comm_loss"
        assert alarm.priority is Priority.MEDIUM and alarm.raised_at == t_raise
        assert alarm.meter_id == "E-R001" and alarm.room_id == "R001" and alarm.link == "gw-1"
        assert alarm.message == "Communication lost: meter E-R001 (room 101)"

        clock.advance(60)
        acked = await engine.acknowledge(alarm.id, OPERATOR, "crew sent")
        assert acked.state is S.ACTIVE_ACK
        assert (acked.acked_by, acked.ack_reason, acked.acked_at) == ("olga", "crew sent", clock.now())

        clock.advance(60)
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        assert engine.active() == [] and engine.get(alarm.id) is None
        stored = await engine.find(alarm.id)
        assert stored is not None and stored.state is S.NORMAL
        assert stored.cleared_at == clock.now() and stored.closed_at == clock.now()
        assert await states(engine, alarm.id) == [
            ("activate", "normal", "active_unack"),
            ("acknowledge", "active_unack", "active_ack"),
            ("clear", "active_ack", "normal"),
        ]
        [ack] = [t for t in await engine.transitions(alarm.id) if t.event == "acknowledge"]
        assert (ack.actor, ack.reason) == ("olga", "crew sent")
        # the acknowledgement is audited in the same transaction
        [entry] = await AuditLog(db).query(action="alarm.acknowledge")
        assert (entry.actor, entry.target_id, entry.reason) == ("olga", str(alarm.id), "crew sent")
        assert entry.before["state"] == "active_unack" and entry.after["state"] == "active_ack"


async def test_cleared_unacknowledged_then_acknowledged_or_reactivated(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    async with engine_for(db, assets) as engine:
        tags = engine.tagdb
        tags.write("E-R001.relay_fault", True)
        await engine.settle()
        [alarm] = engine.active()
        tags.write("E-R001.relay_fault", False)
        await engine.settle()
        [cleared] = engine.active()
        assert cleared.id == alarm.id and cleared.state is S.CLEARED_UNACK and not cleared.condition_active
        # it comes back before anyone acknowledged it: the same occurrence, active again
        tags.write("E-R001.relay_fault", True)
        await engine.settle()
        [again] = engine.active()
        assert again.id == alarm.id and again.state is S.ACTIVE_UNACK and again.activations == 2
        tags.write("E-R001.relay_fault", False)
        await engine.settle()
        done = await engine.acknowledge(alarm.id, MAINT, "relay replaced")
        assert done.state is S.NORMAL and done.closed_at is not None
        assert engine.active() == []
        assert await states(engine, alarm.id) == [
            ("activate", "normal", "active_unack"),
            ("clear", "active_unack", "cleared_unack"),
            ("activate", "cleared_unack", "active_unack"),
            ("clear", "active_unack", "cleared_unack"),
            ("acknowledge", "cleared_unack", "normal"),
        ]
        # a new occurrence next time
        tags.write("E-R001.relay_fault", True)
        await engine.settle()
        [next_one] = engine.active()
        assert next_one.id != alarm.id


async def test_acknowledge_is_refused_clearly(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    config = no_delays(classes={"tamper": {"ack_roles": ["maintenance"]}})
    async with engine_for(db, assets, config) as engine:
        engine.tagdb.write("E-R001.tamper", True)
        await engine.settle()
        [alarm] = engine.active()
        with pytest.raises(NotPermitted, match="role operator may not acknowledge tamper alarms"):
            await engine.acknowledge(alarm.id, OPERATOR)
        with pytest.raises(NotPermitted, match="role viewer may not alarm_ack"):
            await engine.acknowledge(alarm.id, VIEWER)
        await engine.acknowledge(alarm.id, MAINT, "seal checked")
        with pytest.raises(IllegalTransition, match="already acknowledged"):
            await engine.acknowledge(alarm.id, MAINT)
        assert engine.get(alarm.id).state is S.ACTIVE_ACK  # type: ignore[union-attr]
        # nothing of the refusals was stored
        async with db.sessions() as s:
            acks = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "alarm.acknowledge"))).all()
        assert len(acks) == 1


async def test_shelving_expires_on_the_clock(db: Database) -> None:
    assets = await build_site(db, site_toml(2))
    async with engine_for(db, assets) as engine:
        tags, clock = engine.tagdb, engine.clock
        tags.write_many([])
        tags.write("E-R001.comm_ok", False)
        tags.write("E-R002.comm_ok", False)
        await engine.settle()
        a1, a2 = sorted(engine.active(), key=lambda a: a.meter_id or "")
        s1 = await engine.shelve(a1.id, MAINT, "known fault, crew tomorrow", timedelta(minutes=30))
        await engine.shelve(a2.id, MAINT, "known fault", timedelta(minutes=30))
        assert s1.state is S.SHELVED and s1.shelved_until == clock.now() + timedelta(minutes=30)
        assert (s1.shelved_by, s1.shelve_reason) == ("max", "known fault, crew tomorrow")
        assert engine.active() == []
        # meter 2 recovers while shelved: recorded, still shelved
        tags.write("E-R002.comm_ok", True)
        await engine.settle()
        assert engine.get(a2.id).state is S.SHELVED and not engine.get(a2.id).condition_active  # type: ignore[union-attr]

        clock.advance(timedelta(minutes=29))
        await engine.settle()
        assert engine.active() == []
        clock.advance(timedelta(minutes=1))
        await engine.settle()
        # meter 1 is still down: presented again, unacknowledged; meter 2's alarm ended
        [back] = engine.active()
        assert back.id == a1.id and back.state is S.ACTIVE_UNACK
        assert (await engine.find(a2.id)).state is S.NORMAL  # type: ignore[union-attr]
        assert await states(engine, a2.id) == [
            ("activate", "normal", "active_unack"),
            ("shelve", "active_unack", "shelved"),
            ("clear", "shelved", "shelved"),
            ("unshelve", "shelved", "normal"),
        ]
        [expiry] = [t for t in await engine.transitions(a1.id) if t.event == "unshelve"]
        assert (expiry.actor, expiry.reason) == ("system:alarms", "shelving expired")


async def test_shelving_rules(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    config = no_delays(classes={"tamper": {"shelvable": False}}, max_shelve_hours=8)
    async with engine_for(db, assets, config) as engine:
        engine.tagdb.write("E-R001.tamper", True)
        engine.tagdb.write("E-R001.relay_fault", True)
        await engine.settle()
        by_class = {a.alarm_class: a for a in engine.active()}
        with pytest.raises(IllegalTransition, match="tamper alarms may not be shelved"):
            await engine.shelve(by_class["tamper"].id, MAINT, "noisy", timedelta(hours=1))
        with pytest.raises(NotPermitted, match="role operator may not alarm_shelve"):
            await engine.shelve(by_class["relay_fault"].id, OPERATOR, "noisy", timedelta(hours=1))
        with pytest.raises(ValueError, match="at most 8 h"):
            await engine.shelve(by_class["relay_fault"].id, MAINT, "noisy", timedelta(hours=9))
        with pytest.raises(ValueError, match="reason"):
            await engine.shelve(by_class["relay_fault"].id, MAINT, " ", timedelta(hours=1))
        shelved = await engine.shelve(by_class["relay_fault"].id, MAINT, "noisy", timedelta(hours=1))
        back = await engine.unshelve(shelved.id, MAINT, "fixed the wiring? no")
        assert back.state is S.ACTIVE_UNACK and back.shelved_until is None


async def test_out_of_service_meter(db: Database) -> None:
    assets = await build_site(db, site_toml(2))
    async with engine_for(db, assets) as engine:
        tags = engine.tagdb
        tags.write("E-R001.comm_ok", False)
        await engine.settle()
        [alarm] = engine.active()
        with pytest.raises(NotPermitted):
            await engine.set_out_of_service("meter", "E-R001", OPERATOR, "maintenance")
        await engine.set_out_of_service("meter", "E-R001", MAINT, "meter being replaced")
        assert engine.active() == [] and engine.get(alarm.id).state is S.OUT_OF_SERVICE  # type: ignore[union-attr]
        # nothing new is raised for it while it is out of service
        tags.write("E-R001.tamper", True)
        await engine.settle()
        assert engine.active() == []
        # ... but other meters alarm as usual
        tags.write("E-R002.tamper", True)
        await engine.settle()
        assert [a.meter_id for a in engine.active()] == ["E-R002"]
        # back in service: what is still wrong is presented, unacknowledged
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        await engine.return_to_service("meter", "E-R001", MAINT, "new meter fitted")
        active = {a.alarm_class for a in engine.active(AlarmFilter(meter_id="E-R001"))}
        assert active == {"tamper"}
        assert (await engine.find(alarm.id)).state is S.NORMAL  # type: ignore[union-attr]
        [oos, back] = [t for t in await engine.transitions(alarm.id) if t.event.endswith("service")]
        assert (oos.actor, oos.reason, back.actor, back.reason) == ("max", "meter being replaced", "max", "new meter fitted")
        actions = sorted(e.action for e in await AuditLog(db).query(target_id="E-R001", action="alarm."))
        assert actions == ["alarm.out_of_service", "alarm.return_to_service"]
        with pytest.raises(IllegalTransition, match="not out of service"):
            await engine.return_to_service("meter", "E-R001", MAINT)
        with pytest.raises(LookupError, match="no meter 'nope'"):
            await engine.set_out_of_service("meter", "nope", MAINT, "x")


async def test_refused_write_is_retried_and_nothing_unstored_is_shown(db: Database) -> None:
    """When the database refuses the transitions, the engine keeps the points dirty, shows
    nothing it could not store, and catches up once it can write again."""
    from sqlalchemy import text

    assets = await build_site(db, site_toml(2))
    async with engine_for(db, assets) as engine:
        tags, clock = engine.tagdb, engine.clock
        async with db.transaction() as s:
            await s.execute(text("ALTER TABLE alarm_transitions RENAME TO alarm_transitions_away"))
        tags.write("E-R001.comm_ok", False)
        await engine.settle()
        assert engine.active() == [] and engine.stats()["store_ok"] is False
        assert tags.read("system:alarms.standing").value == 0
        tags.write("E-R002.comm_ok", False)  # more arrives while the store is away
        await engine.settle()
        async with db.transaction() as s:
            await s.execute(text("ALTER TABLE alarm_transitions_away RENAME TO alarm_transitions"))
        clock.advance(4)  # past the backoff
        await engine.settle()
        assert sorted(a.meter_id for a in engine.active()) == ["E-R001", "E-R002"]  # type: ignore[type-var]
        assert engine.stats()["store_ok"] is True and tags.read("system:alarms.standing").value == 2
        for alarm in engine.active():
            assert await states(engine, alarm.id) == [("activate", "normal", "active_unack")]


async def test_subscribers_and_count_tags_follow_every_transition(db: Database) -> None:
    assets = await build_site(db, site_toml(2))
    async with engine_for(db, assets) as engine:
        tags = engine.tagdb
        sub = engine.subscribe(name="console")
        small = engine.subscribe(maxsize=1, name="slow")
        tags.write("E-R001.comm_ok", False)
        tags.write("room:R001.alarm_level", 2)
        await engine.settle()
        assert tags.read("E-R001.active_alarms").value == 1
        assert tags.read("room:R001.active_alarms").value == 2  # the room's own and its meter's
        assert tags.read("room:R001.alarm_priority").value == int(Priority.MEDIUM)
        assert tags.read("room:R002.alarm_priority").value == 0
        assert tags.read("system:alarms.unacknowledged").value == 2
        comm = next(a for a in engine.active() if a.alarm_class == "comm_loss")
        await engine.acknowledge(comm.id, OPERATOR)
        assert tags.read("system:alarms.unacknowledged").value == 1
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        assert tags.read("E-R001.active_alarms").value == 0 and tags.read("room:R001.active_alarms").value == 1
        events = [(e.alarm.alarm_class, e.event, e.transition.to_state.value) for e in sub.drain()]
        assert sorted(events[:2]) == [("balance_very_low", "activate", "active_unack"), ("comm_loss", "activate", "active_unack")]
        assert events[2:] == [("comm_loss", "acknowledge", "active_ack"), ("comm_loss", "clear", "normal")]
        # a subscriber that falls behind keeps the newest event of each alarm
        latest = {e.alarm.id: e.alarm.state for e in small.drain()}
        assert latest == {comm.id: S.NORMAL, next(a.id for a in engine.active()): S.ACTIVE_UNACK}
        sub.close()
        small.close()


async def test_meter_removed_from_the_registry_clears_its_alarms(db: Database) -> None:
    assets = await build_site(db, site_toml(2))
    async with engine_for(db, assets) as engine:
        engine.tagdb.write("E-R001.comm_ok", False)
        await engine.settle()
        [alarm] = engine.active()
        await assets.replace_meter("E-R001", "E-R001b", MAINT, reason="burnt out")
        await engine.settle()
        [after] = engine.active()
        assert after.id == alarm.id and after.state is S.CLEARED_UNACK and after.detail == "meter no longer active"
        assert "E-R001b.active_alarms" in engine.tagdb and "E-R001.active_alarms" not in engine.tagdb


async def test_confirm_and_comment_are_recorded_and_audited(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    async with engine_for(db, assets) as engine:
        engine.tagdb.write("E-R001.relay_fault", True)
        await engine.settle()
        [alarm] = engine.active()
        with pytest.raises(IllegalTransition, match="not acknowledged"):
            await engine.confirm(alarm.id, OPERATOR)
        acked = await engine.acknowledge(alarm.id, OPERATOR, "crew sent")
        assert (acked.comment, acked.comment_by) == ("crew sent", "olga")
        with pytest.raises(NotPermitted, match="role viewer may not alarm_ack"):
            await engine.comment(alarm.id, VIEWER, "looks odd")
        with pytest.raises(ValueError, match="comment"):
            await engine.comment(alarm.id, OPERATOR, "  ")
        commented = await engine.comment(alarm.id, MAINT, "relay replaced")
        assert (commented.state, commented.comment, commented.comment_by) == (S.ACTIVE_ACK, "relay replaced", "max")
        confirmed = await engine.confirm(alarm.id, OPERATOR, "works again")
        assert (confirmed.confirmed_by, confirmed.comment) == ("olga", "works again") and confirmed.confirmed_at is not None
        assert engine.get(alarm.id) == confirmed  # in memory at once (the console reads it there)
        with pytest.raises(IllegalTransition, match="already confirmed"):
            await engine.confirm(alarm.id, OPERATOR)
        assert await states(engine, alarm.id) == [
            ("activate", "normal", "active_unack"),
            ("acknowledge", "active_unack", "active_ack"),
            ("comment", "active_ack", "active_ack"),
            ("confirm", "active_ack", "active_ack"),
        ]
        async with db.sessions() as s:
            actions = [e.action for e in (await s.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()]
        assert [a for a in actions if a.startswith("alarm.")] == ["alarm.acknowledge", "alarm.comment", "alarm.confirm"]
        # presented again unacknowledged: the confirmation no longer counts
        engine.tagdb.write("E-R001.relay_fault", False)
        await engine.settle()
        assert (await engine.find(alarm.id)).state is S.NORMAL  # type: ignore[union-attr]
        engine.tagdb.write("E-R001.relay_fault", True)
        await engine.settle()
        [again] = engine.active()
        assert again.id != alarm.id and again.confirmed_at is None


async def test_one_shot_shelving_ends_when_the_condition_clears(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    async with engine_for(db, assets, no_delays(max_shelve_hours=4)) as engine:
        tags, clock = engine.tagdb, engine.clock
        tags.write("E-R001.comm_ok", False)
        await engine.settle()
        [alarm] = engine.active()
        shelved = await engine.shelve(alarm.id, MAINT, "until it answers", one_shot=True)
        assert shelved.state is S.SHELVED and shelved.shelve_one_shot
        assert shelved.shelved_until == clock.now() + timedelta(hours=4)  # bounded by the maximum
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        ended = await engine.find(alarm.id)
        assert ended is not None and ended.state is S.NORMAL and not ended.shelve_one_shot
        [unshelve] = [t for t in await engine.transitions(alarm.id) if t.event == "unshelve"]
        assert unshelve.reason == "one-shot shelving ended: the condition cleared"
        with pytest.raises(ValueError, match="duration"):
            await engine.shelve(alarm.id, MAINT, "no duration")
