"""Bulk statements store values exactly as the ORM does (on SQLite and PostgreSQL): exact
decimals, UTC times, JSON, NULLs; an update moves only the rows it names; and they run inside
the caller's transaction (a rollback takes them back)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.exc import DBAPIError

from scada.db import Database
from scada.db.bulk import KeyedRead, RawJSON, bulk_insert, bulk_update
from scada.prepaid.models import LedgerEntry

TABLE = cast(Table, LedgerEntry.__table__)
KEYS = ("account_id", "ts", "kind", "amount_minor", "balance_after_minor", "actor", "source", "reason", "idem_key",
        "meter_id", "reading_from", "reading_to", "quantity", "cost", "detail", "reading_ts")
T0 = dt.datetime(2026, 3, 2, 8, 0, 0, 123456, tzinfo=dt.UTC)
LOCAL = dt.timezone(dt.timedelta(hours=8))


def values(i: int) -> dict[str, Any]:
    return {
        "account_id": 1, "ts": T0 + dt.timedelta(minutes=i), "kind": "deduction", "amount_minor": -i, "balance_after_minor": 10 - i,
        "actor": "prepaid", "source": "system", "reason": "consumption", "idem_key": f"k{i}", "meter_id": "E1",
        "reading_from": Decimal("100.10000000"), "reading_to": Decimal(f"100.{i}5"), "quantity": Decimal("0.0500000001"),
        "cost": Decimal("0.03827400000000000001"), "detail": {"lines": [{"price": "1.2"}], "n": i} if i % 2 else None,
        # a time with another offset is stored as the same instant in UTC
        "reading_ts": (T0 + dt.timedelta(minutes=i)).astimezone(LOCAL) if i % 2 else None,
    }


async def _account(db: Database) -> None:
    async with db.transaction() as s:
        for stmt in (
            "INSERT INTO sites (id, name, timezone) VALUES ('s', 's', 'UTC')",
            "INSERT INTO buildings (id, site_id, name) VALUES ('b', 's', 'b')",
            "INSERT INTO floors (id, building_id, name, level) VALUES ('f', 'b', 'f', 1)",
            "INSERT INTO rooms (id, floor_id, name) VALUES ('r', 'f', 'r')",
        ):
            await s.execute(text(stmt))
        await s.execute(text(
            "INSERT INTO prepaid_accounts (id, room_id, state, opened_at, opened_by, contact_name, language, credit_limit_minor, "
            "thresholds, protected, friendly_credit, auto_reconnect, emergency_credit_minor, balance_minor, remainder, alarm_level, "
            "supply_state, reconnect_pending, mode, dunning_level, dunning_cut, updated_at) VALUES (1, 'r', 'open', :t, 'x', '', 'en', 0, "
            "'[]', false, true, true, 0, 0, '0', 0, 'on', false, 'prepaid', 0, false, :t)"
        ), {"t": T0})


async def _rows(db: Database, ids: list[str]) -> list[tuple[Any, ...]]:
    async with db.sessions() as s:
        result = await s.execute(select(*(TABLE.c[k] for k in KEYS)).where(TABLE.c.idem_key.in_(ids)).order_by(TABLE.c.idem_key))
        return [tuple(r) for r in result.all()]


async def _raw(db: Database, ids: list[str]) -> list[tuple[Any, ...]]:
    async with db.sessions() as s:
        cols = ", ".join(k for k in KEYS if k != "detail") + ", CAST(detail AS TEXT)"
        result = await s.execute(text(f"SELECT {cols} FROM prepaid_ledger WHERE idem_key IN ({', '.join(repr(i) for i in ids)}) ORDER BY idem_key"))
        return [tuple(r) for r in result.all()]


async def test_bulk_insert_stores_what_the_orm_stores(db: Database) -> None:
    await _account(db)
    orm = [values(i) for i in range(1, 5)]
    bulk = [{**values(i), "idem_key": f"b{i}"} for i in range(1, 5)]
    async with db.transaction() as s:
        s.add_all(LedgerEntry(**v) for v in orm)
    async with db.transaction() as s:
        await bulk_insert(TABLE, KEYS).execute(s, [tuple(v[k] for k in KEYS) for v in bulk])
    orm_ids, bulk_ids = [f"k{i}" for i in range(1, 5)], [f"b{i}" for i in range(1, 5)]
    # read back through the models: the same values, decimals exact, times aware UTC
    loaded = await _rows(db, bulk_ids)
    assert loaded == [tuple(v[k] for k in KEYS) for v in bulk]
    assert loaded[1][KEYS.index("reading_ts")] is None and loaded[0][KEYS.index("reading_ts")].tzinfo == dt.UTC
    assert str(loaded[2][KEYS.index("cost")].normalize()) == "0.03827400000000000001"
    # and stored byte for byte as the ORM stores them (the text of decimals and times on SQLite)
    def strip(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [r[:KEYS.index("idem_key")] + r[KEYS.index("idem_key") + 1:] for r in rows]

    assert strip(await _raw(db, bulk_ids)) == strip(await _raw(db, orm_ids))


async def test_bulk_update_moves_the_named_rows_inside_the_transaction(db: Database) -> None:
    await _account(db)
    async with db.transaction() as s:
        s.add_all(LedgerEntry(**values(i)) for i in range(1, 4))
    update = bulk_update(TABLE, "idem_key", ("reading_to", "detail", "reading_ts"))
    later = T0 + dt.timedelta(days=1)
    async with db.transaction() as s:
        await update.execute(s, [("k1", Decimal("200.5"), {"x": 1}, later), ("k3", Decimal("300"), None, None)])
    rows = {r[KEYS.index("idem_key")]: r for r in await _rows(db, ["k1", "k2", "k3"])}
    assert rows["k1"][KEYS.index("reading_to")] == Decimal("200.5") and rows["k1"][KEYS.index("detail")] == {"x": 1}
    assert rows["k1"][KEYS.index("reading_ts")] == later
    assert rows["k3"][KEYS.index("reading_to")] == Decimal("300") and rows["k3"][KEYS.index("detail")] is None
    assert rows["k2"] == tuple(values(2)[k] for k in KEYS)  # not named: untouched
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await update.execute(s, [("k2", Decimal("999"), None, None)])
            raise RuntimeError("rolled back")
    assert (await _rows(db, ["k2"]))[0][KEYS.index("reading_to")] == Decimal("100.25")


def test_a_statement_needs_every_parameter_among_the_row_keys() -> None:
    from sqlalchemy.dialects import sqlite

    with pytest.raises(ValueError, match="reason"):
        bulk_insert(TABLE, ("account_id", "ts")).params(sqlite.dialect(), [])


async def test_raw_json_is_stored_as_the_encoded_value_is(db: Database) -> None:
    """Text handed over as RawJSON is stored byte for byte as the dict it encodes would be."""
    import json

    from scada.db.bulk import RawJSON

    await _account(db)
    plain = [{**values(i), "idem_key": f"p{i}"} for i in range(1, 5)]
    raw = [{**values(i), "idem_key": f"r{i}"} for i in range(1, 5)]
    for v in raw:
        if v["detail"] is not None:
            v["detail"] = RawJSON(json.dumps(v["detail"]))
    insert = bulk_insert(TABLE, KEYS)
    async with db.transaction() as s:
        await insert.execute(s, [tuple(v[k] for k in KEYS) for v in plain])
        await insert.execute(s, [tuple(v[k] for k in KEYS) for v in raw])

    def strip(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [r[:KEYS.index("idem_key")] + r[KEYS.index("idem_key") + 1:] for r in rows]

    p_ids, r_ids = [f"p{i}" for i in range(1, 5)], [f"r{i}" for i in range(1, 5)]
    assert strip(await _raw(db, r_ids)) == strip(await _raw(db, p_ids))
    assert strip(await _rows(db, r_ids)) == strip(await _rows(db, p_ids))  # and read back as the same values


def test_datetimes_are_remembered_by_identity_not_equality() -> None:
    """The same instant in two zones, or a fold's two sides, compare equal but bind differently
    for a plain DateTime column: the memo must not hand one the other's text."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import Column, DateTime, Integer, MetaData
    from sqlalchemy import Table as T
    from sqlalchemy.dialects import sqlite

    table = T("t", MetaData(), Column("id", Integer, primary_key=True), Column("at", DateTime()))
    stmt = bulk_insert(table, ("id", "at"))
    utc = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    local = utc.astimezone(LOCAL)
    london = ZoneInfo("Europe/London")
    fold0 = dt.datetime(2026, 10, 25, 1, 30, tzinfo=london)
    fold1 = fold0.replace(fold=1)
    assert utc == local and fold0 == fold1
    rows = [(1, utc), (2, local), (3, utc), (4, local), (5, fold0), (6, fold1), (7, fold0)]
    fresh = [(i, v.replace()) for i, v in rows]  # equal, not identical
    expected = [(i, f"{v:%Y-%m-%d %H:%M:%S.%f}") for i, v in rows]
    assert [tuple(r) for r in stmt.params(sqlite.dialect(), rows)] == expected
    assert [tuple(r) for r in stmt.params(sqlite.dialect(), fresh)] == expected
    # and through UtcDateTime: equal instants give the same UTC text, each side of a fold its own
    utc_rows = [(i, {**values(1), "ts": v}) for i, v in rows]
    insert = bulk_insert(TABLE, KEYS)
    got = [p[KEYS.index("ts")] for p in insert.params(sqlite.dialect(), [tuple(v[k] for k in KEYS) for _i, v in utc_rows])]
    assert got[0] == got[1] == got[2] == got[3] == "2026-03-02 08:00:00.000000"
    assert got[4] == got[6] == "2026-10-25 00:30:00.000000" and got[5] == "2026-10-25 01:30:00.000000"


