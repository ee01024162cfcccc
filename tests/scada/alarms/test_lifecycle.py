"""The ISA-18.2 state machine: every transition, and the ones that must be refused."""

from __future__ import annotations

import pytest

from scada.alarms.alarm import AlarmState
from scada.alarms.lifecycle import Event, IllegalTransition, next_state

S, E = AlarmState, Event

ALLOWED = [
    # (state, event, condition after, expected)
    (S.NORMAL, E.ACTIVATE, True, S.ACTIVE_UNACK),
    (S.ACTIVE_UNACK, E.ACKNOWLEDGE, True, S.ACTIVE_ACK),
    (S.ACTIVE_UNACK, E.CLEAR, False, S.CLEARED_UNACK),
    (S.ACTIVE_ACK, E.CLEAR, False, S.NORMAL),
    (S.CLEARED_UNACK, E.ACKNOWLEDGE, False, S.NORMAL),
    (S.CLEARED_UNACK, E.ACTIVATE, True, S.ACTIVE_UNACK),
    (S.ACTIVE_UNACK, E.SHELVE, True, S.SHELVED),
    (S.ACTIVE_ACK, E.SHELVE, True, S.SHELVED),
    (S.CLEARED_UNACK, E.SHELVE, False, S.SHELVED),
    (S.SHELVED, E.UNSHELVE, True, S.ACTIVE_UNACK),
    (S.SHELVED, E.UNSHELVE, False, S.NORMAL),
    (S.SHELVED, E.ACTIVATE, True, S.SHELVED),
    (S.SHELVED, E.CLEAR, False, S.SHELVED),
    (S.ACTIVE_UNACK, E.SUPPRESS, True, S.SUPPRESSED),
    (S.SUPPRESSED, E.UNSUPPRESS, True, S.ACTIVE_UNACK),
    (S.SUPPRESSED, E.UNSUPPRESS, False, S.NORMAL),
    (S.ACTIVE_ACK, E.REMOVE_FROM_SERVICE, True, S.OUT_OF_SERVICE),
    (S.SHELVED, E.REMOVE_FROM_SERVICE, True, S.OUT_OF_SERVICE),
    (S.OUT_OF_SERVICE, E.RETURN_TO_SERVICE, True, S.ACTIVE_UNACK),
    (S.OUT_OF_SERVICE, E.RETURN_TO_SERVICE, False, S.NORMAL),
    (S.OUT_OF_SERVICE, E.CLEAR, False, S.OUT_OF_SERVICE),
]


@pytest.mark.parametrize(("state", "event", "condition", "expected"), ALLOWED)
def test_transition(state: AlarmState, event: Event, condition: bool, expected: AlarmState) -> None:
    assert next_state(state, event, condition_active=condition) is expected


REFUSED = [
    (S.NORMAL, E.ACKNOWLEDGE, "not active"),
    (S.NORMAL, E.SHELVE, "not active"),
    (S.ACTIVE_ACK, E.ACKNOWLEDGE, "already acknowledged"),
    (S.SHELVED, E.ACKNOWLEDGE, "shelved: it cannot be acknowledged"),
    (S.SUPPRESSED, E.SHELVE, "only a standing alarm can be shelved"),
    (S.ACTIVE_UNACK, E.UNSHELVE, "not shelved"),
    (S.OUT_OF_SERVICE, E.REMOVE_FROM_SERVICE, "already out of service"),
    (S.ACTIVE_UNACK, E.RETURN_TO_SERVICE, "not out of service"),
    (S.SHELVED, E.SUPPRESS, "cannot be suppressed"),
]


@pytest.mark.parametrize(("state", "event", "message"), REFUSED)
def test_refused(state: AlarmState, event: Event, message: str) -> None:
    with pytest.raises(IllegalTransition, match=message):
        next_state(state, event, condition_active=True)


def test_standing_states() -> None:
    assert {s for s in S if s.standing} == {S.ACTIVE_UNACK, S.ACTIVE_ACK, S.CLEARED_UNACK}
