"""The built-in sandbox provider: a payment provider of our own that behaves like a real one.

- **Its own key pair** (Ed25519, :class:`SandboxKeys`): it signs every notification; the server
  verifies with the public key, as it would with a real provider's platform certificate. The
  private key lives in ``payments.sandbox.key_file`` (made at first start, mode 0600).
- **Its own book** (:class:`SandboxBank`, the ``payment_sandbox`` table): the orders it was
  given, what was paid and refunded, and from that its daily statement.
- **A pay page** (served by the HMI at ``/payments/sandbox/pay/{id}``, or ``scada payments
  sandbox-pay ORDER``): paying sends the signed notification to the order's notify URL over
  HTTP, after ``notify_delay_s``, with ``duplicates`` further copies, optionally a stale
  "pending" event after the success (``out_of_order``), and again after ``retry_delays_s`` while
  the server does not answer 2xx — like a real provider's retries, each copy signed anew.

Notification: ``POST`` with a JSON body (``id``, ``type`` = ``payment.succeeded`` |
``payment.failed`` | ``payment.pending``, ``order_no``, ``transaction_id``, ``amount`` as a
decimal string, ``currency``, ``paid_at``) and the headers ``Sandbox-Serial`` (the key's id),
``Sandbox-Timestamp`` (Unix seconds), ``Sandbox-Nonce`` and ``Sandbox-Signature`` (base64 of the
Ed25519 signature over ``timestamp\\nnonce\\nbody\\n``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from scada.core.inputs import AwareDateTime, InputError, JsonInputError, parse_decimal, parse_json
from scada.db import Database
from scada.payments.config import SandboxConfig
from scada.payments.errors import PaymentError
from scada.payments.models import SandboxPayment
from scada.payments.provider import (
    Notification,
    NotificationStatus,
    OrderRequest,
    PayTarget,
    ProviderOrder,
    RefundResult,
    StatementLine,
)
from scada.prepaid.money import format_minor
from tags import utcnow

__all__ = ["HEADERS", "SandboxBank", "SandboxKeys", "SandboxProvider", "signed_headers"]

log = logging.getLogger(__name__)

HEADERS = ("Sandbox-Serial", "Sandbox-Timestamp", "Sandbox-Nonce", "Sandbox-Signature")
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}", re.ASCII)
_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
EVENT_TYPES: dict[str, NotificationStatus] = {"payment.succeeded": "paid", "payment.failed": "failed", "payment.pending": "pending"}
MAX_NOTIFICATION_BYTES = 16_384


class SandboxKeys:
    """The sandbox's Ed25519 key pair; ``serial`` names the key in every notification."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.public: Ed25519PublicKey = private.public_key()
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.serial = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, path: Path) -> SandboxKeys:
        """The key pair in ``path`` (PEM, PKCS#8); a new one is written (mode 0600) when missing."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            log.info("sandbox payment key pair created", extra={"file": str(path)})
            return cls(key)
        try:
            loaded = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"payments.sandbox.key_file {path}: not a PEM private key ({exc})") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"payments.sandbox.key_file {path}: not an Ed25519 key")
        return cls(loaded)

    @staticmethod
    def message(timestamp: str, nonce: str, body: bytes) -> bytes:
        return timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"

    def sign(self, timestamp: str, nonce: str, body: bytes) -> str:
        return base64.b64encode(self.private.sign(self.message(timestamp, nonce, body))).decode()

    def verify(self, timestamp: str, nonce: str, body: bytes, signature: bytes) -> bool:
        try:
            self.public.verify(signature, self.message(timestamp, nonce, body))
        except InvalidSignature:
            return False
        return True


def signed_headers(keys: SandboxKeys, body: bytes, now: dt.datetime, nonce: str | None = None) -> dict[str, str]:
    """The headers of a notification with ``body``, signed at ``now``."""
    timestamp = str(int(now.timestamp()))
    nonce = nonce or secrets.token_urlsafe(18)
    return {"Content-Type": "application/json", "Sandbox-Serial": keys.serial, "Sandbox-Timestamp": timestamp,
            "Sandbox-Nonce": nonce, "Sandbox-Signature": keys.sign(timestamp, nonce, body)}


class _Event(BaseModel):
    """A notification's body (unknown keys a newer provider adds are ignored)."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(pattern=_TOKEN.pattern, max_length=64)
    type: str = Field(max_length=32)
    order_no: str = Field(pattern=_TOKEN.pattern, max_length=64)
    transaction_id: str = Field(default="", pattern=r"^[A-Za-z0-9_.:-]{0,64}$", max_length=64)
    amount: str = Field(max_length=32)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    paid_at: AwareDateTime | None = None


