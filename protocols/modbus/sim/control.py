"""The simulator's HTTP control API (loopback only), for tests and demos.

=========================================  ===========================================================
``GET  /``                                   links with their ports, meter count, clock
``GET  /meters``                             every meter: id, link, unit, circuit, supply state
``GET  /meters/{id}``                        true point values, registers, relay/valve, load, fault,
                                             ``tou_table``, ``clock`` (time, drift_s), other ``parameters``
``PUT  /meters/{id}/fault``                  ``{"kind": "none|timeout|exception|garbage|slow",
                                             "exception_code": 2, "delay_ms": 3000}`` (per unit id)
``PUT  /meters/{id}/load``                   ``{"kw": 2.5}`` or ``{"m3_per_h": 0.4}``; ``null`` returns
                                             to the daily curve
``POST /meters/{id}/registers``              ``{"point": "energy_total", "value": 0}``: reset,
                                             replacement, rollover; other points are held at
                                             the value (``null`` releases them)
``PUT  /meters/{id}/relay``                  ``{"stuck": true}`` (accepts commands, does not move),
                                             ``{"closed": false}`` (switched by hand on site)
``PUT  /meters/{id}/tou``                    ``{"table": {"workday": [["00:00", "valley"], ...], ...}}``:
                                             the meter's time-of-use table, as if set on site
``PUT  /meters/{id}/clock``                  ``{"drift_s": 120}``: the meter's clock runs this far ahead
                                             (and its TOU registers switch period by that clock)
``PUT  /meters/{id}/params``                 ``{"refuse_writes": true}``: parameter writes are answered
                                             with an exception (device failure)
``GET  /stats``, ``POST /stats/reset``       requests per port and unit id, max requests in flight
``GET  /clock``, ``POST /clock``             ``{"advance_s": 3600}`` moves simulated time on;
                                             ``{"speed": 0}`` freezes it
=========================================  ===========================================================

Errors are JSON ``{"error": "..."}``: 404 for an unknown meter, 422 naming the bad field.

The API drives a process that may run inside the server, so only its owner may reach it: it
listens on loopback only; every request needs ``Authorization: Bearer <token>`` (the token the
simulator was given: ``scada demo`` keeps it in ``<runtime.data_dir>/simulator-control.token``),
a ``Host`` naming the loopback address and port it listens on, and no ``Origin`` other than that
(a web page in a browser cannot drive it); a request with a body must be ``application/json``
(JSON constants ``NaN``/``Infinity`` are refused). Numbers are finite and bounded: ``speed``
0 to :data:`MAX_SPEED`, ``advance_s`` above 0 up to :data:`MAX_ADVANCE_S` (366 days), loads up to
:data:`MAX_LOAD`. A large clock jump runs in steps that yield to the event loop, so the Modbus
servers (and the server the simulator runs in) go on answering meanwhile.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Any, Literal, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .clock import SimClock
from .model import SimMeter
from .server import Fault

MAX_SPEED = 100_000.0  # simulated seconds per real second
MAX_ADVANCE_S = 366 * 86_400.0  # one clock jump: at most a (leap) year
MAX_LOAD = 100_000.0  # kW, or m3/h
MAX_REGISTER = 1e15  # a value written into a register


class ControlledSimulator(Protocol):
    """What the control API drives: the simulator of ``site.Simulator``, seen from here."""

    clock: SimClock
    servers: dict[str, Any]
    meters: dict[str, SimMeter]

    def meter(self, meter_id: str) -> SimMeter: ...
    def unit_of(self, meter_id: str) -> Any: ...
    def set_fault(self, meter_id: str, fault: Fault) -> None: ...
    def set_load(self, meter_id: str, value: float | None) -> None: ...
    def set_register(self, meter_id: str, point: str, value: float | bool | None) -> None: ...
    def set_relay(self, meter_id: str, *, closed: bool | None = None, stuck: bool | None = None) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def reset_stats(self) -> None: ...
    async def advance_clock(self, seconds: float) -> None: ...


__all__ = ["MAX_ADVANCE_S", "MAX_LOAD", "MAX_SPEED", "TOKEN_FILE", "control_app", "control_token", "is_loopback", "start_control_api"]

TOKEN_FILE = "simulator-control.token"  # in the data directory

_SIM: web.AppKey[ControlledSimulator] = web.AppKey("simulator", object)  # type: ignore[arg-type]
_TOKEN: web.AppKey[str] = web.AppKey("control_token", str)
# the Host values (and so the Origins) this API answers to, known once it is bound
_HOSTS: web.AppKey[set[str]] = web.AppKey("control_hosts", set)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def control_token(path: str | Path) -> str:
    """The control token kept in ``path``: read, or created (random, readable by the owner only)."""
    path = Path(path)
    try:
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 16:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FaultBody(_Body):
    kind: Literal["none", "timeout", "exception", "garbage", "slow"]
    exception_code: int = Field(default=4, ge=1, le=255)
    delay_ms: int = Field(default=3000, ge=0, le=600_000)


class LoadBody(_Body):
    kw: float | None = Field(default=None, ge=0, le=MAX_LOAD, allow_inf_nan=False)
    m3_per_h: float | None = Field(default=None, ge=0, le=MAX_LOAD, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one(self) -> LoadBody:
        if "kw" in self.model_fields_set and "m3_per_h" in self.model_fields_set:
            raise ValueError("give kw (electricity) or m3_per_h (water), not both")
        if not self.model_fields_set:
            raise ValueError("give kw (electricity) or m3_per_h (water)")
        return self


class RegisterBody(_Body):
    point: str = Field(max_length=64)
    value: float | bool | None

    @model_validator(mode="after")
    def _finite(self) -> RegisterBody:
        v = self.value
        if isinstance(v, float | int) and not isinstance(v, bool) and not -MAX_REGISTER <= v <= MAX_REGISTER:
            raise ValueError(f"value: a finite number within ±{MAX_REGISTER:g}")
        return self


class RelayBody(_Body):
    stuck: bool | None = None
    closed: bool | None = None


class TouBody(_Body):
    table: dict[str, list[list[str]]]

    @model_validator(mode="after")
    def _pairs(self) -> TouBody:
        for day_type, entries in self.table.items():
            if any(len(e) != 2 for e in entries):
                raise ValueError(f"table.{day_type}: expected [\"HH:MM\", \"period\"] pairs")
        return self


class MeterClockBody(_Body):
    drift_s: float = Field(ge=-10 * 365 * 86400, le=10 * 365 * 86400)


class ParamsBody(_Body):
    refuse_writes: bool


class ClockBody(_Body):
    advance_s: float | None = Field(default=None, gt=0, le=MAX_ADVANCE_S, allow_inf_nan=False)
    speed: float | None = Field(default=None, ge=0, le=MAX_SPEED, allow_inf_nan=False)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


async def _body(request: web.Request, model: type[_Body]) -> Any:
    raw = await request.read()
    if len(raw) > 64 * 1024:
        raise _Unprocessable("body: too large")
    try:
        data = json.loads(raw or b"null", parse_constant=_no_constant)
    except ValueError as exc:
        raise _Unprocessable(f"body: not JSON ({exc})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "body"
            problems.append(f"{where}: {err['msg']}")
        raise _Unprocessable("; ".join(problems)) from None


class _Unprocessable(Exception):
    pass


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Only the simulator's owner, from this machine, not through a browser's page."""
    hosts = request.app[_HOSTS]
    if request.host not in hosts:
        return _error(403, f"Host {request.host[:64]!r} is not this control API's address")
    origin = request.headers.get("Origin")
    if origin is not None and origin not in {f"http://{h}" for h in hosts}:
        return _error(403, f"Origin {origin[:64]!r} may not drive the simulator")
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else ""
    if not token or not hmac.compare_digest(token.encode(), request.app[_TOKEN].encode()):
        return _error(401, "send the control token: 'Authorization: Bearer <token>'")
    if request.method in _WRITES and request.content_type != "application/json":
        return _error(415, f"expected Content-Type: application/json, got {request.content_type or 'none'}")
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Unprocessable as exc:
        return _error(422, str(exc))
    except KeyError as exc:
        return _error(404, str(exc.args[0]) if exc.args else "not found")
    except ValueError as exc:
        return _error(422, str(exc))


