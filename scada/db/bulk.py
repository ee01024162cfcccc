"""Bulk statements for hot paths: a Core statement compiled once per dialect, run with plain rows.

A batch of thousands of rows through ``session.execute(stmt, [dict, ...])`` spends most of its
time in SQLAlchemy's per-row bookkeeping (building each row's parameters by name, then running
each value through its type's bind processor), not in the database. :class:`BulkStatement`
compiles the statement once per dialect, remembers the positional order of its parameters and
their types' bind processors (the very functions SQLAlchemy would call, so values are stored
exactly as the ORM stores them: ``ExactDecimal`` as text on SQLite, ``UtcDateTime`` naive UTC,
JSON encoded), and hands the driver one ``executemany`` of tuples on the session's own
connection, inside the caller's transaction.

On PostgreSQL an ``executemany`` still sends one Bind/Execute pair per row and the server runs
the statement once per row (a batch of 1,667 readings was 7,353 protocol messages and ~47 µs
of server CPU per reading). There the statements from :func:`bulk_insert` and
:func:`bulk_update` send each column as one array instead and let the server expand them
(``INSERT ... SELECT ... FROM unnest($1::type[], ...)``, ``UPDATE ... FROM unnest(...)``): one
statement run once per batch, the same values through the same bind processors, the same
column casts on assignment, rows inserted in the order given (``WITH ORDINALITY``). An insert
goes as a binary ``COPY`` instead when the driver's connection is already in the transaction
(asyncpg checks every element of an array parameter for being a sub-array, ~0.3 µs each, ~30
per reading; a ``COPY`` encodes the rows as they are, the rows in order, the same defaults,
constraints and triggers).

On SQLite the driver runs on a thread of its own and gives up the interpreter's lock around
every row it steps (each row of an ``executemany`` and of a result). On a server whose event loop
thread is busy, taking the lock back waits for that thread's switch interval (5 ms) every time:
2,000 rows took 3-11 s in place of 6 ms (``bench/README.md``), and a billing batch held SQLite's
write lock for as long. There the statements from :func:`bulk_insert` and :func:`bulk_update`
send up to 256 rows in one ``VALUES`` list (``INSERT ... VALUES (?, ?), (?, ?), ...``,
``UPDATE ... FROM (VALUES ...) AS u``), the same parameters bound the same way: a step per
statement, in statements of a few sizes (256, 128, ... rows) whose texts the driver's statement
cache keeps. :class:`KeyedRead` reads a batch's rows back as one JSON array (``json_group_array``,
one step; JSON keeps their SQLite types: text stays text, an integer an integer, null NULL).

A JSON column also takes :class:`RawJSON`: text the caller has already encoded, exactly as
``json.dumps`` encodes the value (the default encoder SQLAlchemy uses), passed to the driver as
it is; the hot paths build their rows' JSON as text instead of a dict to be encoded.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from itertools import chain
from typing import Any, cast

from sqlalchemy import JSON, ColumnElement, LargeBinary, Numeric, Select, Table, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeDecorator

__all__ = ["BulkStatement", "KeyedRead", "RawJSON", "StreamedInsert", "bulk_insert", "bulk_update", "driver_rows"]

Processor = Callable[[Any], Any]


class RawJSON(str):
    """JSON already encoded, byte for byte as ``json.dumps(value)`` (default separators,
    ``ensure_ascii``) encodes the value it stands for; a bulk statement stores it unchanged."""

    __slots__ = ()


class _Compiled:
    __slots__ = ("sql", "order", "processors", "positional", "convert")

    def __init__(self, sql: str, order: list[int], processors: list[Processor | None], positional: bool,
                 keys: Sequence[str]) -> None:
        self.sql = sql
        self.order = order
        self.processors = processors
        self.positional = positional
        self.convert = _converter(order, processors, positional, keys)


def _converter(
    order: list[int], processors: list[Processor | None], positional: bool, keys: Sequence[str]
) -> Callable[[Sequence[Sequence[Any]]], list[Any]]:
    """One list comprehension written out for this statement's parameters (``(p0(r[3]), r[1],
    ...)``): a generic loop over (index, processor) pairs per value cost more than the processors
    themselves at thousands of rows. Only indices and the processors' names go into the source."""
    env: dict[str, Any] = {}
    items = []
    for n, (i, p) in enumerate(zip(order, processors, strict=True)):
        value = f"r[{int(i)}]"
        if p is not None:
            env[f"p{n}"] = p
            value = f"p{n}({value})"
        items.append(value if positional else f"{keys[i]!r}: {value}")
    body = f"({', '.join(items)},)" if positional else "{" + ", ".join(items) + "}"
    namespace: dict[str, Any] = {}
    exec(f"def convert(rows):\n    return [{body} for r in rows]\n", env, namespace)  # noqa: S102 - source built above from ints and repr'd names
    return cast(Callable[[Sequence[Sequence[Any]]], list[Any]], namespace["convert"])


