"""The four-eyes rule for money creation, and the approved actions it runs.

What one user alone may not do (``[approvals]``, :class:`ApprovalRule`): a reversal that credits
an account (of a refund, a deduction or a charge), opening an account with an opening balance,
a refund above an amount, raising a credit limit or the emergency credit above an amount, and
marking an account protected. :class:`PrepaidApprovals` is the entry point of those operations
for the API: it acts at once when the rule does not apply, and otherwise records a pending
request (:class:`scada.approvals.service.ApprovalView`) that another user with the ``approve``
permission approves — then the executors here run the operation once, as the requester, with the
approval named in the ledger entry's reason — or rejects.

Each executor is idempotent for its request: a refund carries the reference ``approval-<id>``
(a repeated refund replays), an opening or a reversal records it on its ledger entry (a
repeated one answers the first), settings are values set again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from scada.approvals.config import ApprovalsConfig
from scada.approvals.service import ApprovalService, ApprovalView
from scada.core.context import Key
from scada.prepaid.accounts import AccountSettings, OpenRequest, PostResult, with_defaults
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.errors import PrepaidError
from scada.prepaid.ledger import AccountView, Contact, thresholds_column, thresholds_from_column
from scada.prepaid.models import Account
from scada.prepaid.money import format_minor, parse_money
from scada.users.audit import Actor

__all__ = [
    "KIND_OPEN",
    "KIND_REFUND",
    "KIND_REVERSE",
    "KIND_SETTINGS",
    "PREPAID_APPROVALS",
    "ApprovalRule",
    "PrepaidApprovals",
    "settings_from_json",
    "settings_to_json",
]

log = logging.getLogger(__name__)

KIND_REVERSE = "ledger.reverse"
KIND_OPEN = "account.open"
KIND_REFUND = "account.refund"
KIND_SETTINGS = "account.settings"


@dataclass(frozen=True)
class ApprovalRule:
    """``[approvals]`` in the currency's minor units: each check returns why an operation needs
    a second user (empty: it does not)."""

    minor_units: int
    reversals: str
    opening_above: int
    refund_above: int
    credit_limit_above: int
    emergency_credit_above: int
    protection: bool

    @classmethod
    def from_config(cls, cfg: ApprovalsConfig, minor_units: int) -> ApprovalRule:
        def minor(name: str) -> int:
            return parse_money(getattr(cfg, name), f"approvals.{name}", minor_units, allow_zero=True)

        return cls(minor_units, cfg.reversals, minor("opening_balance_above"), minor("refund_above"),
                   minor("credit_limit_above"), minor("emergency_credit_above"), cfg.protection)

    def _fmt(self, minor: int) -> str:
        return format_minor(minor, self.minor_units)

    def reversal(self, kind: str, amount_minor: int) -> list[str]:
        """Reversing an entry of ``kind`` and ``amount_minor`` (the reversal is its negative)."""
        if self.reversals == "all" or (self.reversals == "credits" and -amount_minor > 0):
            return [f"a reversal of a {kind} credits {self._fmt(-amount_minor)}" if -amount_minor > 0
                    else f"a reversal of a {kind}"]
        return []

    def refund(self, amount_minor: int) -> list[str]:
        if amount_minor > self.refund_above:
            return [f"refund {self._fmt(amount_minor)} above {self._fmt(self.refund_above)}"]
        return []

    def opening(self, opening_minor: int) -> list[str]:
        if opening_minor > self.opening_above:
            return [f"opening balance {self._fmt(opening_minor)} above {self._fmt(self.opening_above)}"]
        return []

    def settings(self, new: AccountSettings, current: AccountView | None) -> list[str]:
        """What ``new`` asks for explicitly, against the account's current settings (none: a
        new account). Lowering a limit or removing protection needs nobody else."""
        out = []
        limit = new.credit_limit_minor
        if limit is not None and limit > self.credit_limit_above and limit > (current.credit_limit_minor if current else 0):
            out.append(f"credit limit {self._fmt(limit)} above {self._fmt(self.credit_limit_above)}")
        emergency = new.emergency_credit_minor
        if (emergency is not None and emergency > self.emergency_credit_above
                and emergency > (current.emergency_credit_minor if current else 0)):
            out.append(f"emergency credit {self._fmt(emergency)} above {self._fmt(self.emergency_credit_above)}")
        if self.protection and new.protected and not (current.protected if current else False):
            out.append("protection (never cut off)")
        return out


# -- settings as JSON (a request's payload) ------------------------------------------------------
def settings_to_json(st: AccountSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("credit_limit_minor", "protected", "friendly_credit", "auto_reconnect", "emergency_credit_minor"):
        value = getattr(st, name)
        if value is not None:
            out[name] = value
    for name in ("capacity_kva", "demand_kw"):
        value = getattr(st, name)
        if value is not None:
            out[name] = format(value, "f")
    if st.thresholds is not None:
        out["thresholds"] = thresholds_column(st.thresholds)
    if st.contact is not None:
        c = st.contact
        out["contact"] = {"name": c.name, "phone": c.phone, "email": c.email, "language": c.language}
    return out


def settings_from_json(data: dict[str, Any]) -> AccountSettings:
    c = data.get("contact")
    thresholds = thresholds_from_column(data["thresholds"]) if "thresholds" in data else None
    return AccountSettings(
        credit_limit_minor=data.get("credit_limit_minor"),
        thresholds=thresholds,
        contact=Contact(c["name"], c.get("phone"), c.get("email"), c.get("language", "en")) if c is not None else None,
        protected=data.get("protected"),
        friendly_credit=data.get("friendly_credit"),
        auto_reconnect=data.get("auto_reconnect"),
        emergency_credit_minor=data.get("emergency_credit_minor"),
        capacity_kva=Decimal(data["capacity_kva"]) if "capacity_kva" in data else None,
        demand_kw=Decimal(data["demand_kw"]) if "demand_kw" in data else None,
    )


def _requester(view: ApprovalView) -> Actor:
    source = view.requested_source if view.requested_source in ("cli", "api", "hmi", "opcua", "engine", "import") else "api"
    return Actor(view.requested_by, source, view.requested_role)  # type: ignore[arg-type]


def _note(view: ApprovalView, approver: Actor) -> str:
    """The reason of an approved operation: the requester's, and who approved it."""
    reason = view.reason.strip()
    tail = f"[approval #{view.id}: requested by {view.requested_by}, approved by {approver.name}]"
    return f"{reason} {tail}" if reason else tail


