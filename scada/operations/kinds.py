"""The kinds of job: what each one's parameters are, what it acts on, which permission it needs,
and how one item is done.

Every item is idempotent by job, run and target: a recharge item's reference is
``job-<id>-<run>-<room>`` (the ledger answers a repeat as a replay), a command carries the
reference ``job:<id>:<run>:<target>`` (a resumed item finds its command's outcome, and reads
the meter before writing again), an opened account names its prepared account and job, a
message's key is the item's. So a job resumed after a crash never does a done item twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from scada.commands.service import CommandKind, CommandRequest, CommandResult, CommandService, ParameterDriver, SupplyDriver
from scada.core.inputs import InputError, check_date, check_text, parse_decimal, quote
from scada.prepaid.accounts import AccountSettings, OpenRequest
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.errors import PrepaidError
from scada.prepaid.ledger import Contact
from scada.prepaid.levels import parse_thresholds, thresholds_json
from scada.prepaid.money import MoneyError, format_minor, parse_money
from scada.prepaid.pricing import TariffTimeline
from scada.site.assets import AssetRegistry, MeterInfo
from scada.users.audit import Actor
from scada.users.auth import Permission, UserInfo
from tags import TagDB

from .config import OperationsConfig
from .prepared import opening_reason

if TYPE_CHECKING:
    from .messages import TenantMessenger
    from .meters import MeterSettings
    from .prepared import PreparedAccounts

__all__ = ["KINDS", "ItemCall", "JobContext", "Kind", "Outcome", "ParamError"]

log = logging.getLogger(__name__)


class ParamError(ValueError):
    """A bad job parameter; ``field`` names it (``params.amount``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class JobContext:
    """What the kinds work with (None where that part is not running)."""

    config: OperationsConfig
    assets: AssetRegistry
    tagdb: TagDB
    tz: dt.tzinfo
    minor_units: int
    commands: CommandService | None = None
    supply: SupplyDriver | None = None
    params: ParameterDriver | None = None
    reader: Callable[..., Awaitable[dict[str, Any]]] | None = None  # poll one meter now: (meter_id, *, bulk)
    prepaid: PrepaidEngine | None = None
    messenger: TenantMessenger | None = None
    meters: MeterSettings | None = None
    prepared: PreparedAccounts | None = None
    max_amount: Decimal = Decimal("1000000")
    # the four-eyes limits of [approvals] (minor units) that a job's items would otherwise pass by:
    # an opening balance or a credit limit above them needs a supervisor, in a job as at the cashier
    approval_limits: dict[str, int] | None = None


@dataclass(frozen=True)
class ItemCall:
    job_id: int
    run: int
    kind: str
    params: dict[str, Any]
    target: str
    actor: Actor
    user: UserInfo | None
    reason: str
    resumed: bool = False  # the item was under way when the server stopped

    @property
    def reference(self) -> str:
        return f"job:{self.job_id}:{self.run}:{self.target}"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    result: dict[str, Any] | None = None
    retry: bool = False  # a failure a later attempt may get past (the meter did not answer)


Done = Outcome


def _failed(detail: str, *, retry: bool = False, result: dict[str, Any] | None = None) -> Outcome:
    return Outcome(False, detail, result, retry)


class Kind:
    """One kind of job. Subclasses set the class attributes and implement :meth:`run`."""

    name: str = ""
    permission: Permission = Permission.VIEW
    target_type: Literal["room", "meter"] = "room"
    paced: bool = False  # talks to meters: its items run per link, paced
    needs: tuple[str, ...] = ()  # JobContext fields that must be present

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """The normalised parameters, or :class:`ParamError`."""
        if params:
            raise ParamError(f"params.{sorted(params)[0]}", f"the {self.name} job takes no such parameter")
        return {}

    def meter_ok(self, meter: MeterInfo, params: dict[str, Any], ctx: JobContext) -> bool:
        return True

    def money_minor(self, params: dict[str, Any], rooms: list[str], ctx: JobContext) -> int:
        """The money the job creates (four-eyes above ``approval_money_above``)."""
        return 0

    def item_money_minor(self, params: dict[str, Any], rooms: list[str], ctx: JobContext) -> int:
        """The most money one item creates (four-eyes above the ``[approvals]`` limit of the kind)."""
        return 0

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        raise NotImplementedError


def _only(params: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise ParamError(f"params.{extra[0]}", "unknown parameter")


def _money(value: Any, field: str, ctx: JobContext, *, allow_zero: bool = False) -> int:
    try:
        return parse_money(value, field, ctx.minor_units, allow_zero=allow_zero, maximum=ctx.max_amount)
    except MoneyError as exc:
        raise ParamError(exc.field, str(exc).split(": ", 1)[-1]) from None


def _command_outcome(result: CommandResult) -> Outcome:
    info = {"command": result.id, "status": result.status, "attempts": result.attempts}
    if result.readback is not None:
        info["readback"] = result.readback
    if result.status == "confirmed":
        return Outcome(True, result.detail, info)
    # denied, superseded, or not possible (no attempt made) cannot get better by trying again
    return _failed(f"{result.status}: {result.detail}", retry=result.status == "failed" and result.attempts > 0, result=info)


async def _command(call: ItemCall, ctx: JobContext, kind: CommandKind, *, block: str | None = None, value: Any = None) -> Outcome:
    assert ctx.commands is not None
    if call.resumed:
        # the item was under way when the server stopped: its command may have been confirmed
        for earlier in reversed(await ctx.commands.find(call.reference)):
            if earlier.status == "confirmed":
                return _command_outcome(earlier)
    result = await ctx.commands.execute(
        CommandRequest(call.target, kind, call.actor, call.reason, user=call.user, block=block, value=value,
                       reference=call.reference, check_first=call.resumed, bulk=True)
    )
    return _command_outcome(result)


# -- meters ------------------------------------------------------------------------------------
class RelayKind(Kind):
    name = "relay"
    permission = Permission.RELAY_CONTROL
    target_type = "meter"
    paced = True
    needs = ("commands", "supply")

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        _only(params, {"action"})
        action = params.get("action")
        if action not in ("connect", "disconnect"):
            raise ParamError("params.action", f"expected connect or disconnect, found {quote(action)}")
        return {"action": action}

    def meter_ok(self, meter: MeterInfo, params: dict[str, Any], ctx: JobContext) -> bool:
        return ctx.supply is not None and ctx.supply.supports_supply(meter)

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        return await _command(call, ctx, CommandKind(call.params["action"]))


async def tariff_commodity(ctx: JobContext, tariff_id: Any) -> str | None:
    if ctx.prepaid is None or not isinstance(tariff_id, str) or not tariff_id or len(tariff_id) > 64:
        return None
    info = await ctx.prepaid.tariffs.get(tariff_id)
    return info.commodity if info is not None else None


async def tou_table_of(engine: PrepaidEngine, tariff_id: str, day: dt.date, day_types: tuple[str, ...]) -> dict[str, list[tuple[str, str]]]:
    """The tariff's switch table on ``day`` (its version and season in force then), per day type."""
    info = await engine.tariffs.get(tariff_id)
    if info is None:
        raise LookupError(f"no tariff {tariff_id!r}")
    at = dt.datetime.combine(day, dt.time(12), engine.tz)
    definition = TariffTimeline(info.versions).at(at).definition
    if definition.tou is None:
        raise LookupError(f"tariff {tariff_id} is not a time-of-use tariff")
    season = definition.tou.season(day)
    return {d: [(hhmm, period) for hhmm, period in season.schedule_for(d)] for d in day_types}


class TouDownloadKind(Kind):
    name = "tou_download"
    permission = Permission.METER_SERVICE
    target_type = "meter"
    paced = True
    needs = ("commands", "params", "prepaid", "meters")

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        _only(params, {"tariff", "at"})
        tariff = params.get("tariff")
        if not isinstance(tariff, str) or not tariff or len(tariff) > 64:
            raise ParamError("params.tariff", "name the time-of-use tariff to download (its id)")
        if await tariff_commodity(ctx, tariff) != "electricity":
            raise ParamError("params.tariff", f"no electricity tariff {quote(tariff)}")
        out: dict[str, Any] = {"tariff": tariff}
        if params.get("at") is not None:
            at = params["at"]
            try:
                out["at"] = check_date(at if isinstance(at, dt.date) else dt.date.fromisoformat(str(at)[:10])).isoformat()
            except ValueError as exc:  # InputError is one
                detail = str(exc) if isinstance(exc, InputError) else f"expected a date YYYY-MM-DD, found {quote(at)}"
                raise ParamError("params.at", detail) from None
        return out

    def meter_ok(self, meter: MeterInfo, params: dict[str, Any], ctx: JobContext) -> bool:
        """The meters that carry the tariff: on an open account of it, with a TOU table."""
        assert ctx.prepaid is not None and ctx.meters is not None
        if meter.kind != "electricity" or meter.room_id is None or ctx.meters.tou_block(meter) is None:
            return False
        view = ctx.prepaid.views.get(meter.room_id)
        return view is not None and view.open and view.electricity_tariff_id == params["tariff"]

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.meters is not None
        meter = ctx.assets.snapshot.meters.get(call.target)
        if meter is None:
            return _failed(f"no meter {call.target}")
        block = ctx.meters.tou_block(meter)
        if block is None:
            return _failed(f"meter {meter.id} (profile {meter.profile}) keeps no time-of-use table")
        day = dt.date.fromisoformat(call.params["at"]) if "at" in call.params else dt.datetime.now(ctx.tz).date()
        assert ctx.prepaid is not None
        try:
            table = await tou_table_of(ctx.prepaid, call.params["tariff"], day, block.day_types)
            block.encode(table)
        except (LookupError, ValueError) as exc:
            return _failed(str(exc))
        outcome = await _command(call, ctx, CommandKind.WRITE, block=block.name, value=table)
        if outcome.ok:
            await ctx.meters.tou_written(meter, table)
        else:
            ctx.meters.schedule_check(meter.id)  # what the meter holds now decides the alarm
        return outcome


class ClockSyncKind(Kind):
    name = "clock_sync"
    permission = Permission.METER_SERVICE
    target_type = "meter"
    paced = True
    needs = ("commands", "params", "meters")

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        _only(params, {"max_drift_s"})
        limit = params.get("max_drift_s", ctx.config.clock_drift_s)
        try:
            seconds = parse_decimal(limit, max_digits=8, decimal_places=3, what="seconds") if not isinstance(limit, float) else Decimal(repr(limit))
        except InputError as exc:
            raise ParamError("params.max_drift_s", str(exc)) from None
        if not 0 < seconds <= 86400:
            raise ParamError("params.max_drift_s", f"expected seconds in (0, 86400], found {quote(limit)}")
        return {"max_drift_s": float(seconds)}

    def meter_ok(self, meter: MeterInfo, params: dict[str, Any], ctx: JobContext) -> bool:
        assert ctx.meters is not None
        return ctx.meters.clock_block(meter) is not None

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.meters is not None
        meter = ctx.assets.snapshot.meters.get(call.target)
        if meter is None:
            return _failed(f"no meter {call.target}")
        block = ctx.meters.clock_block(meter)
        if block is None:
            return _failed(f"meter {meter.id} (profile {meter.profile}) has no clock block")
        try:
            drift = await ctx.meters.read_drift(meter)
        except Exception as exc:
            return _failed(f"clock not readable: {exc}", retry=True)
        limit = call.params["max_drift_s"]
        if abs(drift) <= limit:
            return Done(True, f"clock off by {drift:+.0f} s: within {limit:g} s", {"drift_s": drift, "set": False})
        outcome = await _command(call, ctx, CommandKind.WRITE, block=block.name, value="now")
        if not outcome.ok:
            return outcome
        ctx.meters.clock_set(meter)
        return Done(True, f"clock was off by {drift:+.0f} s; set (confirmed by read-back)", {"drift_s": drift, "set": True, **(outcome.result or {})})


class MeterParamsKind(Kind):
    name = "meter_params"
    permission = Permission.METER_SERVICE
    target_type = "meter"
    paced = True
    needs = ("commands", "params", "meters")

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        if not params:
            raise ParamError("params", "name the values to set, e.g. {\"load_limit\": \"5.5\"}")
        out = {}
        for name, value in params.items():
            if not isinstance(name, str) or not name.replace("_", "").isalnum() or len(name) > 32:
                raise ParamError("params", f"{quote(name)} is not a block name")
            try:
                out[name] = format(parse_decimal(value, max_digits=12, decimal_places=6, negative=True, what="value"), "f")
            except InputError as exc:
                raise ParamError(f"params.{name}", str(exc)) from None
        return out

    def meter_ok(self, meter: MeterInfo, params: dict[str, Any], ctx: JobContext) -> bool:
        assert ctx.meters is not None
        return all(ctx.meters.value_block(meter, name) is not None for name in params)

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.meters is not None
        meter = ctx.assets.snapshot.meters.get(call.target)
        if meter is None:
            return _failed(f"no meter {call.target}")
        done: dict[str, Any] = {}
        for name, value in call.params.items():
            if ctx.meters.value_block(meter, name) is None:
                return _failed(f"meter {meter.id} (profile {meter.profile}) has no {name} setting", result=done or None)
            outcome = await _command(call, ctx, CommandKind.WRITE, block=name, value=value)
            if not outcome.ok:
                return _failed(f"{name}: {outcome.detail}", retry=outcome.retry, result=done or None)
            done[name] = value
        return Done(True, ", ".join(f"{k} = {v}" for k, v in done.items()) + " (confirmed by read-back)", done)


class ReadNowKind(Kind):
    name = "read_now"
    permission = Permission.VIEW
    target_type = "meter"
    paced = True
    needs = ("reader",)

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.reader is not None
        try:
            values = await ctx.reader(call.target, bulk=True)
        except LookupError as exc:
            return _failed(str(exc))
        except Exception as exc:
            return _failed(f"not read: {exc}", retry=True)
        comm = values.get("comm_ok")
        good = {k: v.value for k, v in values.items() if v is not None and v.good and k != "comm_ok"}
        if comm is None or comm.value is not True:
            return _failed("the meter did not answer", retry=True)
        return Done(True, f"read {len(good)} values", {k: good[k] for k in sorted(good)})


# -- accounts ----------------------------------------------------------------------------------
class RechargeKind(Kind):
    name = "recharge"
    permission = Permission.RECHARGE
    needs = ("prepaid",)

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        _only(params, {"amount"})
        minor = _money(params.get("amount"), "params.amount", ctx)
        return {"amount": format_minor(minor, ctx.minor_units)}

    def money_minor(self, params: dict[str, Any], rooms: list[str], ctx: JobContext) -> int:
        return parse_money(params["amount"], "params.amount", ctx.minor_units) * len(rooms)

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.prepaid is not None
        minor = parse_money(call.params["amount"], "params.amount", ctx.minor_units)
        reference = f"job-{call.job_id}-{call.run}-{call.target}"
        try:
            result = await ctx.prepaid.recharge(call.target, minor, channel="job", reference=reference, actor=call.actor,
                                                reason=call.reason)
        except PrepaidError as exc:
            return _failed(exc.message)
        balance = format_minor(result.account.balance_minor, ctx.minor_units)
        what = "already recharged (replayed)" if result.replayed else f"recharged {call.params['amount']}"
        return Done(True, f"{what}; balance {balance}", {"entry": result.entry.id, "reference": reference, "balance": balance})


class AssignTariffKind(Kind):
    name = "assign_tariff"
    permission = Permission.ACCOUNT_MANAGE
    needs = ("prepaid",)

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        _only(params, {"tariff"})
        tariff = params.get("tariff")
        if await tariff_commodity(ctx, tariff) is None:
            raise ParamError("params.tariff", f"no tariff {quote(tariff)}")
        return {"tariff": tariff}

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.prepaid is not None
        try:
            await ctx.prepaid.assign_tariff(call.params["tariff"], [call.target], actor=call.actor, reason=call.reason)
        except PrepaidError as exc:
            return _failed(exc.message.replace("rooms[0]: ", ""))
        return Done(True, f"tariff {call.params['tariff']}")


class SetThresholdsKind(Kind):
    name = "set_thresholds"
    permission = Permission.ACCOUNT_MANAGE
    needs = ("prepaid",)

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        _only(params, {"thresholds"})
        items = params.get("thresholds")
        if not isinstance(items, list) or not 1 <= len(items) <= 3:
            raise ParamError("params.thresholds", 'expected 1 to 3 of {"level": 1, "money": "20.00"} or {"level": 1, "days": "3"}')
        try:
            parsed = parse_thresholds(items, ctx.minor_units, "params.thresholds")
        except MoneyError as exc:
            raise ParamError(exc.field, str(exc).split(": ", 1)[-1]) from None
        return {"thresholds": thresholds_json(parsed, ctx.minor_units)}

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.prepaid is not None
        thresholds = tuple(parse_thresholds(call.params["thresholds"], ctx.minor_units))
        try:
            await ctx.prepaid.update_settings(call.target, AccountSettings(thresholds=thresholds), actor=call.actor, reason=call.reason)
        except PrepaidError as exc:
            return _failed(exc.message)
        return Done(True, "thresholds " + ", ".join(f"{t.get('level')}: {t.get('money', t.get('days'))}" for t in call.params["thresholds"]))


class SetCreditKind(Kind):
    name = "set_credit"
    permission = Permission.ACCOUNT_MANAGE
    needs = ("prepaid",)

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        _only(params, {"credit_limit"})
        minor = _money(params.get("credit_limit"), "params.credit_limit", ctx, allow_zero=True)
        return {"credit_limit": format_minor(minor, ctx.minor_units)}

    def money_minor(self, params: dict[str, Any], rooms: list[str], ctx: JobContext) -> int:
        return parse_money(params["credit_limit"], "params.credit_limit", ctx.minor_units, allow_zero=True) * len(rooms)

    def item_money_minor(self, params: dict[str, Any], rooms: list[str], ctx: JobContext) -> int:
        return parse_money(params["credit_limit"], "params.credit_limit", ctx.minor_units, allow_zero=True)

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.prepaid is not None
        minor = parse_money(call.params["credit_limit"], "params.credit_limit", ctx.minor_units, allow_zero=True)
        try:
            await ctx.prepaid.update_settings(call.target, AccountSettings(credit_limit_minor=minor), actor=call.actor, reason=call.reason)
        except PrepaidError as exc:
            return _failed(exc.message)
        return Done(True, f"credit limit {call.params['credit_limit']}")


class MessageKind(Kind):
    name = "message"
    permission = Permission.ACCOUNT_MANAGE
    needs = ("messenger",)

    async def parse(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        _only(params, {"template", "text"})
        template = params.get("template", "reminder")
        if template not in ("reminder", "notice"):
            raise ParamError("params.template", f"expected reminder or notice, found {quote(template)}")
        text = params.get("text", "")
        if not isinstance(text, str) or len(text) > 500:
            raise ParamError("params.text", "a text of at most 500 characters")
        try:
            check_text(text, "params.text")
        except InputError as exc:
            raise ParamError("params.text", str(exc)) from None
        if template == "notice" and not text.strip():
            raise ParamError("params.text", "a notice needs a text")
        return {"template": template, "text": text.strip()}

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.messenger is not None
        queued = await ctx.messenger.send_room(
            call.target, call.params["template"], key=call.reference, route=f"job:{call.job_id}",
            extra={"text": call.params["text"]},
        )
        if queued.status in ("skipped", "failed"):
            return _failed(queued.reason, result={"delivery": queued.id})
        return Done(True, f"{queued.status}: delivery {queued.id} to {queued.recipient}" + (f" ({queued.reason})" if queued.reason else ""),
                    {"delivery": queued.id})


class OpenKind(Kind):
    name = "open"
    permission = Permission.ACCOUNT_MANAGE
    needs = ("prepaid", "prepared")

    def money_minor(self, params: dict[str, Any], rooms: list[str], ctx: JobContext) -> int:
        assert ctx.prepared is not None
        return ctx.prepared.opening_total(rooms)

    def item_money_minor(self, params: dict[str, Any], rooms: list[str], ctx: JobContext) -> int:
        assert ctx.prepared is not None
        return max((ctx.prepared.opening_total([r]) for r in rooms), default=0)

    async def run(self, call: ItemCall, ctx: JobContext) -> Outcome:
        assert ctx.prepaid is not None and ctx.prepared is not None
        prep = await ctx.prepared.for_room(call.target)
        if prep is None:
            opened = await ctx.prepared.opened_by_job(call.target, call.job_id)
            if opened is not None:
                return Done(True, f"account {opened.account_id} opened (already)", {"account": opened.account_id})
            return _failed(f"room {call.target} has no prepared account")
        reason = opening_reason(prep.id, call.job_id)
        current = await ctx.prepaid.account(call.target)
        if current is not None and current.open:
            # opened by this item before a crash (the opening names the prepared account)?
            if await ctx.prepared.opening_reason(current.id) == reason:
                await ctx.prepared.mark_opened(prep.id, current.id, {}, call.actor)
                return Done(True, f"account {current.id} opened", {"account": current.id})
            return _failed(f"room {call.target} already has an open account ({current.id})")
        readings: dict[str, Decimal] = {}
        meters = [m for m in ctx.assets.snapshot.meters_of_room(call.target) if m.role == "tenant"]
        for m in meters:
            if ctx.reader is None:
                break
            try:
                values = await ctx.reader(m.id, bulk=True)
            except LookupError:
                continue  # not polled here: the newest reading will do
            except Exception as exc:
                return _failed(f"meter {m.id} not readable for its opening reading: {exc}", retry=True)
            point = "energy_total" if m.kind == "electricity" else "volume_total"
            tv = values.get(point)
            if tv is None or not tv.good:
                return _failed(f"meter {m.id} gave no good {point} for its opening reading", retry=True)
            readings[m.id] = Decimal(str(tv.value))
        defaults = ctx.prepaid.defaults()
        settings = AccountSettings(
            credit_limit_minor=prep.credit_limit_minor if prep.credit_limit_minor is not None else defaults.credit_limit_minor,
            thresholds=tuple(parse_thresholds(prep.thresholds, ctx.minor_units)) if prep.thresholds else defaults.thresholds,
            contact=Contact(prep.customer, prep.contact_phone, prep.contact_email, prep.language),
            protected=False, friendly_credit=defaults.friendly_credit, auto_reconnect=defaults.auto_reconnect,
            emergency_credit_minor=defaults.emergency_credit_minor, mode=prep.mode,
        )
        kinds = {m.kind for m in meters}
        commodity = await tariff_commodity(ctx, prep.tariff_id)
        electricity = prep.tariff_id if commodity == "electricity" else None
        water = prep.water_tariff_id or (prep.tariff_id if commodity == "water" else None)
        request = OpenRequest(
            call.target, settings, electricity_tariff_id=electricity if "electricity" in kinds else None,
            water_tariff_id=water if "water" in kinds else None, opening_minor=prep.opening_minor, readings=readings, reason=reason,
        )
        try:
            view = await ctx.prepaid.open_account(request, call.actor)
        except PrepaidError as exc:
            return _failed(exc.message)
        await ctx.prepared.mark_opened(prep.id, view.id, {k: format(v, "f") for k, v in readings.items()}, call.actor)
        return Done(True, f"account {view.id} opened; opening readings " + (", ".join(f"{k} {v}" for k, v in readings.items()) or "the newest"),
                    {"account": view.id, "readings": {k: format(v, "f") for k, v in readings.items()}})


KINDS: dict[str, Kind] = {k.name: k for k in (
    RelayKind(), RechargeKind(), AssignTariffKind(), SetThresholdsKind(), SetCreditKind(), MessageKind(),
    TouDownloadKind(), ClockSyncKind(), MeterParamsKind(), ReadNowKind(), OpenKind(),
)}