def test_the_datetime_memo_covers_utc_datetime_columns() -> None:
    from datetime import datetime

    from scada.db.bulk import _python_type
    from scada.db.types import UtcDateTime

    assert _python_type(UtcDateTime()) is datetime  # a TypeDecorator says "object" itself


@pytest.mark.parametrize("first", [True, False], ids=["first-statement", "after-a-read"])
async def test_rows_are_inserted_in_the_order_given(db: Database, first: bool) -> None:
    """The ledger's ids follow the order of the batch's rows, and a rollback takes them back (on
    PostgreSQL the rows travel as arrays, ``unnest ... WITH ORDINALITY``, or, once the
    transaction has begun, as a COPY on the session's connection)."""
    await _account(db)
    order = [7, 2, 9, 1, 5, 3, 8, 4, 6]
    insert = bulk_insert(TABLE, KEYS)

    def rows(prefix: str) -> list[tuple[Any, ...]]:
        return [tuple({**values(i), "idem_key": f"{prefix}{i}"}[k] for k in KEYS) for i in order]

    async def stored(prefix: str) -> list[tuple[Any, ...]]:
        async with db.sessions() as s:
            result = await s.execute(select(*(TABLE.c[k] for k in KEYS)).where(TABLE.c.idem_key.like(f"{prefix}%")).order_by(TABLE.c.id))
            return [tuple(r) for r in result.all()]

    async with db.transaction() as s:
        if not first:
            await s.execute(text("SELECT count(*) FROM prepaid_ledger"))
        await insert.execute(s, rows("o"))
    assert await stored("o") == rows("o")  # the values exact, in the order given
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            if not first:
                await s.execute(text("SELECT count(*) FROM prepaid_ledger"))
            await insert.execute(s, rows("x"))
            raise RuntimeError("rolled back")
    assert await stored("x") == []


