"""Pre-set accounts (提前设置开户信息): imported from CSV or XLSX, opened later by an ``open`` job.

Columns (a header row names them, any order, any case; ``water_tariff``, ``thresholds`` and
``credit_limit`` may be left out or empty)::

    customer, contact, language, room, mode, tariff, opening_balance, thresholds, credit_limit, water_tariff

``customer`` is the account holder: where the back office (``[billing]``) runs, a customer of it
by number (``#12``) or by name (a name no customer has creates that customer, with the row's
contact and language, when the import is made; a name several customers have must be given by
number), and the opened account is that customer's; ``contact`` is a phone number in E.164 form
(``+8613800000000``; spaces and hyphens between digits are dropped) or an e-mail
address; ``language`` en or zh-CN; ``mode`` the account's mode, prepaid or postpaid (postpaid
accounts are billed by the back office, so they need it); ``tariff`` the room's electricity (or, for a room
with only a water meter, water) tariff; ``thresholds`` the balance alarm levels 1/2/3 as
money, ``20/5/0``; amounts are decimal strings in the site's currency.

Every row is checked before anything is created, and every bad row is reported with its
``line`` (the header is line 1), ``column`` and why: an unknown room, a room that already has an
open (or prepared) account, a room twice in the file, a negative balance, an unknown tariff...
An import with any bad row creates nothing; a dry run only reports.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, or_, select

from scada.billing.customers import for_audit
from scada.billing.models import AccountBilling, Customer
from scada.core.inputs import InputError, e164, has_control
from scada.db import Database
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.ledger import MODES
from scada.prepaid.levels import parse_thresholds, thresholds_json
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.money import MoneyError, format_minor, parse_money
from scada.users.audit import Actor, AuditLog

from .models import PreparedAccountRow

__all__ = ["COLUMNS", "ImportResult", "PreparedAccounts", "PreparedStateError", "RowError", "opening_reason", "read_table"]

log = logging.getLogger(__name__)

COLUMNS = ("customer", "contact", "language", "room", "mode", "tariff", "opening_balance", "thresholds", "credit_limit", "water_tariff")
REQUIRED = ("customer", "contact", "room", "tariff")
MAX_ROWS = 20000
MAX_CELL = 200
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
_CUSTOMER_NO = re.compile(r"^#([0-9]{1,18})$")
_RETENTION = Actor.system("retention")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    error: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "error": self.error}


@dataclass(frozen=True)
class ImportResult:
    rows: int
    errors: list[RowError]
    created: list[dict[str, Any]]
    dry_run: bool
    new_customers: list[str] = field(default_factory=list)  # the back office's customers the import creates

    def as_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "rows": self.rows, "valid": self.rows - len({e.line for e in self.errors}),
                "errors": [e.as_json() for e in self.errors], "created": len(self.created), "accounts": self.created,
                "new_customers": self.new_customers}


class PreparedStateError(Exception):
    """A prepared account that is not there (404) or no longer prepared (409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ImportFormatError(ValueError):
    """The file itself cannot be read (not CSV/XLSX, no header, missing columns)."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # a number cell of a spreadsheet: its shortest decimal form (0.1, not 0.1000000000000000055)
        return repr(value) if not value.is_integer() else str(int(value))
    return str(value).strip()


def read_table(data: bytes, content_type: str) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV or XLSX file as (line, {column: text}); raises :class:`ImportFormatError`.
    Blocking for XLSX: run it in a thread."""
    if content_type == XLSX_TYPE or data[:2] == b"PK":
        from openpyxl import load_workbook  # noqa: PLC0415 - loaded only for spreadsheet imports

        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:
            raise ImportFormatError(f"not a readable XLSX file: {exc}") from None
        try:
            sheet = wb.worksheets[0]
            rows = [[_cell(v) for v in row] for row in sheet.iter_rows(values_only=True, max_row=MAX_ROWS + 2)]
        finally:
            wb.close()
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ImportFormatError("not UTF-8 text: save the CSV as UTF-8") from None
        rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]
    if not rows:
        raise ImportFormatError("the file is empty")
    header = [h.strip().lower().replace(" ", "_") for h in rows[0]]
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        raise ImportFormatError(f"line 1: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFormatError(f"line 1: missing column {missing[0]!r} (columns: {', '.join(COLUMNS)})")
    if len(rows) - 1 > MAX_ROWS:
        raise ImportFormatError(f"at most {MAX_ROWS} rows in one import")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c for c in row):
            continue
        out.append((n, {h: (row[i] if i < len(row) else "")[:MAX_CELL + 1] for i, h in enumerate(header) if h}))
    return out


