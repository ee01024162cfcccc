"""The ledger check behind ``scada reconcile``.

For every account: opening + recharges + payments − refunds − deductions − charges − late fees −
apportioned shares − settlements ± adjustments ± reversals = balance (the entries' signed sum), each entry's running balance follows from the
one before, each reversal undoes exactly one reversible entry of the same account, and the
carried remainder equals the exact costs of the deductions minus what was deducted for them.
For every meter: within a billing segment the billed readings form one unbroken chain from the
segment's baseline (so no reading was billed twice and none skipped), and the meter's cursor is
the chain's end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select

from scada.db import Database
from scada.prepaid.models import Account, LedgerEntry, MeterSegment, MeterState
from scada.prepaid.money import exact, format_minor, minor_to_decimal

__all__ = ["Mismatch", "ReconcileReport", "reconcile"]

SIGNS = {"opening": (0, None), "recharge": (1, None), "refund": (None, -1), "deduction": (None, 0), "charge": (None, 0), "settlement": (None, -1),
         "payment": (1, None), "late_fee": (None, -1), "adjustment": (None, None), "apportionment": (None, 0)}
REVERSIBLE = ("opening", "recharge", "refund", "deduction", "charge", "late_fee", "apportionment")


@dataclass(frozen=True)
class Mismatch:
    subject: str  # "account 12" / "meter E-1 segment 2" / "entry 345"
    problem: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}"


@dataclass
class ReconcileReport:
    accounts: int = 0
    entries: int = 0
    deductions: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)  # minor units per entry kind
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def add(self, subject: str, problem: str) -> None:
        self.mismatches.append(Mismatch(subject, problem))


async def reconcile(db: Database, minor_units: int) -> ReconcileReport:
    report = ReconcileReport()

    def fmt(minor: int) -> str:
        return format_minor(minor, minor_units)

    async with db.sessions() as s:
        accounts = {a.id: a for a in (await s.scalars(select(Account))).all()}
        report.accounts = len(accounts)
        entries = {e.id: e for e in (await s.scalars(select(LedgerEntry).order_by(LedgerEntry.account_id, LedgerEntry.id))).all()}
        segments = {(g.meter_id, g.segment): g for g in (await s.scalars(select(MeterSegment))).all()}
        states = {st.meter_id: st for st in (await s.scalars(select(MeterState))).all()}
    report.entries = len(entries)
    running: dict[int, int] = {}
    costs: dict[int, Decimal] = {}
    billed: dict[int, int] = {}
    chains: dict[tuple[str, int], list[LedgerEntry]] = {}
    reversed_by: dict[int, int] = {}
    for e in entries.values():
        subject = f"entry {e.id} (account {e.account_id}, {e.kind})"
        if e.account_id not in accounts:
            report.add(subject, "belongs to no account")
            continue
        report.by_kind[e.kind] = report.by_kind.get(e.kind, 0) + e.amount_minor
        before = running.get(e.account_id, 0)
        running[e.account_id] = before + e.amount_minor
        if e.balance_after_minor != before + e.amount_minor:
            report.add(subject, f"balance after is {fmt(e.balance_after_minor)}, expected {fmt(before)} + {fmt(e.amount_minor)}")
        if e.kind in SIGNS:
            low, high = SIGNS[e.kind]
            if (low is not None and e.amount_minor < low) or (high is not None and e.amount_minor > high):
                report.add(subject, f"amount {fmt(e.amount_minor)} has the wrong sign for a {e.kind}")
        elif e.kind == "reversal":
            original = entries.get(e.reverses_id) if e.reverses_id is not None else None
            if original is None:
                report.add(subject, "reverses no entry")
            elif original.account_id != e.account_id or original.kind not in REVERSIBLE or e.amount_minor != -original.amount_minor:
                report.add(subject, f"does not undo entry {original.id} ({original.kind} {fmt(original.amount_minor)})")
            elif original.id in reversed_by:
                report.add(subject, f"entry {original.id} is reversed twice")
            else:
                reversed_by[original.id] = e.id
        else:
            report.add(subject, f"unknown kind {e.kind!r}")
        if e.kind == "deduction":
            report.deductions += 1
            if e.meter_id is None or e.segment is None or e.reading_from is None or e.reading_to is None or e.cost is None:
                report.add(subject, "a deduction without its meter, reading or cost")
                continue
            with exact():
                costs[e.account_id] = costs.get(e.account_id, Decimal(0)) + e.cost
            billed[e.account_id] = billed.get(e.account_id, 0) - e.amount_minor
            chains.setdefault((e.meter_id, e.segment), []).append(e)
    for account_id, a in accounts.items():
        subject = f"account {account_id} (room {a.room_id})"
        total = running.get(account_id, 0)
        if total != a.balance_minor:
            report.add(subject, f"entries add up to {fmt(total)} but the balance is {fmt(a.balance_minor)}")
        with exact():
            expected = costs.get(account_id, Decimal(0)) - minor_to_decimal(billed.get(account_id, 0), minor_units)
            if expected != a.remainder:
                report.add(subject, f"carried remainder is {a.remainder}, the deductions say {expected}")
            if abs(a.remainder) >= minor_to_decimal(1, minor_units):
                report.add(subject, f"carried remainder {a.remainder} is a whole minor unit or more")
    for (meter_id, segment), chain in chains.items():
        subject = f"meter {meter_id} segment {segment}"
        seg = segments.get((meter_id, segment))
        if seg is None:
            report.add(subject, "deductions for a segment that was never started")
            continue
        expected_from = seg.baseline
        seen: set[Decimal] = set()
        for e in chain:
            assert e.reading_from is not None and e.reading_to is not None
            if e.reading_to in seen:
                report.add(subject, f"reading {e.reading_to} billed twice (entry {e.id})")
            seen.add(e.reading_to)
            if expected_from is not None and e.reading_from != expected_from:
                report.add(subject, f"entry {e.id} bills from {e.reading_from}, but the previous billed reading is {expected_from}")
            if e.reading_to <= e.reading_from:
                report.add(subject, f"entry {e.id} bills from {e.reading_from} to {e.reading_to}")
            expected_from = e.reading_to
        if seg.account_id != chain[0].account_id or any(e.account_id != seg.account_id for e in chain):
            report.add(subject, f"billed to an account other than the segment's ({seg.account_id})")
        st = states.get(meter_id)
        if st is not None and st.segment == segment and st.last_reading != expected_from:
            report.add(subject, f"the meter's last billed reading is {st.last_reading}, the ledger says {expected_from}")
        if seg.final_reading is not None and seg.final_reading != expected_from:
            report.add(subject, f"the segment ended at {seg.final_reading}, the ledger says {expected_from}")
    return report