@dataclass
class _Delivery:
    url: str
    event: dict[str, Any]


class SandboxBank:
    """The sandbox provider's side: its book of orders, payments and refunds, and the outgoing
    notifications (real HTTP to the order's notify URL)."""

    def __init__(
        self,
        db: Database,
        keys: SandboxKeys,
        config: SandboxConfig,
        *,
        minor_units: int,
        pay_base: Callable[[], str],
        spawn: Callable[[Callable[[], Any], str], Any] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.keys = keys
        self.config = config
        self.minor_units = minor_units
        self.pay_base = pay_base
        self.spawn = spawn
        self.clock = clock
        self._http: aiohttp.ClientSession | None = None
        self.sent: list[tuple[str, int]] = []  # (event id, HTTP status) of every attempt: tests and the CLI read it

    # -- the provider's API ---------------------------------------------------------------------------
    async def create(self, req: OrderRequest) -> SandboxPayment:
        async with self.db.transaction() as s:
            row = await s.scalar(select(SandboxPayment).where(SandboxPayment.order_no == req.order_no))
            if row is not None:
                if row.amount_minor != req.amount_minor or row.currency != req.currency:
                    raise PaymentError(f"sandbox: order {req.order_no} was created with another amount", status=409)
                return row
            row = SandboxPayment(
                id="sbx_" + secrets.token_hex(12), order_no=req.order_no, transaction_id=None, amount_minor=req.amount_minor,
                currency=req.currency, description=req.description[:200], state="created", notify_url=req.notify_url,
                return_url=req.return_url, created_at=self.clock(), paid_at=None, refunded_minor=0, refunded_at=None, refund_no=None,
            )
            s.add(row)
        return row

    async def get(self, payment_id: str) -> SandboxPayment | None:
        if not _TOKEN.fullmatch(payment_id):
            return None
        async with self.db.sessions() as s:
            return await s.get(SandboxPayment, payment_id)

    async def by_order(self, order_no: str) -> SandboxPayment | None:
        async with self.db.sessions() as s:
            return await s.scalar(select(SandboxPayment).where(SandboxPayment.order_no == order_no))

    async def pay(self, payment_id: str, *, decline: bool = False, send: bool = True) -> SandboxPayment:
        """The payer pays (or declines) on the pay page: booked, then notified (in the background
        when this bank has a task owner, else before returning)."""
        async with self.db.transaction() as s:
            row = await s.get(SandboxPayment, payment_id, with_for_update=True)
            if row is None:
                raise PaymentError(f"sandbox: no payment {payment_id!r}", status=404)
            if row.state == "created":
                row.state = "declined" if decline else "paid"
                if not decline:
                    row.transaction_id = "sbxt_" + secrets.token_hex(12)
                    row.paid_at = self.clock()
            elif row.state in ("paid", "refunded") and decline:
                raise PaymentError(f"sandbox: payment {payment_id} is {row.state} already", status=409)
        if send:
            deliveries = self.notifications(row)
            if self.spawn is not None:
                self.spawn(lambda: self.deliver_all(deliveries), f"sandbox-notify:{row.id}")
            else:
                await self.deliver_all(deliveries)
        return row

    def event(self, row: SandboxPayment, kind: str) -> dict[str, Any]:
        return {
            "id": "evt_" + secrets.token_hex(10), "type": kind, "order_no": row.order_no, "transaction_id": row.transaction_id or "",
            "amount": format_minor(row.amount_minor, self.minor_units), "currency": row.currency,
            "paid_at": row.paid_at.isoformat() if row.paid_at is not None else None,
        }

    def notifications(self, row: SandboxPayment) -> list[_Delivery]:
        """What this payment's outcome sends: the event, its duplicates, a stale one after it."""
        if row.state == "declined":
            return [_Delivery(row.notify_url, self.event(row, "payment.failed"))]
        if row.state not in ("paid", "refunded"):
            return []
        event = self.event(row, "payment.succeeded")
        out = [_Delivery(row.notify_url, event) for _ in range(1 + self.config.duplicates)]
        if self.config.out_of_order:
            stale = self.event(row, "payment.pending")  # the "payer is paying" event, delivered late
            out.append(_Delivery(row.notify_url, stale))
        return out

    async def deliver_all(self, deliveries: list[_Delivery]) -> None:
        for d in deliveries:
            if self.config.notify_delay_s:
                await asyncio.sleep(self.config.notify_delay_s)
            await self.deliver(d.url, d.event)

    async def deliver(self, url: str, event: dict[str, Any]) -> int:
        """POST one event, signed anew for each attempt, retried after ``retry_delays_s`` until
        the server answers 2xx (a 4xx other than 408/429 is final). Returns the last status."""
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        status = 0
        for delay in (0.0, *self.config.retry_delays_s):
            if delay:
                await asyncio.sleep(delay)
            status = await self.post(url, body)
            self.sent.append((event["id"], status))
            if 200 <= status < 300 or (400 <= status < 500 and status not in (408, 429)):
                break
        if not 200 <= status < 300:
            log.warning("sandbox notification not accepted", extra={"order": event["order_no"], "event": event["id"], "status": status})
        return status

    async def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> int:
        """One signed POST (``headers`` replace the signed ones: tests forge with them); 0 when
        the server could not be reached."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        try:
            async with self._http.post(url, data=body, headers=dict(headers or signed_headers(self.keys, body, self.clock()))) as r:
                await r.read()
                return r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("sandbox notification failed", extra={"url": url.split("?", 1)[0], "error": repr(exc)})
            return 0

    async def refund(self, order_no: str, amount_minor: int, refund_no: str) -> RefundResult:
        async with self.db.transaction() as s:
            row = await s.scalar(select(SandboxPayment).where(SandboxPayment.order_no == order_no).with_for_update())
            if row is None:
                raise PaymentError(f"sandbox: no order {order_no!r}", status=404)
            if row.refund_no == refund_no:
                return RefundResult(refund_no, row.refunded_minor, replayed=True)
            if row.state != "paid":
                raise PaymentError(f"sandbox: order {order_no} is {row.state}, not paid", status=409)
            if amount_minor != row.amount_minor:
                raise PaymentError("sandbox: only full refunds", status=422, field="amount")
            row.state, row.refunded_minor, row.refunded_at, row.refund_no = "refunded", amount_minor, self.clock(), refund_no
            return RefundResult(refund_no, amount_minor)

    async def statement(self, start: dt.datetime, end: dt.datetime) -> list[StatementLine]:
        async with self.db.sessions() as s:
            paid = (await s.scalars(select(SandboxPayment).where(SandboxPayment.paid_at >= start, SandboxPayment.paid_at < end))).all()
            refunded = (await s.scalars(
                select(SandboxPayment).where(SandboxPayment.refunded_at >= start, SandboxPayment.refunded_at < end))).all()
        lines = [StatementLine("payment", r.order_no, r.transaction_id or "", r.amount_minor, r.currency, r.paid_at)
                 for r in paid if r.paid_at is not None]
        lines += [StatementLine("refund", r.order_no, r.transaction_id or "", r.refunded_minor, r.currency, r.refunded_at)
                  for r in refunded if r.refunded_at is not None]
        return sorted(lines, key=lambda line: line.ts)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


class SandboxProvider:
    """The :class:`scada.payments.provider.PaymentProvider` of the sandbox."""

    name = "sandbox"

    def __init__(self, bank: SandboxBank, *, replay_window_s: float) -> None:
        self.bank = bank
        self.keys = bank.keys
        self.replay_window = dt.timedelta(seconds=replay_window_s)
        self.minor_units = bank.minor_units

    async def create_order(self, req: OrderRequest) -> PayTarget:
        row = await self.bank.create(req)
        url = f"{self.bank.pay_base()}/payments/sandbox/pay/{row.id}"
        return PayTarget(row.id, url, url)

    def verify_notification(self, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> Notification:
        values = {}
        for name in HEADERS:
            value = headers.get(name)
            if not value:
                raise PaymentError(f"missing header {name}", status=400, reason="malformed")
            values[name] = value
        if len(body) > MAX_NOTIFICATION_BYTES:
            raise PaymentError(f"body larger than {MAX_NOTIFICATION_BYTES} bytes", status=413, reason="malformed")
        timestamp, nonce = values["Sandbox-Timestamp"], values["Sandbox-Nonce"]
        if not _TIMESTAMP.fullmatch(timestamp):
            raise PaymentError("Sandbox-Timestamp: Unix seconds expected", status=400, reason="malformed")
        if not _NONCE.fullmatch(nonce):
            raise PaymentError("Sandbox-Nonce: 16 to 64 letters, digits, - or _ expected", status=400, reason="malformed")
        if values["Sandbox-Serial"] != self.keys.serial:
            raise PaymentError("Sandbox-Serial: not the sandbox's key", status=401, reason="forged")
        sent = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
        if abs(now - sent) > self.replay_window:
            raise PaymentError(f"Sandbox-Timestamp: {sent.isoformat()} is outside the replay window of {self.replay_window.total_seconds():g} s",
                               status=401, reason="stale")
        signature = values["Sandbox-Signature"]
        try:
            raw = base64.b64decode(signature, validate=True) if len(signature) <= 128 else b""
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 64 or not self.keys.verify(timestamp, nonce, body, raw):
            raise PaymentError("Sandbox-Signature: the signature does not match", status=401, reason="forged")
        try:
            data = parse_json(body, max_depth=4)
            if not isinstance(data, dict):
                raise PaymentError("body: a JSON object expected", status=400, reason="malformed")
            event = _Event.model_validate(data)
        except JsonInputError as exc:
            raise PaymentError(f"body: {exc}", status=400, reason="malformed") from None
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise PaymentError(f"body.{where}: {err['msg']}", status=400, reason="malformed", field=where) from None
        status = EVENT_TYPES.get(event.type)
        if status is None:
            raise PaymentError(f"body.type: unknown event type {event.type[:32]!r}", status=400, reason="malformed", field="type")
        try:
            amount = parse_decimal(event.amount, max_digits=18, decimal_places=8, what="amount")
        except InputError as exc:
            raise PaymentError(f"body.amount: {exc}", status=400, reason="malformed", field="amount") from None
        scaled = amount.scaleb(self.minor_units)
        if scaled != scaled.to_integral_value():
            raise PaymentError(f"body.amount: {event.amount} has more decimals than the currency", status=422, reason="mismatch",
                               field="amount")
        if status == "paid" and not event.transaction_id:
            raise PaymentError("body.transaction_id: a payment needs its transaction id", status=400, reason="malformed")
        return Notification(event.id, nonce, sent, status, event.order_no, event.transaction_id, int(scaled), event.currency,
                            event.paid_at)

    async def query(self, order_no: str) -> ProviderOrder:
        row = await self.bank.by_order(order_no)
        if row is None:
            return ProviderOrder(order_no, "unknown", None, 0, "", None)
        state: Literal["created", "paid", "declined", "refunded"] = row.state  # type: ignore[assignment]
        return ProviderOrder(order_no, state, row.transaction_id, row.amount_minor, row.currency, row.paid_at)

    async def refund(self, order_no: str, transaction_id: str, amount_minor: int, *, refund_no: str, reason: str) -> RefundResult:
        return await self.bank.refund(order_no, amount_minor, refund_no)

    async def statement(self, start: dt.datetime, end: dt.datetime) -> list[StatementLine]:
        return await self.bank.statement(start, end)

    async def close(self) -> None:
        await self.bank.close()