async def test_an_update_naming_a_row_twice_applies_them_in_order(db: Database) -> None:
    """As an executemany does: the later row wins (PostgreSQL's array form, an ``UPDATE ...
    FROM``, would apply one of them, unspecified which, so such a batch is not sent that way)."""
    await _account(db)
    async with db.transaction() as s:
        s.add_all(LedgerEntry(**values(i)) for i in range(1, 3))
    update = bulk_update(TABLE, "idem_key", ("reading_to",))
    async with db.transaction() as s:
        await update.execute(s, [("k1", Decimal("1")), ("k2", Decimal("5")), ("k1", Decimal("2")), ("k1", Decimal("3"))])
    rows = {r[KEYS.index("idem_key")]: r[KEYS.index("reading_to")] for r in await _rows(db, ["k1", "k2"])}
    assert rows == {"k1": Decimal("3"), "k2": Decimal("5")}


def test_postgresql_gets_one_statement_with_the_columns_as_arrays() -> None:
    from sqlalchemy.dialects.postgresql import asyncpg

    dialect = asyncpg.dialect()
    insert = bulk_insert(TABLE, KEYS).arrays(dialect)
    assert insert is not None and "unnest(" in insert.sql and "WITH ORDINALITY" in insert.sql
    rows = [tuple(values(i)[k] for k in KEYS) for i in (1, 2, 3)]
    columns = insert.params(rows)
    assert len(columns) == len(KEYS) and all(len(c) == 3 for c in columns)
    # the same values the executemany binds (its parameters in the statement's order)
    many = bulk_insert(TABLE, KEYS)
    bound = many.params(dialect, rows)
    order = many._compiled[dialect.name].order
    assert [[r[i] for i in order] for r in zip(*columns, strict=True)] == [list(r) for r in bound]
    from sqlalchemy.dialects import sqlite

    assert bulk_insert(TABLE, KEYS).arrays(sqlite.dialect()) is None


