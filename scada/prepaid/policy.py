"""Cutoff and reconnect policy: when to cut a room's supply and when to restore it (pure).

- Cut when the balance is at or below minus the credit limit (minus the emergency credit if
  the tenant took it), never for a protected account, and never inside a friendly-credit
  window (nights, weekends, public holidays — configurable) when the account has friendly
  credit: the cut then waits for the window to end.
- After a credit lifts the balance above that threshold, reconnect at once when the account
  reconnects automatically, otherwise wait until an operator releases it.
- A closed account's supply is cut.
- A postpaid account is never cut for its balance (a negative balance is its arrears); it is cut
  only when the dunning of its overdue bills asks for it (``overdue_cut``), and then with the
  same friendly-credit windows and protection as any cut.

The supply state follows a small state machine: ``on → cutting → off → restoring → on``
(a cut may turn into a restore and back while commands are under way); an illegal transition
raises.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = [
    "Action",
    "Decision",
    "FriendlyCalendar",
    "FriendlyWindow",
    "IllegalTransition",
    "SupplyFacts",
    "SupplyState",
    "cut_threshold_minor",
    "decide",
    "transition",
]


class SupplyState(str, enum.Enum):
    ON = "on"
    CUTTING = "cutting"
    OFF = "off"
    RESTORING = "restoring"


class IllegalTransition(ValueError):
    pass


_ALLOWED: dict[SupplyState, frozenset[SupplyState]] = {
    SupplyState.ON: frozenset({SupplyState.CUTTING}),
    SupplyState.CUTTING: frozenset({SupplyState.OFF, SupplyState.RESTORING}),
    SupplyState.OFF: frozenset({SupplyState.RESTORING}),
    SupplyState.RESTORING: frozenset({SupplyState.ON, SupplyState.CUTTING}),
}


def transition(current: SupplyState, new: SupplyState) -> SupplyState:
    if new is current:
        return new
    if new not in _ALLOWED[current]:
        raise IllegalTransition(f"supply state cannot go from {current.value} to {new.value}")
    return new


@dataclass(frozen=True, slots=True)
class FriendlyWindow:
    """A daily window starting on ``days`` (ISO weekdays) at ``start`` and ending at ``end``
    (minutes of the day; ``end <= start`` ends on the next day)."""

    days: frozenset[int]
    start: int
    end: int

    def contains(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        weekday = local.isoweekday()
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        yesterday = 7 if weekday == 1 else weekday - 1
        return (weekday in self.days and minute >= self.start) or (yesterday in self.days and minute < self.end)


@dataclass(frozen=True)
class FriendlyCalendar:
    """When no disconnection may happen."""

    tz: ZoneInfo
    windows: tuple[FriendlyWindow, ...] = ()
    weekends: bool = False
    weekend_days: frozenset[int] = frozenset({6, 7})
    holidays: frozenset[dt.date] = frozenset()

    def active(self, now: dt.datetime) -> bool:
        local = now.astimezone(self.tz)
        day = local.date()
        if day in self.holidays:
            return True
        if self.weekends and local.isoweekday() in self.weekend_days:
            return True
        return any(w.contains(local) for w in self.windows)

    def ends_after(
        self,
        now: dt.datetime,
        *,
        step: dt.timedelta = dt.timedelta(minutes=1),
        horizon: dt.timedelta = dt.timedelta(days=14),
    ) -> dt.datetime | None:
        """The first moment (to ``step``) after ``now`` outside every window; None if none within ``horizon``."""
        if not self.active(now):
            return now
        t = now.replace(second=0, microsecond=0)
        end = now + horizon
        while t < end:
            t += step
            if not self.active(t):
                return t
        return None


def cut_threshold_minor(credit_limit_minor: int, emergency_active_minor: int) -> int:
    """The balance at or below which supply is cut."""
    return -(credit_limit_minor + emergency_active_minor)


@dataclass(frozen=True, slots=True)
class SupplyFacts:
    open: bool
    balance_minor: int
    credit_limit_minor: int
    emergency_active_minor: int  # the emergency credit while taken, else 0
    protected: bool
    friendly_credit: bool
    auto_reconnect: bool
    state: SupplyState
    operator_release: bool = False  # an operator released a reconnect that waits for one
    postpaid: bool = False  # never cut for its balance: only when its overdue bills say so
    overdue_cut: bool = False  # a postpaid account's dunning asks for the cut

    @property
    def cut_due(self) -> bool:
        if self.postpaid:
            return self.overdue_cut
        return self.balance_minor <= cut_threshold_minor(self.credit_limit_minor, self.emergency_active_minor)


class Action(str, enum.Enum):
    NONE = "none"
    CUT = "cut"
    CONNECT = "connect"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    waiting: str | None = None  # "friendly_credit" | "operator" | "protected"


def decide(facts: SupplyFacts, *, friendly_now: bool) -> Decision:
    """What to do with a room's supply now."""
    state = facts.state
    if not facts.open:
        if state is SupplyState.OFF:
            return Decision(Action.NONE, "account closed")
        return Decision(Action.CUT, "account closed")
    if facts.protected:
        if state is SupplyState.ON:
            return Decision(Action.NONE, "protected account", "protected" if facts.cut_due else None)
        return Decision(Action.CONNECT, "protected account: supply kept on")
    if facts.cut_due:
        if state is SupplyState.OFF:
            return Decision(Action.NONE, "credit exhausted")
        if state is SupplyState.CUTTING:
            return Decision(Action.CUT, "credit exhausted")
        if facts.friendly_credit and friendly_now:
            return Decision(Action.NONE, "credit exhausted; friendly-credit window", "friendly_credit")
        return Decision(Action.CUT, "credit exhausted")
    # credit available
    if state is SupplyState.ON:
        return Decision(Action.NONE, "credit available")
    if state is SupplyState.RESTORING:
        return Decision(Action.CONNECT, "credit available")
    if facts.auto_reconnect or facts.operator_release:
        return Decision(Action.CONNECT, "credit restored" if facts.auto_reconnect else "released by an operator")
    return Decision(Action.NONE, "credit restored; reconnect waits for an operator", "operator")


def parse_windows(items: Iterable[tuple[Iterable[int], int, int]]) -> tuple[FriendlyWindow, ...]:
    return tuple(FriendlyWindow(frozenset(days), start, end) for days, start, end in items)