class _Arrays:
    """The PostgreSQL form of a bulk statement: one array parameter per key."""

    __slots__ = ("sql", "processors", "unique_key", "records")

    def __init__(self, sql: str, processors: list[Processor | None], unique_key: bool) -> None:
        self.sql = sql
        self.processors = processors
        self.unique_key = unique_key  # an update: the first key names the row, once per statement
        # the rows with their values through the processors, in the keys' order (for a COPY)
        self.records = _converter(list(range(len(processors))), processors, True, ())

    def params(self, rows: Sequence[Sequence[Any]]) -> tuple[list[Any], ...]:
        columns = []
        for i, p in enumerate(self.processors):
            column = [r[i] for r in rows]
            columns.append(column if p is None else [p(v) for v in column])
        return tuple(columns)


# json_each, json_group_array (3.9), UPDATE ... FROM (3.33), 32,766 parameters a statement (3.32)
_SQLITE_JSON = sqlite3.sqlite_version_info >= (3, 33, 0)


def _json_carries(columns: Sequence[ColumnElement[Any]]) -> bool:
    """JSON carries these columns' SQLite values exactly: not a binary value, nor a number SQLite
    stores as a float (``Float``, a plain ``Numeric``: SQLite writes a float into JSON with 15
    digits; ``ExactDecimal`` is text there)."""
    return not any(isinstance(c.type, (LargeBinary, Numeric)) or _python_type(c.type) is float for c in columns)