@pytest.mark.parametrize("first", [True, False], ids=["first-statement", "after-a-read"])
async def test_a_refused_insert_is_a_database_error_and_inserts_nothing(db: Database, first: bool) -> None:
    """A row the database refuses (here an idempotency key already there) fails the statement
    with SQLAlchemy's DBAPIError, whichever way the rows travel (executemany, arrays, or the
    COPY on PostgreSQL): billing keeps a batch that failed so for a retry, and treats any other
    exception as a bug of one reading."""
    await _account(db)
    insert = bulk_insert(TABLE, KEYS)
    async with db.transaction() as s:
        await insert.execute(s, [tuple(values(1)[k] for k in KEYS)])
    with pytest.raises(DBAPIError):
        async with db.transaction() as s:
            if not first:
                await s.execute(text("SELECT count(*) FROM prepaid_ledger"))
            await insert.execute(s, [tuple(values(i)[k] for k in KEYS) for i in (2, 1)])
    assert [r[KEYS.index("idem_key")] for r in await _rows(db, ["k1", "k2"])] == ["k1"]


def _parts_on_their_way() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "bulk insert part" and not t.done()]


async def test_a_streamed_insert_sends_parts_while_the_rows_are_made_in_the_order_given(db: Database) -> None:
    """On PostgreSQL (in a transaction begun) the rows made so far go as a COPY of their own while
    the caller makes the rest; the rows end up as one statement would store them, ids in the
    order given, and a rollback takes them all back. Elsewhere they go in one statement at the end."""
    await _account(db)
    insert = bulk_insert(TABLE, KEYS)
    order = [7, 2, 9, 1, 5, 3, 8, 4, 6, 12, 10, 11, 15, 13, 14, 16, 17, 18, 19, 20]
    rows = [tuple({**values(i), "idem_key": f"s{i}"}[k] for k in KEYS) for i in order]
    seen_before_the_end = 0
    async with db.transaction() as s:
        await s.execute(text("SELECT 1"))  # the transaction begun (as billing's reads begin it): a COPY may go
        async with insert.streamed(s, part_rows=4) as sink:
            for row in rows[:12]:
                sink.append(row)
                await sink.turn()
            while _parts_on_their_way():  # (the session is the sink's while a part is on its way)
                await asyncio.sleep(0.01)
            seen_before_the_end = await s.scalar(text("SELECT count(*) FROM prepaid_ledger WHERE idem_key LIKE 's%'"))
            for row in rows[12:]:
                sink.append(row)
                await sink.turn()
    if db.dialect == "postgresql":
        assert 4 <= seen_before_the_end < 20  # a part (from 4 rows) went while the rows were made
    else:
        assert seen_before_the_end == 0  # one statement at the end
    async with db.sessions() as s:
        result = await s.execute(select(*(TABLE.c[k] for k in KEYS)).where(TABLE.c.idem_key.like("s%")).order_by(TABLE.c.id))
        assert [tuple(r) for r in result.all()] == rows
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await s.execute(text("SELECT 1"))
            async with insert.streamed(s, part_rows=2) as sink:
                for i in range(30, 40):
                    sink.append(tuple({**values(i), "idem_key": f"x{i}"}[k] for k in KEYS))
                    await sink.turn()
            raise RuntimeError("rolled back")
    assert await _rows(db, [f"x{i}" for i in range(30, 40)]) == []


