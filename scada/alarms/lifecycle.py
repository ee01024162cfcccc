"""The ISA-18.2 state machine of an alarm occurrence, as a pure function.

::

    NORMAL ──activate──► ACTIVE_UNACK ──acknowledge──► ACTIVE_ACK ──clear──► NORMAL
                              │  ▲                                          ▲
                           clear  activate                                  │
                              ▼  │                                          │
                          CLEARED_UNACK ─────────────acknowledge────────────┘

    any standing state ──shelve──► SHELVED ──unshelve / expire──► ACTIVE_UNACK or NORMAL
    any standing state ──suppress─► SUPPRESSED ──unsuppress──────► ACTIVE_UNACK or NORMAL
    any open state ──remove_from_service─► OUT_OF_SERVICE ──return_to_service─► ACTIVE_UNACK or NORMAL
    any open state ──comment──► (unchanged)    any acknowledged open state ──confirm──► (unchanged)

Returning from shelving, suppression or out-of-service re-evaluates the condition: an alarm
still active comes back unacknowledged (the operator has not seen this instance of it), one
that has cleared meanwhile ends. A condition change while the alarm is shelved, suppressed or
out of service changes no state but is still recorded. A comment, and a confirmation (the
operator confirms an acknowledged alarm was dealt with: OPC UA's Confirm), change no state and
are recorded too. An event the current state does not accept raises :class:`IllegalTransition`
with a message an operator can read.
"""

from __future__ import annotations

import enum

from scada.alarms.alarm import AlarmState

__all__ = ["Event", "IllegalTransition", "next_state"]

S = AlarmState


class Event(str, enum.Enum):
    ACTIVATE = "activate"
    CLEAR = "clear"
    ACKNOWLEDGE = "acknowledge"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    REMOVE_FROM_SERVICE = "remove_from_service"
    RETURN_TO_SERVICE = "return_to_service"
    CONFIRM = "confirm"
    COMMENT = "comment"


class IllegalTransition(ValueError):
    def __init__(self, state: AlarmState, event: Event, why: str) -> None:
        super().__init__(why)
        self.state = state
        self.event = event


_HIDDEN = frozenset({S.SHELVED, S.SUPPRESSED, S.OUT_OF_SERVICE})


def _reevaluate(condition_active: bool) -> AlarmState:
    return S.ACTIVE_UNACK if condition_active else S.NORMAL


def next_state(state: AlarmState, event: Event, *, condition_active: bool) -> AlarmState:
    """The state after ``event``. ``condition_active`` is the condition *after* the event
    (it decides where an alarm returns to from shelving, suppression or out-of-service)."""
    E = Event
    if state is S.NORMAL:
        if event is E.ACTIVATE:
            return S.ACTIVE_UNACK
        raise IllegalTransition(state, event, f"the alarm is not active: cannot {event.value.replace('_', ' ')}")

    if event is E.ACTIVATE:
        if state is S.CLEARED_UNACK:
            return S.ACTIVE_UNACK
        if state in _HIDDEN or state in (S.ACTIVE_UNACK, S.ACTIVE_ACK):
            return state  # already active, or tracked while not presented
    elif event is E.CLEAR:
        if state is S.ACTIVE_UNACK:
            return S.CLEARED_UNACK
        if state is S.ACTIVE_ACK:
            return S.NORMAL
        if state in _HIDDEN or state is S.CLEARED_UNACK:
            return state
    elif event is E.ACKNOWLEDGE:
        if state is S.ACTIVE_UNACK:
            return S.ACTIVE_ACK
        if state is S.CLEARED_UNACK:
            return S.NORMAL
        if state is S.ACTIVE_ACK:
            raise IllegalTransition(state, event, "the alarm is already acknowledged")
        raise IllegalTransition(state, event, f"the alarm is {state.value.replace('_', ' ')}: it cannot be acknowledged")
    elif event is E.SHELVE:
        if state.standing:
            return S.SHELVED
        raise IllegalTransition(state, event, f"the alarm is {state.value.replace('_', ' ')}: only a standing alarm can be shelved")
    elif event is E.UNSHELVE:
        if state is S.SHELVED:
            return _reevaluate(condition_active)
        raise IllegalTransition(state, event, "the alarm is not shelved")
    elif event is E.SUPPRESS:
        if state.standing:
            return S.SUPPRESSED
        raise IllegalTransition(state, event, f"a {state.value} alarm cannot be suppressed")
    elif event is E.UNSUPPRESS:
        if state is S.SUPPRESSED:
            return _reevaluate(condition_active)
        raise IllegalTransition(state, event, "the alarm is not suppressed")
    elif event is E.REMOVE_FROM_SERVICE:
        if state is S.OUT_OF_SERVICE:
            raise IllegalTransition(state, event, "the alarm is already out of service")
        return S.OUT_OF_SERVICE
    elif event is E.RETURN_TO_SERVICE:
        if state is S.OUT_OF_SERVICE:
            return _reevaluate(condition_active)
        raise IllegalTransition(state, event, "the alarm is not out of service")
    elif event is E.COMMENT:
        return state
    elif event is E.CONFIRM:
        if state in (S.ACTIVE_UNACK, S.CLEARED_UNACK):
            raise IllegalTransition(state, event, "the alarm is not acknowledged: acknowledge it before confirming")
        return state
    raise IllegalTransition(state, event, f"{event.value} is not possible in state {state.value}")