def opening_reason(prepared_id: int, job_id: int) -> str:
    """The reason of the ``opening`` ledger row an ``open`` job writes: how a resumed job knows
    an account it opened."""
    return f"prepared account {prepared_id} (job {job_id})"


class PreparedAccounts:
    """The prepared accounts: import, look-ups for the ``open`` job, and marking them opened.

    ``billing``: the back office runs, so an import names its customers and may prepare postpaid
    accounts."""

    def __init__(self, db: Database, engine: PrepaidEngine, *, clock: Callable[[], dt.datetime], billing: bool = False) -> None:
        self.db = db
        self.billing = billing
        self.engine = engine
        self.clock = clock
        self._pending_rooms: dict[str, int] = {}  # room -> opening balance (minor), for approvals and targets

    async def load(self) -> None:
        async with self.db.reads() as s:
            rows = (await s.execute(select(PreparedAccountRow.room_id, PreparedAccountRow.opening_minor)
                                    .where(PreparedAccountRow.state == "prepared"))).all()
        self._pending_rooms = dict(rows)

    def rooms(self) -> set[str]:
        return set(self._pending_rooms)

    def opening_total(self, rooms: Iterable[str]) -> int:
        return sum(self._pending_rooms.get(r, 0) for r in rooms)

    async def list(self, *, state: str | None = "prepared", limit: int = 1000) -> list[dict[str, Any]]:
        stmt = select(PreparedAccountRow).order_by(PreparedAccountRow.id).limit(limit)
        if state is not None:
            stmt = stmt.where(PreparedAccountRow.state == state)
        async with self.db.sessions() as s:
            return [self._json(r) for r in (await s.scalars(stmt)).all()]

    def _json(self, r: PreparedAccountRow) -> dict[str, Any]:
        m = self.engine.minor_units
        return {
            "id": r.id, "room": r.room_id, "state": r.state, "customer": r.customer, "customer_id": r.customer_id, "phone": r.contact_phone,
            "email": r.contact_email, "language": r.language, "mode": r.mode, "tariff": r.tariff_id,
            "water_tariff": r.water_tariff_id, "opening_balance": format_minor(r.opening_minor, m),
            "credit_limit": format_minor(r.credit_limit_minor, m) if r.credit_limit_minor is not None else None,
            "thresholds": r.thresholds, "source": r.source, "created_at": r.created_at.isoformat(), "created_by": r.created_by,
            "account": r.account_id, "opened_at": r.opened_at.isoformat() if r.opened_at else None,
            "opening_readings": r.opening_readings,
        }

    async def for_room(self, room_id: str) -> PreparedAccountRow | None:
        async with self.db.sessions() as s:
            return await s.scalar(select(PreparedAccountRow).where(PreparedAccountRow.pending_room_id == room_id))

    async def opened_by_job(self, room_id: str, job_id: int) -> PreparedAccountRow | None:
        # the job ran before: its item found no prepared account left. Only an opening this job
        # made counts (its ledger reason names the job): the room may have had a prepared account
        # opened by another job, and its next one withdrawn
        async with self.db.sessions() as s:
            rows = (await s.execute(
                select(PreparedAccountRow, LedgerEntry.reason)
                .join(LedgerEntry, and_(LedgerEntry.account_id == PreparedAccountRow.account_id, LedgerEntry.kind == "opening"))
                .where(PreparedAccountRow.room_id == room_id, PreparedAccountRow.state == "opened")
                .order_by(PreparedAccountRow.id.desc()))).all()
        return next((row for row, reason in rows if reason == opening_reason(row.id, job_id)), None)

    async def opening_reason(self, account_id: int) -> str | None:
        async with self.db.sessions() as s:
            return await s.scalar(select(LedgerEntry.reason).where(LedgerEntry.account_id == account_id, LedgerEntry.kind == "opening"))

    async def mark_opened(self, prepared_id: int, account_id: int, readings: dict[str, str], actor: Actor) -> None:
        now = self.clock()
        async with self.db.transaction() as s:
            row = await s.get(PreparedAccountRow, prepared_id, with_for_update=True)
            if row is None or row.state != "prepared":
                return
            row.state, row.pending_room_id, row.account_id, row.opened_at = "opened", None, account_id, now
            row.opening_readings = readings
            if row.customer_id is not None:
                # the account becomes its customer's in the back office, in the same transaction
                # as the opening is marked done: a resumed open job links it exactly once
                link = await s.get(AccountBilling, account_id)
                if link is None:
                    s.add(AccountBilling(account_id=account_id, customer_id=row.customer_id, updated_at=now))
                else:
                    link.customer_id, link.updated_at = row.customer_id, now
            AuditLog.record(s, actor, "account.prepared_opened", "account", str(account_id),
                            after={"prepared": prepared_id, "room": row.room_id, "readings": readings, "customer": row.customer_id})
            self._pending_rooms.pop(row.room_id, None)

    async def withdraw(self, prepared_id: int, actor: Actor, reason: str = "") -> dict[str, Any]:
        """Withdraw a prepared account that will not be opened (the tenant did not move in): its
        room may be prepared again, an ``open`` job passes it by, and retention erases its contact
        details. :class:`PreparedStateError` unless it is still prepared."""
        async with self.db.transaction() as s:
            row = await s.get(PreparedAccountRow, prepared_id, with_for_update=True)
            if row is None:
                raise PreparedStateError(404, f"no prepared account {prepared_id}")
            if row.state != "prepared":
                raise PreparedStateError(409, f"prepared account {prepared_id} is {row.state}: only a prepared one can be withdrawn")
            row.state, row.pending_room_id = "withdrawn", None
            AuditLog.record(s, actor, "account.prepared_withdrawn", "prepared_account", str(prepared_id),
                            before={"state": "prepared", "room": row.room_id}, after={"state": "withdrawn"}, reason=reason)
            body = self._json(row)
        self._pending_rooms.pop(body["room"], None)
        log.info("prepared account withdrawn", extra={"prepared": prepared_id, "room": body["room"], "actor": actor.name})
        return body

    # -- import ---------------------------------------------------------------------------------
    async def import_file(self, data: bytes, content_type: str, *, dry_run: bool, actor: Actor, source: str = "") -> ImportResult:
        """Check every row; create the prepared accounts unless a row is bad or ``dry_run``.
        Raises :class:`ImportFormatError` when the file cannot be read at all."""
        rows = await asyncio.to_thread(read_table, data, content_type)
        tariffs = {t.id: t.commodity for t in await self.engine.tariffs.list()}
        errors: list[RowError] = []
        parsed: list[tuple[int, dict[str, Any]]] = []
        snapshot = self.engine.assets.snapshot
        async with self.db.sessions() as s:
            prepared = dict((await s.execute(select(PreparedAccountRow.room_id, PreparedAccountRow.id)
                                             .where(PreparedAccountRow.state == "prepared"))).all())
            customers = dict((await s.execute(select(Customer.id, Customer.name))).all()) if self.billing else {}
        by_name: dict[str, list[int]] = {}
        for cid, name in sorted(customers.items()):
            by_name.setdefault(name, []).append(cid)
        new_customers: dict[str, int] = {}  # name -> the line whose contact it gets
        seen: dict[str, int] = {}
        for line, cells in rows:
            before = len(errors)

            def bad(column: str, why: str, line: int = line) -> None:
                errors.append(RowError(line, column, why))

            values: dict[str, Any] = {}
            for column, text in cells.items():
                if len(text) > MAX_CELL:
                    bad(column, f"longer than {MAX_CELL} characters")
                elif has_control(text):
                    bad(column, "contains a control character")
            customer = cells.get("customer", "")
            values["customer_id"] = None
            number = _CUSTOMER_NO.match(customer)
            if not customer:
                bad("customer", "missing: the customer's name")
            elif number and not self.billing:
                bad("customer", f"customer numbers ({customer[:24]}) need the back office ([billing]), which this server does not run")
            elif number:
                values["customer_id"] = cid = int(number.group(1))
                if cid not in customers:
                    bad("customer", f"no customer {customer[:24]}")
                else:
                    customer = customers[cid]
            elif self.billing:
                ids = by_name.get(customer, [])
                if len(ids) == 1:
                    values["customer_id"] = ids[0]
                elif ids:
                    bad("customer", f"{len(ids)} customers are named {customer[:64]!r}: give one's number ({', '.join(f'#{i}' for i in ids[:5])})")
            values["customer"] = customer[:MAX_CELL]
            contact = cells.get("contact", "")
            values["phone"] = values["email"] = None
            if _EMAIL.match(contact):
                values["email"] = contact
            elif not contact or "@" in contact:
                bad("contact", f"expected a phone number or an e-mail address, found {contact[:40]!r}")
            else:
                # the one E.164 check every phone number passes where it enters: this one is the
                # billing customer's and the tenant's, and SMS goes to it
                try:
                    values["phone"] = e164(contact)
                except InputError as exc:
                    bad("contact", f"{exc} (or an e-mail address)")
            language = cells.get("language", "") or "en"
            if language not in ("en", "zh-CN"):
                bad("language", f"expected en or zh-CN, found {language[:20]!r}")
            values["language"] = language
            mode = (cells.get("mode", "") or "prepaid").lower()
            if mode == "postpaid" and not self.billing:
                bad("mode", "postpaid accounts need the back office ([billing]), which this server does not run")
            elif mode not in MODES:
                bad("mode", f"expected prepaid or postpaid, found {mode[:20]!r}")
            values["mode"] = mode
            room = cells.get("room", "")
            kinds: set[str] = set()
            if room not in snapshot.rooms:
                bad("room", f"unknown room {room[:64]!r}")
            else:
                kinds = {m.kind for m in snapshot.meters_of_room(room) if m.role == "tenant"}
                view = self.engine.views.get(room)
                if view is not None and view.open:
                    bad("room", f"room {room} already has an open account ({view.id})")
                elif room in prepared:
                    bad("room", f"room {room} already has a prepared account ({prepared[room]})")
                elif room in seen:
                    bad("room", f"room {room} is also on line {seen[room]}")
                else:
                    seen[room] = line
            values["room"] = room
            for column in ("tariff", "water_tariff"):
                tariff = cells.get(column, "")
                if column == "water_tariff" and not tariff:
                    values[column] = None
                    continue
                commodity = tariffs.get(tariff)
                if commodity is None:
                    bad(column, f"unknown tariff {tariff[:64]!r}")
                elif column == "water_tariff" and commodity != "water":
                    bad(column, f"tariff {tariff} is for {commodity}, not water")
                elif column == "tariff" and kinds and commodity not in kinds:
                    bad(column, f"tariff {tariff} is for {commodity}; room {room} has no {commodity} meter")
                values[column] = tariff
            if "water" in kinds and "electricity" in kinds and values.get("water_tariff") is None and not any(e.line == line for e in errors[before:]):
                bad("water_tariff", f"room {room} has a water meter: give its water tariff")
            m = self.engine.minor_units
            for column, allow_zero in (("opening_balance", True), ("credit_limit", True)):
                text = cells.get(column, "")
                if not text:
                    values[column] = 0 if column == "opening_balance" else None
                    continue
                if text.lstrip().startswith("-"):
                    bad(column, f"must not be negative, found {text[:24]}")
                    continue
                try:
                    values[column] = parse_money(text, column, m, allow_zero=allow_zero, maximum=self.engine.cfg.max_amount)
                except MoneyError as exc:
                    bad(column, str(exc).split(": ", 1)[-1])
            text = cells.get("thresholds", "")
            values["thresholds"] = None
            if text:
                parts = [p.strip() for p in text.split("/")]
                try:
                    if not 1 <= len(parts) <= 3:
                        raise MoneyError("thresholds", "expected up to three amounts, levels 1/2/3: 20/5/0")
                    levels = parse_thresholds([{"level": i + 1, "money": p} for i, p in enumerate(parts)], m, "thresholds")
                    values["thresholds"] = thresholds_json(levels, m)
                except MoneyError as exc:
                    bad("thresholds", str(exc).split(": ", 1)[-1])
            if len(errors) == before:
                parsed.append((line, values))
                if self.billing and values["customer_id"] is None:
                    new_customers.setdefault(values["customer"], len(parsed) - 1)
        if dry_run or errors:
            return ImportResult(len(rows), errors, [], dry_run, list(new_customers))
        now = self.clock()
        created: list[dict[str, Any]] = []
        async with self.db.transaction() as s:
            new_ids: dict[str, int] = {}
            for name, index in new_customers.items():
                first_line, first = parsed[index]
                holder = Customer(name=name, kind="person", phone=first["phone"], email=first["email"], language=first["language"],
                                  address="", bill_per="account", created_at=now, created_by=actor.name, updated_at=now)
                s.add(holder)
                await s.flush()
                new_ids[name] = holder.id
                AuditLog.record(s, actor, "customer.create", "customer", str(holder.id),
                                after={**for_audit({"name": name}, "person"), "kind": "person", "language": first["language"],
                                       "source": f"{source}:{first_line}"[:200]})
            for line, v in parsed:
                row = PreparedAccountRow(
                    room_id=v["room"], pending_room_id=v["room"], state="prepared", customer=v["customer"],
                    customer_id=v["customer_id"] if v["customer_id"] is not None else new_ids.get(v["customer"]),
                    contact_phone=v["phone"], contact_email=v["email"], language=v["language"], mode=v["mode"],
                    tariff_id=v["tariff"], water_tariff_id=v["water_tariff"], opening_minor=v["opening_balance"],
                    credit_limit_minor=v["credit_limit"], thresholds=v["thresholds"], source=f"{source}:{line}"[:200],
                    created_at=now, created_by=actor.name,
                )
                s.add(row)
                await s.flush()
                created.append(self._json(row))
            AuditLog.record(s, actor, "account.import", "accounts", source or "import",
                            after={"prepared": [c["id"] for c in created], "rooms": [c["room"] for c in created]})
        for c in created:
            self._pending_rooms[c["room"]] = parse_money(c["opening_balance"], "opening_balance", self.engine.minor_units, allow_zero=True)
        return ImportResult(len(rows), [], created, False, list(new_customers))

    # -- data retention ---------------------------------------------------------------------------
    async def erase_personal_data(self, retention_days: int, now: dt.datetime, *, batch: int = 100) -> int:
        """Erase the customer name and contact of prepared accounts that are done with: opened
        for an account closed at least ``retention_days`` before ``now``, or withdrawn (never
        opened) and prepared that long ago. One audit row (``prepared_account.personal_data_erased``,
        no personal data) each; returns how many. Registered with the prepaid engine's retention
        (``prepaid.personal_data_retention_days``)."""
        cutoff = now - dt.timedelta(days=retention_days)
        holds = or_(PreparedAccountRow.customer != "", PreparedAccountRow.contact_phone.is_not(None),
                    PreparedAccountRow.contact_email.is_not(None))
        closed_long_ago = select(Account.id).where(Account.id == PreparedAccountRow.account_id, Account.state == "closed",
                                                   Account.closed_at.is_not(None), Account.closed_at <= cutoff)
        async with self.db.sessions() as s:
            due = (await s.scalars(select(PreparedAccountRow.id).where(holds, or_(
                and_(PreparedAccountRow.state == "opened", exists(closed_long_ago)),
                and_(PreparedAccountRow.state == "withdrawn", PreparedAccountRow.created_at <= cutoff),
            )).order_by(PreparedAccountRow.id).limit(batch))).all()
        for prepared_id in due:
            async with self.db.transaction() as s:
                row = await s.get(PreparedAccountRow, prepared_id, with_for_update=True)
                if row is None or row.state == "prepared":
                    continue
                row.customer, row.contact_phone, row.contact_email = "", None, None
                AuditLog.record(s, _RETENTION, "prepared_account.personal_data_erased", "prepared_account", str(row.id),
                                reason=f"{row.state} and past {retention_days} days (prepaid.personal_data_retention_days)",
                                after={"room": row.room_id, "state": row.state, "account": row.account_id})
        return len(due)

    def money(self, minor: int) -> Decimal:
        return Decimal(minor).scaleb(-self.engine.minor_units)