async def test_a_refused_row_in_a_streamed_part_fails_the_insert_with_a_database_error(db: Database) -> None:
    """A part the database refuses (an idempotency key already there) is raised as DBAPIError,
    by the next turn or at the end, and nothing of the transaction stays."""
    await _account(db)
    insert = bulk_insert(TABLE, KEYS)
    async with db.transaction() as s:
        await insert.execute(s, [tuple(values(3)[k] for k in KEYS)])
    with pytest.raises(DBAPIError):
        async with db.transaction() as s:
            await s.execute(text("SELECT 1"))
            async with insert.streamed(s, part_rows=2) as sink:
                for i in (1, 2, 3, 4, 5, 6, 7, 8):  # k3 is refused, in the second part
                    sink.append(tuple(values(i)[k] for k in KEYS))
                    await sink.turn()
                if db.dialect == "postgresql":
                    for _ in range(500):  # the refused part is raised by a turn after it ends
                        await sink.turn()
                        await asyncio.sleep(0.01)
                    pytest.fail("the refused part was not raised by a turn after it")
    assert not _parts_on_their_way()
    assert [r[KEYS.index("idem_key")] for r in await _rows(db, [f"k{i}" for i in range(1, 9)])] == ["k3"]


async def test_leaving_a_streamed_insert_with_an_error_waits_for_the_part_on_its_way(db: Database) -> None:
    """The caller's own error is the one raised, after the part on its way has ended (the
    transaction is rolled back then, not in the middle of a COPY), and no part is left running."""
    await _account(db)
    insert = bulk_insert(TABLE, KEYS)
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as s:
            await s.execute(text("SELECT 1"))
            async with insert.streamed(s, part_rows=3) as sink:
                for i in range(1, 4):
                    sink.append(tuple(values(i)[k] for k in KEYS))
                await sink.turn()  # a part is on its way (PostgreSQL)
                assert bool(_parts_on_their_way()) == (db.dialect == "postgresql")
                _ = 1 / 0
    assert not _parts_on_their_way()
    assert await _rows(db, ["k1", "k2", "k3"]) == []
    async with db.transaction() as s:  # the connection is fine afterwards
        await insert.execute(s, [tuple(values(1)[k] for k in KEYS)])
    assert len(await _rows(db, ["k1"])) == 1


TRICKY = ['a"b\\c\n\t\u001f', "é 中文 😀 \u2028", "\\u0000 is not a NUL", "", "x\x00y"]


