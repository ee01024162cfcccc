"""``scada payments``: orders, the sandbox's ``sandbox-pay``, and the reconciliation.

- ``scada payments orders [--state S]``: the newest orders.
- ``scada payments sandbox-pay ORDER [--decline]``: act as the payer on the sandbox's pay page:
  the sandbox books the payment and sends its signed notification to the running server's
  notify endpoint (the URL the order was created with); prints what the server answered.
- ``scada payments reconcile [--day YYYY-MM-DD] [--provider NAME]``: the day's (default:
  yesterday's) statement against the orders and the ledger; non-zero exit when it differs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from typing import Any

from sqlalchemy import select

from scada.config import config_from_args
from scada.db.component import open_database
from scada.payments.component import sandbox_keys
from scada.payments.errors import PaymentError
from scada.payments.models import PaymentOrder, SandboxPayment
from scada.payments.orders import order_no, parse_order_no
from scada.payments.reconcile import reconcile_day
from scada.payments.sandbox import SandboxBank, SandboxProvider
from scada.prepaid.money import format_minor
from tags import utcnow

__all__ = ["register"]


def _out(message: str) -> None:
    sys.stdout.write(message + "\n")


def _order_id(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return parse_order_no(text)


def cmd_orders(args: argparse.Namespace) -> int:
    """``scada payments orders``: list the newest payment orders."""
    config = config_from_args(args)
    minor = config.site.currency_minor_units

    async def run() -> int:
        db = open_database(config)
        try:
            await db.upgrade()
            stmt = select(PaymentOrder).order_by(PaymentOrder.id.desc()).limit(args.limit)
            if args.state:
                stmt = stmt.where(PaymentOrder.state == args.state)
            async with db.sessions() as s:
                rows = (await s.scalars(stmt)).all()
        finally:
            await db.dispose()
        for o in rows:
            _out(f"{order_no(o.id)}  {o.state:<9} {o.provider:<8} room {o.room_id:<10} {format_minor(o.amount_minor, minor):>10} {o.currency}"
                 f"  {o.created_at.isoformat(timespec='seconds')}  {o.transaction_id or ''}")
        return 0

    return asyncio.run(run())


def cmd_sandbox_pay(args: argparse.Namespace) -> int:
    """``scada payments sandbox-pay``: pay or decline an order on the sandbox provider."""
    config = config_from_args(args)
    order_id = _order_id(args.order)
    if order_id is None:
        _out(f"sandbox-pay: {args.order!r} is not an order number (12 or P12)")
        return 2

    async def run() -> int:
        db = open_database(config)
        bank: SandboxBank | None = None
        try:
            await db.upgrade()
            async with db.sessions() as s:
                row = await s.scalar(select(SandboxPayment).where(SandboxPayment.order_no == order_no(order_id)))
            if row is None:
                _out(f"sandbox-pay: the sandbox has no order {order_no(order_id)}")
                return 1
            keys = await asyncio.to_thread(sandbox_keys, config)
            bank = SandboxBank(db, keys, config.payments.sandbox, minor_units=config.site.currency_minor_units, pay_base=lambda: "")
            try:
                paid = await bank.pay(row.id, decline=args.decline)
            except PaymentError as exc:
                _out(f"sandbox-pay: {exc.message}")
                return 1
            _out(f"{order_no(order_id)}: {paid.state} {paid.transaction_id or ''}".rstrip())
            for event_id, status in bank.sent:
                _out(f"notification {event_id} -> {status or 'no answer'}")
            return 0 if bank.sent and all(200 <= status < 300 for _, status in bank.sent[-1:]) else 1
        finally:
            if bank is not None:
                await bank.close()
            await db.dispose()

    return asyncio.run(run())


def cmd_reconcile(args: argparse.Namespace) -> int:
    """``scada payments reconcile``: a day's provider statement against the orders and the ledger; 1 when they differ."""
    config = config_from_args(args)
    tz = config.site.tz
    try:
        day = dt.date.fromisoformat(args.day) if args.day else utcnow().astimezone(tz).date() - dt.timedelta(days=1)
    except ValueError:
        _out(f"reconcile: --day: expected YYYY-MM-DD, found {args.day!r}")
        return 2
    names = [args.provider] if args.provider else list(config.payments.providers)

    async def run() -> int:
        db = open_database(config)
        ok = True
        try:
            await db.upgrade()
            for name in names:
                if name != "sandbox" or name not in config.payments.providers:
                    _out(f"reconcile: provider {name!r} is not configured")
                    return 2
                keys = await asyncio.to_thread(sandbox_keys, config)
                bank = SandboxBank(db, keys, config.payments.sandbox, minor_units=config.site.currency_minor_units, pay_base=lambda: "")
                provider = SandboxProvider(bank, replay_window_s=config.payments.replay_window_s)
                report = await reconcile_day(db, provider, day, tz=tz, minor_units=config.site.currency_minor_units)
                await provider.close()
                data: dict[str, Any] = report.as_json()
                if args.json:
                    _out(json.dumps(data, ensure_ascii=False, indent=2))
                else:
                    _out(f"{name} {day}: {report.payments} payment(s), {report.refunds} refund(s) on the statement,"
                         f" {report.credited} credited")
                    for key in ("paid_not_credited", "credited_not_paid", "amount_differs", "refunded_not_booked"):
                        for item in data[key]:
                            _out(f"  {key.upper().replace('_', ' ')}: {json.dumps(item, ensure_ascii=False)}")
                    _out(f"reconcile {name}: {'OK' if report.ok else 'DIFFERS'}")
                ok = ok and report.ok
        finally:
            await db.dispose()
        return 0 if ok else 1

    return asyncio.run(run())


def register(sub: Any) -> None:
    """Add the ``payments`` subcommands to the CLI's subparsers."""
    p = sub.add_parser("payments", help="online payment: orders, the sandbox provider, reconciliation")
    cmds = p.add_subparsers(dest="payments_command", required=True)
    c = cmds.add_parser("orders", help="the newest payment orders")
    c.add_argument("--config", help="TOML config file (default: the demo's)")
    c.add_argument("--state", choices=("created", "paid", "credited", "expired", "failed", "refunded"))
    c.add_argument("--limit", type=int, default=50)
    c.set_defaults(handler=cmd_orders)
    c = cmds.add_parser("sandbox-pay", help="pay (or --decline) an order on the sandbox provider: its signed notification goes to the server")
    c.add_argument("order", help="the order's number (12 or P12)")
    c.add_argument("--decline", action="store_true", help="the payer declines: a payment.failed notification")
    c.add_argument("--config", help="TOML config file (default: the demo's)")
    c.set_defaults(handler=cmd_sandbox_pay)
    c = cmds.add_parser("reconcile", help="a day's provider statement against the orders and the ledger; non-zero exit when they differ")
    c.add_argument("--day", help="the local day YYYY-MM-DD (default: yesterday)")
    c.add_argument("--provider", help="one provider (default: every configured one)")
    c.add_argument("--json", action="store_true", help="the report as JSON")
    c.add_argument("--config", help="TOML config file (default: the demo's)")
    c.set_defaults(handler=cmd_reconcile)