def chunk_sizes(n: int, full: int) -> list[int]:
    """``n`` rows as statements of ``full`` rows and then of halving sizes (128, 64, ... 1): few
    statement texts, each prepared once and kept in the driver's statement cache."""
    sizes = [full] * (n // full)
    rest = n % full
    size = full // 2
    while rest:
        if rest >= size:
            sizes.append(size)
            rest -= size
        size //= 2
    return sizes


class _ValuesRows:
    """The SQLite form of a bulk statement: many rows in one ``VALUES`` list (see the module
    docstring), the parameters bound as an executemany binds them."""

    __slots__ = ("width", "full", "unique_key", "records", "_sql", "_head", "_tail")

    def __init__(self, head: str, tail: str, width: int, processors: list[Processor | None], unique_key: bool) -> None:
        self._head = head  # the statement up to its VALUES list
        self._tail = tail  # and after it
        self.width = width
        # SQLite's limit on a statement's parameters is 32,766 (since 3.32)
        self.full = 1 << min(8, (32_766 // width).bit_length() - 1)
        self.unique_key = unique_key
        self.records = _converter(list(range(len(processors))), processors, True, ())
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        text = self._sql.get(rows)
        if text is None:
            one = "(" + ", ".join("?" * self.width) + ")"
            text = self._sql[rows] = self._head + ", ".join([one] * rows) + self._tail
        return text

    def statements(self, rows: Sequence[Sequence[Any]]) -> list[tuple[str, tuple[Any, ...]]]:
        records = self.records(rows)
        out = []
        i = 0
        for size in chunk_sizes(len(records), self.full):
            out.append((self.sql(size), tuple(chain.from_iterable(records[i:i + size]))))
            i += size
        return out


class BulkStatement:
    """``stmt`` with one ``bindparam`` per name in ``keys``; rows are tuples in ``keys`` order.

    ``table`` and ``key`` (from :func:`bulk_insert` / :func:`bulk_update`) allow the array form
    on PostgreSQL (see the module docstring): an insert into ``table`` without ``key``, an
    update of the row whose ``key`` column equals the first value otherwise."""

    def __init__(self, stmt: Executable, keys: Sequence[str], *, table: Table | None = None, key: str | None = None) -> None:
        self.stmt = stmt
        self.keys = tuple(keys)
        self.table = table
        self.key = key
        self._compiled: dict[str, _Compiled] = {}
        self._arrays: dict[str, _Arrays] = {}
        self._values: _ValuesRows | None = None

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.stmt.compile(dialect=dialect)
        index = {k: i for i, k in enumerate(self.keys)}
        names = list(compiled.positiontup or ()) if compiled.positional else list(self.keys)
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ValueError(f"bulk statement: parameters {unknown} are not among the row keys {self.keys}")
        processors: list[Processor | None] = []
        for name in names:
            type_ = compiled.binds[name].type
            processor = type_.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None and _python_type(type_) is datetime:
                processor = _memo_by_identity(processor)
            elif processor is not None and isinstance(type_, JSON):
                processor = _raw_json_passes(processor)
            processors.append(processor)
        return _Compiled(str(compiled), [index[n] for n in names], processors, bool(compiled.positional), self.keys)

    def params(self, dialect: Dialect, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """The rows as the driver takes them (for tests and for :meth:`execute`)."""
        c = self._compiled.get(dialect.name)
        if c is None:
            c = self._compiled[dialect.name] = self._compile(dialect)
        # the processors take None too (as SQLAlchemy calls them)
        return c.convert(rows)

    def arrays(self, dialect: Dialect) -> _Arrays | None:
        """The array form for ``dialect`` (PostgreSQL, a statement of :func:`bulk_insert` or
        :func:`bulk_update`), else None."""
        if dialect.name != "postgresql" or self.table is None:
            return None
        a = self._arrays.get(dialect.name)
        if a is None:
            a = self._arrays[dialect.name] = _array_form(self.table, self.keys, self.key, dialect)
        return a

    def values_form(self, dialect: Dialect) -> _ValuesRows | None:
        """The many-rows form for ``dialect`` (SQLite, a statement of :func:`bulk_insert` or
        :func:`bulk_update`), else None."""
        if dialect.name != "sqlite" or self.table is None or not _SQLITE_JSON:
            return None
        if self._values is None:
            self._values = _values_form(self.table, self.keys, self.key, dialect)
        return self._values

    async def execute(self, session: AsyncSession, rows: Sequence[Sequence[Any]]) -> None:
        """Run the statement for every row in ``session``'s transaction: on PostgreSQL one
        statement with the columns as arrays, elsewhere one ``executemany``."""
        if not rows:
            return
        conn = await session.connection()
        dialect = conn.dialect
        arrays = self.arrays(dialect)
        copying = await self._copying(conn)
        if copying is not None:
            await self._copy(copying, rows)
            return
        # an update naming a row twice: the rows apply one after another (the later wins), which
        # only the executemany does (UPDATE ... FROM would take one of them, unspecified which)
        if arrays is not None and (not arrays.unique_key or len({r[0] for r in rows}) == len(rows)):
            await conn.exec_driver_sql(arrays.sql, arrays.params(rows))
            return
        form = self.values_form(dialect)
        if form is not None and (not form.unique_key or len({r[0] for r in rows}) == len(rows)):
            for sql, params in form.statements(rows):
                await conn.exec_driver_sql(sql, params)
            return
        params = self.params(dialect, rows)
        await conn.exec_driver_sql(self._compiled[dialect.name].sql, params)

    def streamed(self, session: AsyncSession, part_rows: int = 256) -> StreamedInsert:
        """The statement's rows given while the caller makes them (an insert of
        :func:`bulk_insert`); see :class:`StreamedInsert`."""
        return StreamedInsert(self, session, part_rows)

    async def _copying(self, conn: Any) -> Any:
        """The driver's connection when the rows go as a ``COPY`` (an insert on PostgreSQL, in
        the transaction the session has begun: on its own a COPY would commit), else None."""
        arrays = self.arrays(conn.dialect)
        if arrays is None or arrays.unique_key or self.table is None:
            return None
        driver = (await conn.get_raw_connection()).driver_connection
        return driver if driver is not None and driver.is_in_transaction() else None

    async def _copy(self, driver: Any, rows: Sequence[Sequence[Any]]) -> None:
        assert self.table is not None
        arrays = self._arrays["postgresql"]  # made by _copying
        try:
            await driver.copy_records_to_table(
                self.table.name, records=arrays.records(rows), columns=list(self.keys), schema_name=self.table.schema
            )
        except Exception as exc:
            # wrapped as SQLAlchemy wraps the driver's errors of its own statements: the
            # callers tell a database failure (billing keeps the readings and tries
            # again) from a bug by DBAPIError
            raise DBAPIError(f"COPY {self.table.name}", None, exc) from exc


class StreamedInsert:
    """An insert's rows sent in parts while the caller is still making them: on PostgreSQL (the
    ``COPY`` form of :meth:`BulkStatement.execute`) the rows made so far go as a ``COPY`` of
    their own, from ``part_rows`` of them, whenever none is on its way, so the server inserts
    one part (its heap, its indexes, its key checks) while the caller makes the next; only the
    last part is waited for at the end. A billing batch's ledger rows had the server's work on
    them (~17 µs a row: the row, five indexes, the account's key check) waited for after the batch
    was priced, a sixth of the billing process's time. Elsewhere the rows go in one
    :meth:`BulkStatement.execute` at the end, and :meth:`turn` does not give up the loop.

    The caller calls :meth:`turn` now and then (every few dozen rows): a part is sent there,
    and the loop turns once so that it goes out. The session is the insert's until it is left
    (a statement of the caller's would meet a ``COPY`` in progress on the connection). The
    parts go as a ``COPY`` only once the session's transaction has begun (as :meth:`BulkStatement.execute`
    sends one); before that, the rows go at the end. The parts go one after another, in order
    (the rows' ids in the order given, as one statement gives them). A part's failure is raised
    by the next :meth:`turn` or at the end; leaving with an error waits for the part on its way
    (the transaction is rolled back after it, not in the middle of a ``COPY``)."""

    def __init__(self, statement: BulkStatement, session: AsyncSession, part_rows: int) -> None:
        self.statement, self.session, self.part_rows = statement, session, part_rows
        self._rows: list[Sequence[Any]] = []
        self._driver: Any = None
        self._flight: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StreamedInsert:
        self._driver = await self.statement._copying(await self.session.connection())
        return self

    def append(self, row: Sequence[Any]) -> None:
        self._rows.append(row)

    async def turn(self) -> None:
        """Send the rows made so far as a part if none is on its way (raising the error of the
        one that was), and let the loop turn; without a ``COPY``, nothing (not even a turn)."""
        if self._driver is None:
            return
        flight = self._flight
        if flight is not None:
            if not flight.done():
                await asyncio.sleep(0)
                return
            self._flight = None
            flight.result()  # its error ends the caller's work now
        if len(self._rows) >= self.part_rows:
            rows, self._rows = self._rows, []
            self._flight = asyncio.get_running_loop().create_task(
                self.statement._copy(self._driver, rows), name="bulk insert part"
            )
        await asyncio.sleep(0)

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        flight, self._flight = self._flight, None
        if flight is not None:
            try:
                await asyncio.wait([flight])
            finally:
                if not flight.done():  # cancelled meanwhile: the part goes too (the transaction is not committed)
                    flight.cancel()
            if exc_type is not None:
                if not flight.cancelled():
                    flight.exception()  # retrieved: the caller's own error is the one raised
                return
            flight.result()
        if exc_type is None and self._rows:
            rows, self._rows = self._rows, []
            if self._driver is not None:
                await self.statement._copy(self._driver, rows)
            else:
                await self.statement.execute(self.session, rows)


def _python_type(type_: Any) -> Any:
    try:
        python_type = type_.python_type
    except NotImplementedError:
        return None
    if python_type is object and isinstance(type_, TypeDecorator):
        return _python_type(type_.impl_instance)  # a decorator (UtcDateTime) says "object"
    return python_type


def _memo_by_identity(processor: Processor, size: int = 256) -> Processor:
    """``processor`` remembering its results by the identity of the value: the rows of a batch
    share their timestamp objects (the batch's ``now``, a poll's source time, the previous
    reading's time as the next one's start), and formatting a datetime for SQLite is the
    dearest bind step. Identity, not equality: equal datetimes can bind differently (the same
    instant in another zone, or a naive one, for a plain ``DateTime`` column; the two sides of
    a fold). The memo holds each value it keys, so no key's id can be reused while it is there;
    datetimes are immutable, so the same object gives the same result."""
    memo: dict[int, tuple[Any, Any]] = {}

    def process(value: Any) -> Any:
        hit = memo.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        result = processor(value)
        if len(memo) >= size:
            memo.clear()
        memo[id(value)] = (value, result)
        return result

    return process


def _raw_json_passes(processor: Processor) -> Processor:
    """A JSON column's processor that passes :class:`RawJSON` (already encoded) through."""

    def process(value: Any) -> Any:
        # as a plain str: the drivers take exact strings on their fastest path
        return str(value) if value.__class__ is RawJSON else processor(value)

    return process


def _column_processor(col: Any, dialect: Dialect) -> Processor | None:
    """The bind processor of ``col`` for ``dialect`` as the array and ``VALUES`` forms use it:
    datetimes remembered by identity, a JSON column passing :class:`RawJSON` through."""
    processor: Processor | None = col.type.dialect_impl(dialect).bind_processor(dialect)
    if processor is not None and _python_type(col.type) is datetime:
        processor = _memo_by_identity(processor)
    if isinstance(col.type, JSON) and processor is not None:
        processor = _raw_json_passes(processor)
    return processor


def _array_form(table: Table, keys: Sequence[str], key: str | None, dialect: Dialect) -> _Arrays:
    """``INSERT INTO t (a, b) SELECT u.a, u.b FROM unnest($1::a_type[], $2::b_type[]) WITH
    ORDINALITY AS u(a, b, _n) ORDER BY u._n`` or ``UPDATE t SET b = u.b FROM unnest(...) AS u(_key,
    b) WHERE t.key = u._key``. The arrays are typed without length or scale (``numeric[]``,
    ``varchar[]``): the column's own type applies on assignment, as it does to an executemany's
    parameters. JSON travels as text (the text its bind processor makes) and is cast back."""
    prep = dialect.identifier_preparer
    columns = [table.c[key] if k == "_key" and key is not None else table.c[k] for k in keys]
    processors: list[Processor | None] = []
    arrays: list[str] = []
    selected: list[str] = []
    aliases = [f"c{i}" for i in range(len(keys))]
    for n, (col, alias) in enumerate(zip(columns, aliases, strict=True)):
        processor = _column_processor(col, dialect)
        if isinstance(col.type, JSON):
            arrays.append(f"${n + 1}::text[]")
            selected.append(f"u.{alias}::json")
        else:
            base = re.sub(r"\s*\([^)]*\)", "", col.type.compile(dialect=dialect))
            arrays.append(f"${n + 1}::{base}[]")
            selected.append(f"u.{alias}")
        processors.append(processor)
    name = prep.format_table(table)
    if key is None:
        sql = (f"INSERT INTO {name} ({', '.join(prep.quote(c.name) for c in columns)}) "
               f"SELECT {', '.join(selected)} FROM unnest({', '.join(arrays)}) WITH ORDINALITY "
               f"AS u({', '.join(aliases)}, _n) ORDER BY u._n")
        return _Arrays(sql, processors, unique_key=False)
    sets = ", ".join(f"{prep.quote(c.name)} = {v}" for c, v in zip(columns[1:], selected[1:], strict=True))
    sql = (f"UPDATE {name} SET {sets} FROM unnest({', '.join(arrays)}) AS u({', '.join(aliases)}) "
           f"WHERE {name}.{prep.quote(key)} = u.{aliases[0]}")
    return _Arrays(sql, processors, unique_key=True)


def _values_form(table: Table, keys: Sequence[str], key: str | None, dialect: Dialect) -> _ValuesRows:
    """``INSERT INTO t (a, b) VALUES (?, ?), (?, ?), ...`` or ``UPDATE t SET b = u.column2 FROM
    (VALUES (?, ?), (?, ?), ...) AS u WHERE t.key = u.column1``."""
    prep = dialect.identifier_preparer
    columns = [table.c[key] if k == "_key" and key is not None else table.c[k] for k in keys]
    processors: list[Processor | None] = []
    for col in columns:
        processors.append(_column_processor(col, dialect))
    name = prep.format_table(table)
    if key is None:
        head = f"INSERT INTO {name} ({', '.join(prep.quote(c.name) for c in columns)}) VALUES "
        return _ValuesRows(head, "", len(columns), processors, False)
    sets = ", ".join(f"{prep.quote(c.name)} = u.column{n + 2}" for n, c in enumerate(columns[1:]))
    head = f"UPDATE {name} SET {sets} FROM (VALUES "
    tail = f") AS u WHERE {name}.{prep.quote(key)} = u.column1"
    return _ValuesRows(head, tail, len(columns), processors, True)


class KeyedRead:
    """``SELECT columns FROM table WHERE key IN (ids) FOR UPDATE``, the rows as tuples.

    On PostgreSQL the ids go as one array (``= ANY($1)``: one statement text, prepared once,
    whatever the batch's size), the rows locked, in ``order_by`` order; on SQLite (no row locks:
    the transaction holds the write lock) the ids go as one JSON array and the rows come back as
    one JSON array (``json_group_array``, one step of the driver: see the module docstring), in
    no particular order, each value through its column type's result processor as SQLAlchemy's
    own result would; elsewhere, or for a column JSON cannot carry (binary, floating point), an
    expanding ``IN``."""

    def __init__(self, columns: Sequence[ColumnElement[Any]], key: ColumnElement[Any], *, order: bool) -> None:
        self.columns = list(columns)
        self.names = tuple(str(c.key) for c in self.columns)
        base = select(*self.columns)
        if order:
            base = base.order_by(key)
        self.by_list: Select[Any] = base.where(key.in_(bindparam("ids", expanding=True))).with_for_update()
        self.by_array: Select[Any] = base.where(key == any_(bindparam("ids", type_=postgresql.ARRAY(key.type)))).with_for_update()
        self._key = key
        self._json: tuple[str, Callable[[Sequence[Sequence[Any]]], list[Any]]] | None = None
        self._json_ok = _SQLITE_JSON and _json_carries(self.columns)

    def _json_sql(self, dialect: Dialect) -> tuple[str, Callable[[Sequence[Sequence[Any]]], list[Any]]]:
        if self._json is None:
            inner = select(*self.columns).where(self._key.in_(select(func.json_each(bindparam("ids")).table_valued("value").c.value)))
            sub = inner.subquery()
            outer = select(func.json_group_array(func.json_array(*sub.c)))
            sql = str(outer.compile(dialect=dialect))
            processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in self.columns]
            self._json = (sql, _converter(list(range(len(processors))), processors, True, ()))
        return self._json

    async def rows(self, session: AsyncSession, ids: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of ``ids`` in ``session``'s transaction, as tuples in :attr:`names` order."""
        conn = await session.connection()
        dialect = conn.dialect
        if dialect.name == "postgresql":
            return [tuple(r) for r in (await session.execute(self.by_array, {"ids": list(ids)})).all()]
        if dialect.name == "sqlite" and self._json_ok:
            try:
                param = json.dumps(list(ids), ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError):
                param = None
            if param is not None:
                sql, convert = self._json_sql(dialect)
                text = (await conn.exec_driver_sql(sql, (param,))).scalar()
                return convert(json.loads(text)) if text else []
        return [tuple(r) for r in (await session.execute(self.by_list, {"ids": list(ids)})).all()]


def bulk_insert(table: Table, keys: Sequence[str]) -> BulkStatement:
    """``INSERT INTO table (keys...) VALUES (...)``."""
    # inline: the statement does not fetch generated keys back (no RETURNING per row)
    stmt = insert(table).inline().values({k: bindparam(k, type_=table.c[k].type) for k in keys})
    return BulkStatement(stmt, keys, table=table)


def bulk_update(table: Table, key: str, keys: Sequence[str]) -> BulkStatement:
    """``UPDATE table SET keys... WHERE key = ?``; rows are ``(key value, *values)``."""
    stmt = (
        update(table)
        .where(table.c[key] == bindparam("_key", type_=table.c[key].type))
        .values({k: bindparam(k, type_=table.c[k].type) for k in keys})
    )
    return BulkStatement(stmt, ("_key", *keys), table=table, key=key)


async def driver_rows(session: AsyncSession, stmt: ClauseElement, size: int = 20_000) -> AsyncIterator[Sequence[Any]]:
    """The rows of a Core ``SELECT`` as the driver returns them, ``size`` at a time, in the
    session's transaction: plain tuples (asyncpg's records), values as the driver gives them
    (on SQLite a date is its text, a big integer kept as text stays text), none of SQLAlchemy's
    per-row result processing — which was three quarters of reading 310,000 short rows on
    SQLite. The statement's parameters are rendered into its text: only for values the server
    itself puts there (dates, ids), never for anything a user typed."""
    conn = await session.connection()
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("driver_rows: the session's connection is closed")
    if conn.dialect.name == "postgresql":
        if not driver.is_in_transaction():  # a cursor needs one; a single fetch does not
            rows = await driver.fetch(sql)
            for i in range(0, len(rows), size):
                yield rows[i:i + size]
            return
        cursor = await driver.cursor(sql)  # server side, in the session's transaction (its snapshot)
        while rows := await cursor.fetch(size):
            yield rows
        return
    async with driver.execute(sql) as cursor:
        while rows := await cursor.fetchmany(size):
            yield rows