async def test_sqlite_sends_many_rows_a_statement_and_stores_what_executemany_stores(db: Database) -> None:
    """On SQLite an insert and an update send their rows in one ``VALUES`` list (an
    executemany's driver thread waits for the interpreter at every row on a busy server), and
    store the same bytes an executemany stores: quotes, backslashes, control characters, a NUL,
    text beyond the BMP, decimals, times, JSON."""
    if db.dialect != "sqlite":
        pytest.skip("the VALUES form is SQLite's")
    from sqlalchemy import event

    await _account(db)
    statements: list[tuple[str, bool]] = []

    def seen(_c: object, _cur: object, sql: str, _p: object, _ctx: object, many: bool) -> None:
        statements.append((sql.split()[0], many))

    def rows(prefix: str) -> list[tuple[Any, ...]]:
        return [tuple({**values(i), "idem_key": f"{prefix}{i}", "reason": reason}[k] for k in KEYS) for i, reason in enumerate(TRICKY, 1)]

    insert = bulk_insert(TABLE, KEYS)
    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with db.transaction() as s:
            await insert.execute(s, rows("v"))
        assert [st for st in statements if st[0] == "INSERT"] == [("INSERT", False)] * 2  # five rows: four, then one
        statements.clear()
        async with db.transaction() as s:  # the reference: the executemany of the same rows
            conn = await s.connection()
            params = insert.params(conn.dialect, rows("m"))
            await conn.exec_driver_sql(insert._compiled["sqlite"].sql, params)
        assert [st for st in statements if st[0] == "INSERT"] == [("INSERT", True)]
        statements.clear()
        async with db.transaction() as s:
            await bulk_update(TABLE, "idem_key", ("reason", "detail")).execute(
                s, [("v1", TRICKY[1], RawJSON('{"a": "\\u00e9"}')), ("v2", "x\x00y", None)]
            )
        assert [st for st in statements if st[0] == "UPDATE"] == [("UPDATE", False)]
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)

    def strip(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [r[:KEYS.index("idem_key")] + r[KEYS.index("idem_key") + 1:] for r in rows]

    stored = await _raw(db, [f"v{i}" for i in range(3, 6)])
    assert strip(stored) == strip(await _raw(db, [f"m{i}" for i in range(3, 6)]))
    assert [r[KEYS.index("reason")] for r in stored] == TRICKY[2:]
    first, second = await _raw(db, ["v1", "v2"])
    assert first[KEYS.index("reason")] == TRICKY[1] and first[-1] == '{"a": "\\u00e9"}'
    assert second[KEYS.index("reason")] == "x\x00y" and second[-1] == "null"  # as the JSON type binds None


def test_sqlite_rows_go_in_statements_of_a_few_sizes() -> None:
    """1,000 rows: statements of 256, then 128, 64, 32 and 8 rows (texts the driver's statement
    cache keeps), each row's parameters in the keys' order, none over SQLite's 32,766."""
    from sqlalchemy.dialects import sqlite

    form = bulk_insert(TABLE, KEYS).values_form(sqlite.dialect())
    assert form is not None and form.full == 256
    rows = [tuple({**values(1), "idem_key": f"s{i}"}[k] for k in KEYS) for i in range(1000)]
    statements = form.statements(rows)
    assert [len(params) // len(KEYS) for _sql, params in statements] == [256, 256, 256, 128, 64, 32, 8]
    assert all(sql.count("?") == len(params) <= 32_766 for sql, params in statements)
    flat = [v for _sql, params in statements for v in params]
    assert flat[KEYS.index("idem_key")::len(KEYS)] == [f"s{i}" for i in range(1000)]
    assert bulk_insert(TABLE, KEYS).values_form(__import__("sqlalchemy.dialects.postgresql", fromlist=["dialect"]).dialect()) is None


async def test_keyed_read_gives_the_rows_the_statement_gives(db: Database) -> None:
    """A batch's rows by key (SQLite: one JSON array each way; PostgreSQL: an array of keys)
    are the rows, value for value and type for type, that SQLAlchemy's result gives."""
    from scada.prepaid.deduction import columns_as_text

    await _account(db)
    async with db.transaction() as s:
        texts = TRICKY if db.dialect == "sqlite" else TRICKY[:4]  # PostgreSQL text holds no NUL
        s.add_all(LedgerEntry(**{**values(i), "reason": texts[i % len(texts)]}) for i in range(1, 8))
    read = KeyedRead(columns_as_text(TABLE, ("detail",)), TABLE.c.idem_key, order=True)
    wanted = ["k3", "k1", "k7", "k5", "nope"]
    async with db.transaction() as s:
        got = await read.rows(s, wanted)
        expected = [tuple(r) for r in (await s.execute(read.by_list, {"ids": wanted})).all()]
    assert len(got) == 4
    assert sorted(got, key=lambda r: r[read.names.index("id")]) == expected
    for a, b in zip(sorted(got, key=lambda r: r[read.names.index("id")]), expected, strict=True):
        assert [type(v) for v in a] == [type(v) for v in b]
    assert isinstance(got[0][read.names.index("detail")] or RawJSON(""), RawJSON)


def test_keyed_read_takes_the_row_path_for_numbers_sqlite_stores_as_floats() -> None:
    """SQLite writes a float into JSON with 15 digits: a Float or plain Numeric column, or a
    binary one, is read row by row; ExactDecimal (text on SQLite) and the rest go as JSON."""
    from sqlalchemy import Column, Float, Integer, LargeBinary, MetaData, Numeric, String

    from scada.db.types import ExactDecimal

    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("name", String), Column("exact", ExactDecimal()),
                  Column("f", Float), Column("n", Numeric(10, 2)), Column("b", LargeBinary))
    assert KeyedRead([table.c.id, table.c.name, table.c.exact], table.c.id, order=False)._json_ok
    for column in (table.c.f, table.c.n, table.c.b):
        assert not KeyedRead([table.c.id, column], table.c.id, order=False)._json_ok