def control_app(sim: ControlledSimulator, token: str) -> web.Application:
    """The control API of ``sim``; requests must carry ``token``."""
    if len(token) < 16:
        raise ValueError("the control token must have at least 16 characters")
    app = web.Application(middlewares=[_guard, _errors], client_max_size=64 * 1024)
    app[_SIM] = sim
    app[_TOKEN] = token
    app[_HOSTS] = set()
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.Response:
        return web.json_response({
            "links": {name: {"port": s.port, "framing": s.framing, "units": len(s.units)} for name, s in sim.servers.items()},
            "meters": len(sim.meters),
            "clock": sim.clock(),
            "speed": sim.clock.speed,
        })

    @routes.get("/meters")
    async def meters(request: web.Request) -> web.Response:
        return web.json_response([
            {"id": m.spec.id, "profile": m.profile.name, "link": m.spec.link, "unit_id": m.spec.unit_id,
             "circuit": m.spec.circuit, "supply_on": m.supply_on,
             **({"address": m.spec.address} if m.spec.address is not None else {})}
            for m in sim.meters.values()
        ])

    @routes.get("/meters/{id}")
    async def meter(request: web.Request) -> web.Response:
        m = sim.meter(request.match_info["id"])
        unit = sim.unit_of(m.spec.id)
        snap = m.snapshot(sim.clock())
        snap["fault"] = {"kind": unit.fault.kind, "exception_code": unit.fault.exception_code, "delay_ms": unit.fault.delay_ms}
        return web.json_response(snap)

    @routes.put("/meters/{id}/fault")
    async def fault(request: web.Request) -> web.Response:
        body: FaultBody = await _body(request, FaultBody)
        sim.set_fault(request.match_info["id"], Fault(body.kind, body.exception_code, body.delay_ms))
        return web.json_response({"ok": True})

    @routes.put("/meters/{id}/load")
    async def load(request: web.Request) -> web.Response:
        body: LoadBody = await _body(request, LoadBody)
        m = sim.meter(request.match_info["id"])
        if m.water and "kw" in body.model_fields_set:
            raise ValueError(f"meter {m.spec.id} is a water meter: give m3_per_h")
        if not m.water and "m3_per_h" in body.model_fields_set:
            raise ValueError(f"meter {m.spec.id} is an electricity meter: give kw")
        sim.set_load(m.spec.id, body.m3_per_h if m.water else body.kw)
        return web.json_response({"ok": True})

    @routes.post("/meters/{id}/registers")
    async def registers(request: web.Request) -> web.Response:
        body: RegisterBody = await _body(request, RegisterBody)
        m = sim.meter(request.match_info["id"])
        if body.point not in m.profile.points:
            raise ValueError(f"point: {body.point!r} is not a point of {m.spec.id} (points: {', '.join(m.profile.points)})")
        sim.set_register(m.spec.id, body.point, body.value)
        return web.json_response({"ok": True})

    @routes.put("/meters/{id}/relay")
    async def relay(request: web.Request) -> web.Response:
        body: RelayBody = await _body(request, RelayBody)
        sim.set_relay(request.match_info["id"], closed=body.closed, stuck=body.stuck)
        return web.json_response({"ok": True})

    @routes.put("/meters/{id}/tou")
    async def tou(request: web.Request) -> web.Response:
        body: TouBody = await _body(request, TouBody)
        table = {d: [(e[0], e[1]) for e in entries] for d, entries in body.table.items()}
        sim.meter(request.match_info["id"]).set_tou(table, sim.clock())
        return web.json_response({"ok": True})

    @routes.put("/meters/{id}/clock")
    async def meter_clock(request: web.Request) -> web.Response:
        body: MeterClockBody = await _body(request, MeterClockBody)
        sim.meter(request.match_info["id"]).drift(body.drift_s, sim.clock())
        return web.json_response({"ok": True})

    @routes.put("/meters/{id}/params")
    async def params(request: web.Request) -> web.Response:
        body: ParamsBody = await _body(request, ParamsBody)
        sim.meter(request.match_info["id"]).refuse_writes = body.refuse_writes
        return web.json_response({"ok": True})

    @routes.get("/stats")
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(sim.stats())

    @routes.post("/stats/reset")
    async def reset_stats(request: web.Request) -> web.Response:
        await request.read()  # a body, if any, is ignored
        sim.reset_stats()
        return web.json_response({"ok": True})

    @routes.get("/clock")
    async def clock(request: web.Request) -> web.Response:
        return web.json_response({"now": sim.clock(), "speed": sim.clock.speed})

    @routes.post("/clock")
    async def set_clock(request: web.Request) -> web.Response:
        body: ClockBody = await _body(request, ClockBody)
        if body.speed is not None:
            sim.clock.set_speed(body.speed)
        if body.advance_s is not None:
            await sim.advance_clock(body.advance_s)
        return web.json_response({"now": sim.clock(), "speed": sim.clock.speed})

    app.add_routes(routes)
    return app


async def start_control_api(sim: ControlledSimulator, host: str, port: int, token: str) -> tuple[web.AppRunner, str]:
    """Serve the control API on ``host`` (a loopback address) and ``port`` (0: a free one)."""
    if not is_loopback(host):
        raise ValueError(f"the simulator's control API listens on loopback only, not {host!r}")
    app = control_app(sim, token)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    url_host = f"[{host}]" if ":" in host else host
    app[_HOSTS].update({f"{url_host}:{bound}", f"localhost:{bound}"} if host != "localhost" else {f"localhost:{bound}", f"127.0.0.1:{bound}"})
    return runner, f"http://{url_host}:{bound}"
