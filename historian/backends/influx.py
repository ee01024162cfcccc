"""The InfluxDB backend: InfluxDB 1.x through its HTTP API, 2.x/3.x through influxdb-client.

Writes:

- ``api = "v1"`` (InfluxDB 1.x): line protocol ``POST /write?db=&rp=&precision=`` with aiohttp,
  user/password by HTTP basic auth. With ``manage_schema`` the backend creates the database and
  keeps two retention policies, one for intervals and one for raw points, at the configured
  durations (that is how retention works on 1.x).
- ``api = "v2"`` (InfluxDB 2.x and 3.x): influxdb-client's write API (token, org, bucket). The
  client is synchronous, so it runs in a worker thread owned by the backend. Retention is the
  bucket's own setting on these servers.

Reads use one path for both: InfluxQL on ``/query`` (native on 1.x, the v1 compatibility API on
2.x, and on 3.x), with ``db``/``rp`` = the v1 database and retention policy, or the bucket.

A point is (measurement, tags, time): writing it again replaces it, so retries never duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pandas as pd

from ..records import INTERVAL_FIELDS, IntervalRecord, RawPoint
from ..rollup import DAY_FIELDS
from ..settings import InfluxSettings
from .base import (
    Aggregate,
    Backend,
    BackendError,
    BackendRejected,
    BackendUnavailable,
    Bucketing,
)
from .lineproto import (
    DAY_MEASUREMENT,
    INTERVAL_MEASUREMENT,
    RAW_MEASUREMENT,
    day_lines,
    interval_lines,
    quote_ident,
    quote_string,
    raw_lines,
    regex_any,
)

__all__ = ["InfluxBackend"]

log = logging.getLogger(__name__)

_KNOWN = frozenset(INTERVAL_FIELDS)
_GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
# InfluxDB 1.x answers 400 when some points are older than the retention policy: those are
# expired by policy, the rest was written
_BEYOND_RETENTION = re.compile(r"^partial write: points beyond retention policy dropped=\d+$")
_MISSING = ("database not found", "retention policy not found")


def _duration_s(text: str) -> int:
    m = _GO_DURATION.match(text)
    if not m:
        return -1
    h, mi, s = (int(x) if x else 0 for x in m.groups())
    return h * 3600 + mi * 60 + s


def _influx_duration(days: int) -> str:
    return "INF" if days <= 0 else f"{days}d"


class InfluxBackend(Backend):
    name = "influx"

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None
        self._client: Any = None  # influxdb_client.InfluxDBClient for api v2
        self._write_api: Any = None
        self._pool: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        s = self.settings
        headers: dict[str, str] = {}
        if s.api == "v2":
            headers["Authorization"] = f"Token {s.token}"
        elif s.username:
            headers["Authorization"] = aiohttp.encode_basic_auth(s.username, s.password or "")
        self._http = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=s.timeout_s),
            connector=aiohttp.TCPConnector(ssl=s.verify_tls),  # True: aiohttp's default verified context
        )
        if s.api == "v2":
            # influxdb-client is loaded only for the v2 API (v1 speaks plain HTTP): ~0.5 s saved at start
            from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415
            from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415

            assert s.token is not None  # the settings require a token for api v2
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="historian-influx")
            self._client = InfluxDBClient(
                url=self.url, token=s.token, org=s.org, timeout=int(s.timeout_s * 1000), verify_ssl=s.verify_tls
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._pool is not None:
            client, self._client, self._write_api = self._client, None, None
            if client is not None:
                await asyncio.get_running_loop().run_in_executor(self._pool, client.close)
            self._pool.shutdown(wait=True)
            self._pool = None

    async def prepare(self) -> None:
        s = self.settings
        if s.api != "v1" or not s.manage_schema:
            return
        db = quote_ident(s.database)
        await self._statement(f"CREATE DATABASE {db}")
        answer = await self._query(f"SHOW RETENTION POLICIES ON {db}", db=None)
        existing: dict[str, int] = {}
        for series in _series(answer):
            cols = series["columns"]
            for row in series.get("values", []):
                rec = dict(zip(cols, row, strict=False))
                existing[str(rec["name"])] = _duration_s(str(rec["duration"]))
        for rp, days in ((s.interval_rp, s.interval_retention_days), (s.raw_rp, s.raw_retention_days)):
            want = 0 if days <= 0 else days * 86_400
            verb = "CREATE" if rp not in existing else "ALTER" if existing[rp] != want else None
            if verb is not None:
                await self._statement(
                    f"{verb} RETENTION POLICY {quote_ident(rp)} ON {db} DURATION {_influx_duration(days)} REPLICATION 1"
                )
                log.info("InfluxDB retention policy set", extra={"database": s.database, "rp": rp, "days": days})

    # -- writes ------------------------------------------------------------------------------
    async def write_intervals(self, records: Sequence[IntervalRecord]) -> None:
        if records:
            s = self.settings
            await self._write(interval_lines(records), "s", s.interval_rp, s.bucket)

    async def write_days(self, records: Sequence[IntervalRecord]) -> None:
        if records:
            s = self.settings
            await self._write(day_lines(records), "s", s.interval_rp, s.bucket)

    async def write_raw(self, points: Sequence[RawPoint]) -> None:
        if points:
            s = self.settings
            await self._write(raw_lines(points), "us", s.raw_rp, s.raw_bucket or s.bucket)

    async def _write(self, body: str, precision: str, rp: str, bucket: str) -> None:
        if self.settings.api == "v2":
            await self._write_v2(body, precision, bucket)
        else:
            await self._write_v1(body, "u" if precision == "us" else precision, rp)

    async def _write_v1(self, body: str, precision: str, rp: str) -> None:
        params = {"db": self.settings.database, "precision": precision}
        if rp:
            params["rp"] = rp
        status, text = await self._request("POST", "/write", params=params, data=body.encode())
        if status == 204:
            return
        message = _error_message(text)
        if status == 400 and _BEYOND_RETENTION.match(message):
            log.info("InfluxDB dropped points older than the retention policy", extra={"detail": message})
            return
        raise _write_error(status, message)

    async def _write_v2(self, body: str, precision: str, bucket: str) -> None:
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415 - v2 only, as in open()
        from influxdb_client.rest import ApiException  # noqa: PLC0415
        from urllib3.exceptions import HTTPError  # noqa: PLC0415

        if self._pool is None or self._write_api is None:
            raise BackendUnavailable("InfluxDB client is not open")
        write_api = self._write_api
        wp = WritePrecision.S if precision == "s" else WritePrecision.US

        def write() -> None:
            write_api.write(bucket=bucket, org=self.settings.org, record=body, write_precision=wp)

        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, write)
        except ApiException as exc:
            body_text = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
            raise _write_error(int(exc.status or 0), _error_message(body_text)) from None
        except HTTPError as exc:
            raise BackendUnavailable(f"InfluxDB at {self.url}: {exc}") from None

    # -- reads -------------------------------------------------------------------------------
    def _read_target(self, raw: bool) -> tuple[str, str | None]:
        s = self.settings
        if s.api == "v2":
            return (s.raw_bucket or s.bucket) if raw else s.bucket, None
        return s.database, (s.raw_rp if raw else s.interval_rp) or None

    async def fetch_intervals(self, meters: Sequence[str], fields: Sequence[str], start: int, end: int) -> pd.DataFrame:
        _check_fields(fields)
        cols = ["time", "meter", *fields]
        if not meters:
            return _empty(cols)
        # InfluxDB leaves out rows whose selected fields are all null: select ``samples`` (always
        # written) too, so that every stored interval comes back, like on SQLite
        select = list(dict.fromkeys([*fields, "samples"]))
        q = (
            f"SELECT {', '.join(quote_ident(f) for f in select)} FROM {quote_ident(INTERVAL_MEASUREMENT)} "
            f"WHERE {quote_ident('meter')} =~ {regex_any(meters)} AND time >= {start}s AND time < {end}s "
            f"GROUP BY {quote_ident('meter')}"
        )
        db, rp = self._read_target(raw=False)
        answer = await self._query(q, db=db, rp=rp, epoch="s")
        return await _to_frame(answer, "meter", cols)

    async def fetch_buckets(
        self, meters: Sequence[str], aggregates: Sequence[Aggregate], start: int, end: int, bucketing: Bucketing
    ) -> pd.DataFrame:
        _check_fields([a.field for a in aggregates])
        cols = ["time", "meter", *[a.column for a in aggregates]]
        if not meters:
            return _empty(cols)
        select = ", ".join(f"{a.func}({quote_ident(a.field)}) AS {quote_ident(a.column)}" for a in aggregates)
        if bucketing.daily:
            group = f"time(1d), {quote_ident('meter')} fill(none) tz({quote_string(str(bucketing.tz))})"
        else:
            b = bucketing.seconds
            group = f"time({b}s, {(-bucketing.phase) % b}s), {quote_ident('meter')} fill(none)"
        q = (
            f"SELECT {select} FROM {quote_ident(INTERVAL_MEASUREMENT)} "
            f"WHERE {quote_ident('meter')} =~ {regex_any(meters)} AND time >= {start}s AND time < {end}s "
            f"GROUP BY {group}"
        )
        db, rp = self._read_target(raw=False)
        answer = await self._query(q, db=db, rp=rp, epoch="s")
        return await _to_frame(answer, "meter", cols)

    async def fetch_days(self, meters: Sequence[str], aggregates: Sequence[Aggregate], start: int, end: int) -> pd.DataFrame:
        columns = [a.column for a in aggregates]
        unknown = [c for c in columns if c not in DAY_FIELDS]
        if unknown:
            raise ValueError(f"no day rollup of {unknown}")
        cols = ["time", "meter", *columns]
        if not meters:
            return _empty(cols)
        select = list(dict.fromkeys([*columns, "samples__count"]))  # always written: no row is left out
        q = (
            f"SELECT {', '.join(quote_ident(c) for c in select)} FROM {quote_ident(DAY_MEASUREMENT)} "
            f"WHERE {quote_ident('meter')} =~ {regex_any(meters)} AND time >= {start}s AND time < {end}s "
            f"GROUP BY {quote_ident('meter')}"
        )
        db, rp = self._read_target(raw=False)
        answer = await self._query(q, db=db, rp=rp, epoch="s")
        return await _to_frame(answer, "meter", cols)

    async def fetch_raw(self, tags: Sequence[str], start_us: int, end_us: int) -> pd.DataFrame:
        cols = ["time", "tag", "value", "quality"]
        if not tags:
            return _empty(cols)
        q = (
            f"SELECT {quote_ident('value')}, {quote_ident('quality')} FROM {quote_ident(RAW_MEASUREMENT)} "
            f"WHERE {quote_ident('tag')} =~ {regex_any(tags)} AND time >= {start_us}u AND time < {end_us}u "
            f"GROUP BY {quote_ident('tag')}"
        )
        db, rp = self._read_target(raw=True)
        answer = await self._query(q, db=db, rp=rp, epoch="u")
        return await _to_frame(answer, "tag", cols)

    async def fetch_interval_page(
        self, meter: str, fields: Sequence[str], start: int, end: int, *, limit: int, descending: bool = False
    ) -> pd.DataFrame:
        _check_fields(fields)
        cols = ["time", "meter", *fields]
        # ``samples`` is always written: selecting it keeps intervals whose other fields are null
        select = list(dict.fromkeys([*fields, "samples"]))
        q = (
            f"SELECT {', '.join(quote_ident(f) for f in select)} FROM {quote_ident(INTERVAL_MEASUREMENT)} "
            f"WHERE {quote_ident('meter')} = {quote_string(meter)} AND time >= {start}s AND time < {end}s "
            f"ORDER BY time {'DESC' if descending else 'ASC'} LIMIT {int(limit)}"
        )
        db, rp = self._read_target(raw=False)
        answer = await self._query(q, db=db, rp=rp, epoch="s")
        frame = await _to_frame(answer, "meter", cols)
        return frame[["time", *fields]]

    async def fetch_raw_page(
        self, tag: str, start_us: int, end_us: int, *, limit: int, descending: bool = False
    ) -> pd.DataFrame:
        cols = ["time", "tag", "value", "quality"]
        q = (
            f"SELECT {quote_ident('value')}, {quote_ident('quality')} FROM {quote_ident(RAW_MEASUREMENT)} "
            f"WHERE {quote_ident('tag')} = {quote_string(tag)} AND time >= {start_us}u AND time < {end_us}u "
            f"ORDER BY time {'DESC' if descending else 'ASC'} LIMIT {int(limit)}"
        )
        db, rp = self._read_target(raw=True)
        answer = await self._query(q, db=db, rp=rp, epoch="u")
        frame = await _to_frame(answer, "tag", cols)
        return frame[["time", "value", "quality"]]

    # -- HTTP --------------------------------------------------------------------------------
    async def _request(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        if self._http is None:
            raise BackendUnavailable("InfluxDB session is not open")
        try:
            async with self._http.request(method, self.url + path, **kw) as resp:
                return resp.status, await resp.text()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable(f"InfluxDB at {self.url}: {exc!r}") from None

    async def _statement(self, q: str) -> None:
        answer = await self._query(q, db=None)
        for result in answer:
            if "error" in result:
                raise BackendUnavailable(f"InfluxDB refused {q!r}: {result['error']}")

    async def _query(self, q: str, *, db: str | None, rp: str | None = None, epoch: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL; returns the statement results. A missing database reads as empty."""
        data = {"q": q}
        if db:
            data["db"] = db
        if rp:
            data["rp"] = rp
        params = {"epoch": epoch} if epoch else {}
        status, text = await self._request("POST", "/query", params=params, data=data)
        if status in (401, 403):
            raise BackendUnavailable(f"InfluxDB at {self.url} refused our credentials: {_error_message(text)}")
        if status >= 500 or status == 429:
            raise BackendUnavailable(f"InfluxDB at {self.url} answered {status}: {_error_message(text)}")
        try:
            answer = await _loads(text)
        except ValueError:
            raise BackendError(f"InfluxDB at {self.url} answered {status} with no JSON: {text[:200]}") from None
        if status != 200:
            raise BackendError(f"InfluxDB query failed ({status}): {_error_message(text)}")
        results = answer.get("results", [])
        for result in results:
            error = result.get("error")
            if error and not any(error.startswith(m) for m in _MISSING):
                raise BackendError(f"InfluxDB query failed: {error}")
        return [r for r in results if not (r.get("error") or "").startswith(_MISSING)]


