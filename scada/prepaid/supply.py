"""Carrying out supply decisions: relay/valve commands for a room's meters, one room at a time.

The policy (:mod:`.policy`) says what should happen; this module makes it so through a
:class:`SupplySwitch` (the command path: queued, authorised, audited, confirmed by read-back)
and records the room's supply state as it goes: ``on → cutting → off`` and
``off → restoring → on``. A command that is not confirmed leaves the state at ``cutting`` or
``restoring`` and is retried after ``retry_s`` (the command path raises the meter's
``relay_fault``). Without a switch, decisions are logged and nothing is pretended.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from scada.commands.service import CommandKind, CommandRequest, CommandService
from scada.prepaid.ledger import AccountView
from scada.prepaid.policy import (
    Action,
    Decision,
    FriendlyCalendar,
    SupplyFacts,
    SupplyState,
    decide,
    transition,
)
from scada.users.audit import Actor

__all__ = ["CommandSwitch", "SupplyController", "SupplySwitch", "SwitchResult", "facts_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SwitchResult:
    ok: bool
    detail: str = ""


class SupplySwitch(Protocol):
    """Connects or disconnects one meter's relay or valve, returning once confirmed or failed."""

    async def switch(self, meter_id: str, connect: bool, reason: str) -> SwitchResult: ...


class CommandSwitch:
    """The supply switch of the server: the one command path (:mod:`scada.commands.service`), acting
    as ``system:prepaid``; a command counts as done only when the meter confirmed it."""

    def __init__(self, commands: CommandService) -> None:
        self.commands = commands

    async def switch(self, meter_id: str, connect: bool, reason: str) -> SwitchResult:
        kind = CommandKind.CONNECT if connect else CommandKind.DISCONNECT
        result = await self.commands.execute(CommandRequest(meter_id, kind, actor=Actor.system("prepaid"), reason=reason))
        return SwitchResult(result.status == "confirmed", f"{result.status}: {result.detail}" if result.detail else result.status)


def facts_of(view: AccountView, *, operator_release: bool = False) -> SupplyFacts:
    return SupplyFacts(
        open=view.open, balance_minor=view.balance_minor, credit_limit_minor=view.credit_limit_minor,
        emergency_active_minor=view.emergency_active_minor, protected=view.protected,
        friendly_credit=view.friendly_credit, auto_reconnect=view.auto_reconnect,
        state=SupplyState(view.supply_state), operator_release=operator_release,
        postpaid=view.postpaid, overdue_cut=view.dunning_cut,
    )


# records a supply state: (account id, state, reconnect_pending, reason) → the updated view
RecordSupply = Callable[[int, str, bool, str], Awaitable[AccountView | None]]


class SupplyController:
    def __init__(
        self,
        *,
        switch: SupplySwitch | None,
        friendly: FriendlyCalendar,
        record: RecordSupply,
        meters_of_room: Callable[[str], list[str]],
        spawn: Callable[[Callable[[], Awaitable[None]], str], object],
        retry_s: float,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.switch = switch
        self.friendly = friendly
        self.record = record
        self.meters_of_room = meters_of_room
        self.spawn = spawn
        self.retry_s = retry_s
        self.clock = clock
        self._busy: set[str] = set()
        self._failed_at: dict[str, float] = {}
        self._released: set[str] = set()
        self._warned: set[str] = set()
        self.latest: dict[str, AccountView] = {}

    def release(self, room_id: str) -> None:
        """An operator released the reconnect of a room that waits for one."""
        self._released.add(room_id)

    def evaluate(self, view: AccountView, *, force: bool = False) -> Decision:
        """Decide for ``view``'s room and start carrying the decision out if needed."""
        room = view.room_id
        self.latest[room] = view
        facts = facts_of(view, operator_release=room in self._released)
        # the calendar only matters to a cut that is due on an account with friendly credit
        friendly_now = facts.cut_due and facts.friendly_credit and self.friendly.active(self.clock())
        decision = decide(facts, friendly_now=friendly_now)
        pending = decision.waiting == "operator"
        if decision.action is Action.NONE:
            if pending != view.reconnect_pending and room not in self._busy:
                self._busy.add(room)
                self.spawn(lambda: self._mark_pending(view, pending, decision.reason), f"supply-{room}")
            return decision
        if room in self._busy:
            return decision  # the running job re-evaluates when it ends
        failed = self._failed_at.get(room)
        if failed is not None and not force and time.monotonic() - failed < self.retry_s:
            return decision
        if self.switch is None:
            if room not in self._warned:
                self._warned.add(room)
                log.error("supply control unavailable: no command path", extra={"room": room, "action": decision.action.value, "reason": decision.reason})
            return decision
        self._busy.add(room)
        self.spawn(lambda: self._carry_out(view, decision), f"supply-{room}")
        return decision

    async def _mark_pending(self, view: AccountView, pending: bool, reason: str) -> None:
        try:
            await self.record(view.id, view.supply_state, pending, reason)
        finally:
            self._busy.discard(view.room_id)

    async def _carry_out(self, view: AccountView, decision: Decision) -> None:
        room = view.room_id
        connect = decision.action is Action.CONNECT
        try:
            meters = self.meters_of_room(room)
            if not meters:
                if room not in self._warned:
                    self._warned.add(room)
                    log.error("room has no meter with remote supply control; supply left as it is", extra={"room": room, "action": decision.action.value})
                self._failed_at[room] = time.monotonic()
                return
            current = SupplyState(view.supply_state)
            moving = transition(current, SupplyState.RESTORING if connect else SupplyState.CUTTING)
            updated = await self.record(view.id, moving.value, False, decision.reason)
            if updated is not None:
                self.latest[room] = updated
            failures = []
            for meter_id in meters:
                assert self.switch is not None
                result = await self.switch.switch(meter_id, connect, decision.reason)
                if not result.ok:
                    failures.append(f"{meter_id}: {result.detail}")
            if failures:
                self._failed_at[room] = time.monotonic()
                log.warning("supply command not confirmed; will retry", extra={"room": room, "connect": connect, "failures": "; ".join(failures)})
                return
            self._failed_at.pop(room, None)
            done = transition(moving, SupplyState.ON if connect else SupplyState.OFF)
            updated = await self.record(view.id, done.value, False, decision.reason)
            if connect:
                self._released.discard(room)
            if updated is not None:
                self.latest[room] = updated
            log.info("supply switched", extra={"room": room, "state": done.value, "reason": decision.reason})
        finally:
            self._busy.discard(room)
        latest = self.latest.get(room)
        if latest is not None:
            self.evaluate(latest)

    async def idle(self) -> None:
        """Wait until no supply job runs (tests and shutdown)."""
        while self._busy:
            await asyncio.sleep(0.01)
