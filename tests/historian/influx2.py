"""InfluxDB 2.x's HTTP API in front of the real InfluxDB 1.x test server.

No InfluxDB 2.x or 3.x server can be installed here (Debian ships 1.6.7, which answers 404 on
``/api/v2/write``). To exercise our ``api = "v2"`` path — influxdb-client's write API with a
token, an org and a bucket, and InfluxQL reads through the v1 compatibility ``/query`` with a
token — this gateway speaks that part of the 2.x API and stores into the real 1.x server the
way 2.x maps buckets to database/retention policy ("DBRP"). It checks what a 2.x server checks
(token, org, bucket, precision) and answers errors in 2.x's JSON shape.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["Influx2Gateway"]

_PRECISION = {"s": "s", "ms": "ms", "us": "u", "ns": "n"}


class Influx2Gateway:
    def __init__(self, upstream: str, *, token: str, org: str, buckets: dict[str, str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.org = org
        self.buckets = buckets  # bucket -> "db" or "db/rp"
        self.writes = 0
        self.queries = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/v2/write", self._write)
        app.router.add_route("*", "/query", self._query)
        app.router.add_get("/ping", self._ping)
        self._http = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Token {self.token}":
            return web.json_response({"code": "unauthorized", "message": "unauthorized access"}, status=401)
        return None

    def _dbrp(self, bucket: str) -> tuple[str, str | None] | None:
        target = self.buckets.get(bucket)
        if target is None:
            return None
        db, _, rp = target.partition("/")
        return db, rp or None

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _write(self, request: web.Request) -> web.Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        q = request.query
        if q.get("org") != self.org:
            return web.json_response({"code": "not found", "message": f'organization name "{q.get("org")}" not found'}, status=404)
        dbrp = self._dbrp(q.get("bucket", ""))
        if dbrp is None:
            return web.json_response({"code": "not found", "message": f'bucket "{q.get("bucket")}" not found'}, status=404)
        precision = _PRECISION.get(q.get("precision", "ns"))
        if precision is None:
            return web.json_response({"code": "invalid", "message": "invalid precision"}, status=400)
        db, rp = dbrp
        params = {"db": db, "precision": precision, **({"rp": rp} if rp else {})}
        assert self._http is not None
        async with self._http.post(self.upstream + "/write", params=params, data=await request.read()) as resp:
            body = await resp.read()
            status = resp.status
        if status == 204:
            self.writes += 1
            return web.Response(status=204)
        message: Any = body.decode(errors="replace")
        return web.json_response({"code": "invalid", "message": message}, status=status)

    async def _query(self, request: web.Request) -> web.Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        form: dict[str, str] = dict(request.query)
        if request.method == "POST":
            form.update({k: str(v) for k, v in (await request.post()).items()})
        params = {k: v for k, v in form.items() if k in ("epoch", "chunked", "chunk_size")}
        data = {"q": form.get("q", "")}
        if "db" in form:
            dbrp = self._dbrp(form["db"])
            if dbrp is None:
                return web.json_response({"code": "not found", "message": f"no dbrp mapping for database {form['db']!r}"}, status=404)
            data["db"] = dbrp[0]
            rp = form.get("rp") or dbrp[1]
            if rp:
                data["rp"] = rp
        assert self._http is not None
        self.queries += 1
        async with self._http.post(self.upstream + "/query", params=params, data=data) as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")