def reference_of(view: ApprovalView) -> str:
    return f"approval-{view.id}"


class PrepaidApprovals:
    """The operations the rule covers: each acts at once or answers the pending request."""

    def __init__(self, engine: PrepaidEngine, service: ApprovalService, rule: ApprovalRule) -> None:
        self.engine = engine
        self.service = service
        self.rule = rule
        self._unregister = [
            service.register(KIND_REFUND, self._run_refund),
            service.register(KIND_REVERSE, self._run_reverse),
            service.register(KIND_OPEN, self._run_open),
            service.register(KIND_SETTINGS, self._run_settings),
        ]

    def close(self) -> None:
        for unregister in self._unregister:
            unregister()
        self._unregister = []

    @property
    def kinds(self) -> tuple[str, ...]:
        return KIND_REFUND, KIND_REVERSE, KIND_OPEN, KIND_SETTINGS

    def _fmt(self, minor: int) -> str:
        return format_minor(minor, self.engine.minor_units)

    async def _open_account(self, room_id: str) -> AccountView:
        view = await self.engine.account(room_id)
        if view is None or not view.open:
            if room_id not in self.engine.assets.snapshot.rooms:
                raise PrepaidError(f"no room {room_id!r}", status=404)
            raise PrepaidError(f"room {room_id} has no open account", status=404)
        return view

    # -- refund ---------------------------------------------------------------------------------------
    async def refund(
        self, room_id: str, amount_minor: int, *, actor: Actor, reason: str, channel: str = "cash", reference: str | None = None
    ) -> PostResult | ApprovalView:
        rule = self.rule.refund(amount_minor)
        if not rule:
            return await self.engine.refund(room_id, amount_minor, actor=actor, reason=reason, channel=channel, reference=reference)
        if not reason.strip():
            raise PrepaidError("reason: a refund needs a reason", status=422, field="reason")
        view = await self._open_account(room_id)
        if amount_minor > view.balance_minor:
            raise PrepaidError(f"amount: {self._fmt(amount_minor)} is more than the balance {self._fmt(view.balance_minor)}",
                               status=409, field="amount")
        payload = {"room": room_id, "amount_minor": amount_minor, "amount": self._fmt(amount_minor), "channel": channel,
                   "reference": reference}
        return await self.service.request(KIND_REFUND, f"room:{room_id}", payload, actor, reason=reason, rule=rule,
                                          summary=f"refund {self._fmt(amount_minor)} from room {room_id} ({channel})")

    async def _run_refund(self, view: ApprovalView, approver: Actor) -> dict[str, Any]:
        p = view.payload
        result = await self.engine.refund(
            p["room"], int(p["amount_minor"]), actor=_requester(view), reason=_note(view, approver),
            channel=p["channel"], reference=p.get("reference") or reference_of(view),
        )
        return self._posted(result)

    def _posted(self, result: PostResult) -> dict[str, Any]:
        m = self.engine.minor_units
        return {"entry": result.entry.as_json(m), "room": result.account.room_id, "balance": self._fmt(result.account.balance_minor)}

    # -- reversal -------------------------------------------------------------------------------------
    async def reverse(self, entry_id: int, *, actor: Actor, reason: str) -> PostResult | ApprovalView:
        if not reason.strip():
            raise PrepaidError("reason: a reversal needs a reason", status=422, field="reason")
        entry = await self.engine.accounts.check_reverse(entry_id)
        rule = self.rule.reversal(entry.kind, entry.amount_minor)
        if not rule:
            return await self.engine.reverse(entry_id, actor=actor, reason=reason)
        room = await self._room_of_account(entry.account_id)
        payload = {"entry": entry_id, "kind": entry.kind, "amount": self._fmt(entry.amount_minor), "room": room}
        return await self.service.request(KIND_REVERSE, f"ledger:{entry_id}", payload, actor, reason=reason, rule=rule,
                                          summary=f"reverse ledger entry {entry_id} ({entry.kind} {self._fmt(entry.amount_minor)}) of room {room}")

    async def _room_of_account(self, account_id: int) -> str:
        async with self.engine.db.sessions() as s:
            a = await s.get(Account, account_id)
            return a.room_id if a is not None else ""

    async def _run_reverse(self, view: ApprovalView, approver: Actor) -> dict[str, Any]:
        result = await self.engine.reverse(int(view.payload["entry"]), actor=_requester(view), reason=_note(view, approver),
                                           reference=reference_of(view))
        return self._posted(result)

    # -- opening ----------------------------------------------------------------------------------------
    async def open_account(self, req: OpenRequest, explicit: AccountSettings, actor: Actor) -> AccountView | ApprovalView:
        """Open with ``req`` (its settings merged with the defaults); the rule looks at what the
        request asks for itself (``explicit``), not at the site's configured defaults."""
        rule = self.rule.opening(req.opening_minor) + self.rule.settings(explicit, None)
        if not rule:
            return await self.engine.open_account(req, actor)
        await self.engine.accounts.check_open(req)
        payload = {
            "room": req.room_id, "opening_minor": req.opening_minor, "opening_balance": self._fmt(req.opening_minor),
            "tariffs": {"electricity": req.electricity_tariff_id, "water": req.water_tariff_id},
            "readings": {k: format(v, "f") for k, v in req.readings.items()},
            "settings": settings_to_json(explicit),
        }
        return await self.service.request(KIND_OPEN, f"room:{req.room_id}", payload, actor, reason=req.reason, rule=rule,
                                          summary=f"open an account for room {req.room_id} with {self._fmt(req.opening_minor)}")

    async def _run_open(self, view: ApprovalView, approver: Actor) -> dict[str, Any]:
        p = view.payload
        settings = with_defaults(settings_from_json(p["settings"]), self.engine.defaults())
        req = OpenRequest(
            p["room"], settings, electricity_tariff_id=p["tariffs"]["electricity"], water_tariff_id=p["tariffs"]["water"],
            opening_minor=int(p["opening_minor"]), readings={k: Decimal(v) for k, v in p["readings"].items()},
            reason=_note(view, approver), reference=reference_of(view),
        )
        account = await self.engine.open_account(req, _requester(view))
        return {"account": account.id, "room": account.room_id, "balance": self._fmt(account.balance_minor)}

    # -- settings ---------------------------------------------------------------------------------------
    async def update_settings(self, room_id: str, settings: AccountSettings, *, actor: Actor, reason: str = "") -> AccountView | ApprovalView:
        current = await self._open_account(room_id)
        rule = self.rule.settings(settings, current)
        if not rule:
            return await self.engine.update_settings(room_id, settings, actor=actor, reason=reason)
        payload = {"room": room_id, "settings": settings_to_json(settings)}
        return await self.service.request(KIND_SETTINGS, f"room:{room_id}", payload, actor, reason=reason, rule=rule,
                                          summary=f"change the settings of room {room_id}: {'; '.join(rule)}")

    async def _run_settings(self, view: ApprovalView, approver: Actor) -> dict[str, Any]:
        room = view.payload["room"]
        account = await self.engine.update_settings(room, settings_from_json(view.payload["settings"]), actor=_requester(view),
                                                    reason=_note(view, approver))
        m = self.engine.minor_units
        return {"account": account.id, "room": room, "credit_limit": format_minor(account.credit_limit_minor, m),
                "emergency_credit": format_minor(account.emergency_credit_minor, m), "protected": account.protected}


PREPAID_APPROVALS: Key[PrepaidApprovals] = Key("prepaid_approvals", PrepaidApprovals)