def _check_fields(fields: Sequence[str]) -> None:
    unknown = [f for f in fields if f not in _KNOWN]
    if unknown:
        raise ValueError(f"unknown interval fields {unknown}")


def _error_message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(data, dict):
        return str(data.get("error") or data.get("message") or text)[:500]
    return text[:500]


def _write_error(status: int, message: str) -> BackendError:
    if status in (400, 413, 422):
        return BackendRejected(f"InfluxDB refused the points ({status}): {message}")
    if status in (401, 403):
        return BackendUnavailable(f"InfluxDB refused our credentials ({status}): {message}")
    return BackendUnavailable(f"InfluxDB write failed ({status or 'no answer'}): {message}")


def _series(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for r in results for s in r.get("series", [])]


def _empty(cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in cols})


async def _loads(text: str) -> dict[str, Any]:
    # the body is a JSON object (InfluxDB's query response)
    data: dict[str, Any] = json.loads(text) if len(text) < 100_000 else await asyncio.to_thread(json.loads, text)
    return data


async def _to_frame(results: list[dict[str, Any]], tag: str, cols: list[str]) -> pd.DataFrame:
    series = _series(results)
    if not series:
        return _empty(cols)
    if sum(len(s.get("values", [])) for s in series) < 5_000:
        return _build_frame(series, tag, cols)
    return await asyncio.to_thread(_build_frame, series, tag, cols)


def _build_frame(series: list[dict[str, Any]], tag: str, cols: list[str]) -> pd.DataFrame:
    rows: list[list[Any]] = []
    for s in series:
        key = s.get("tags", {}).get(tag, "")
        index = {c: i for i, c in enumerate(s["columns"])}
        picks = [index.get(c) for c in cols[2:]]
        t = index["time"]
        for v in s.get("values", []):
            rows.append([v[t], key, *[None if i is None else v[i] for i in picks]])
    return pd.DataFrame.from_records(rows, columns=cols, coerce_float=False)
