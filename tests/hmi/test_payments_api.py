"""Online payment end to end through the API, on one server for the module: orders, the
sandbox's pay page and its signed notifications over real HTTP, crediting exactly once,
refused notifications, late payments, refunds under the four-eyes rule, reconciliation."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from scada.payments.models import PaymentNonce, PaymentOrder
from scada.payments.sandbox import SandboxKeys, SandboxProvider, signed_headers
from scada.prepaid.models import LedgerEntry
from tags import utcnow

from ..harness import write_lock_held
from .payments_site import PHONES, Site, payment_site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with payment_site(tmp_path_factory.mktemp("payments")) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def sandbox(site: Site) -> SandboxProvider:
    provider = site.payments.providers["sandbox"]
    assert isinstance(provider, SandboxProvider)
    return provider


async def order(site: Site, http: aiohttp.ClientSession, room: str = "R1", amount: str = "50.00", user: str = "cashier") -> dict[str, Any]:
    status, body = await site.call(http, "POST", "/payments/orders", user, {"room": room, "amount": amount, "provider": "sandbox"})
    assert status == 201, body
    assert body["state"] == "created" and body["pay_url"].startswith(site.url + "/payments/sandbox/pay/")
    return body  # type: ignore[no-any-return]


async def wait_state(site: Site, http: aiohttp.ClientSession, order_id: int, state: str) -> dict[str, Any]:
    for _ in range(200):
        status, body = await site.call(http, "GET", f"/payments/orders/{order_id}")
        assert status == 200, body
        if body["state"] == state:
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError(f"order {order_id} stayed {body['state']}, expected {state}")


async def ledger_recharges(site: Site, reference: str) -> list[LedgerEntry]:
    async def read() -> list[LedgerEntry]:
        async with site.payments.db.sessions() as s:
            return list((await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "recharge", LedgerEntry.reference == reference))).all())

    return await site.srv.run(read)


async def pay_on_page(http: aiohttp.ClientSession, pay_url: str, action: str = "pay") -> aiohttp.ClientResponse:
    async with http.get(pay_url) as r:
        assert r.status == 200
        page = await r.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf, page
    async with http.post(pay_url, data={"csrf": csrf.group(1), "action": action}, allow_redirects=False) as r:
        await r.read()
        return r


async def test_a_payment_on_the_sandbox_pay_page_is_credited_once(site: Site, http: aiohttp.ClientSession) -> None:
    before = await site.balance(http, "R1")
    created = await order(site, http)
    r = await pay_on_page(http, created["pay_url"])
    assert r.status == 303 and r.headers["Location"] == site.url + "/cashier?room=R1"
    done = await wait_state(site, http, created["id"], "credited")
    assert done["transaction_id"] and done["entry"] and done["paid_at"] and not done["late"]
    entries = await ledger_recharges(site, done["transaction_id"])
    assert [(e.channel, e.amount_minor, e.id) for e in entries] == [("sandbox", 5000, done["entry"])]
    assert float(await site.balance(http, "R1")) == pytest.approx(float(before) + 50)
    # the pay page now says it is paid: no form to pay again
    async with http.get(created["pay_url"]) as page:
        assert 'name="action"' not in await page.text()


async def test_duplicate_notifications_credit_once(site: Site, http: aiohttp.ClientSession) -> None:
    created = await order(site, http, amount="12.34")
    bank = sandbox(site).bank
    paid = await site.srv.run(lambda: bank.pay(created["pay_url"].rsplit("/", 1)[1], send=False))
    notify_url = site.api + "/payments/notify/sandbox"
    message = bank.event(paid, "payment.succeeded")
    body = json.dumps(message).encode()
    before = await site.balance(http, "R1")
    # three copies at once, each signed anew (a provider's retries), then three more one by one
    statuses = await asyncio.gather(*(site.srv.run(lambda: bank.post(notify_url, body)) for _ in range(3)))
    statuses += [await site.srv.run(lambda: bank.post(notify_url, body)) for _ in range(3)]
    assert statuses == [200] * 6
    done = await wait_state(site, http, created["id"], "credited")
    assert len(await ledger_recharges(site, done["transaction_id"])) == 1
    assert float(await site.balance(http, "R1")) == pytest.approx(float(before) + 12.34)


REFUSALS = ["forged", "replayed", "stale", "mismatch", "unknown_order", "wrong_currency", "malformed", "unknown_provider"]


async def test_refused_notifications_credit_nothing_and_are_logged(site: Site, http: aiohttp.ClientSession,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    created = await order(site, http, amount="20.00")
    bank = sandbox(site).bank
    paid = await site.srv.run(lambda: bank.pay(created["pay_url"].rsplit("/", 1)[1], send=False))
    url = site.api + "/payments/notify/sandbox"
    good = bank.event(paid, "payment.succeeded")
    raw = json.dumps(good).encode()
    other = SandboxKeys(Ed25519PrivateKey.generate())
    replay_headers = signed_headers(bank.keys, raw, utcnow())
    cases: dict[str, tuple[str, bytes, dict[str, str], int]] = {
        # another key under the sandbox's serial
        "forged": (url, raw, {**signed_headers(other, raw, utcnow()), "Sandbox-Serial": bank.keys.serial}, 401),
        # the body changed after signing
        "tampered": (url, raw.replace(b"20.00", b"2000.00"), signed_headers(bank.keys, raw, utcnow()), 401),
        "stale": (url, raw, signed_headers(bank.keys, raw, utcnow() - dt.timedelta(minutes=10)), 401),
        "future": (url, raw, signed_headers(bank.keys, raw, utcnow() + dt.timedelta(minutes=10)), 401),
        "mismatch": (url, json.dumps(good | {"amount": "19.99"}).encode(), {}, 422),
        "wrong_currency": (url, json.dumps(good | {"currency": "USD"}).encode(), {}, 422),
        "unknown_order": (url, json.dumps(good | {"order_no": "P99999999"}).encode(), {}, 404),
        "malformed": (url, b'{"id": "evt_x", "type": "payment.succeeded"}', {}, 400),
        "unknown_provider": (site.api + "/payments/notify/paypal", raw, {}, 404),
    }
    balance = await site.balance(http, "R1")
    caplog.set_level(logging.WARNING, logger="scada.payments.orders")
    for name, (target, body, headers, expected) in cases.items():
        status = await site.srv.run(lambda t=target, b=body, h=headers: bank.post(t, b, h or signed_headers(bank.keys, b, utcnow())))
        assert status == expected, name
    # the replay: the same signed request twice; the first is taken, the second refused
    assert await site.srv.run(lambda: bank.post(url, raw, replay_headers)) == 200
    assert await site.srv.run(lambda: bank.post(url, raw, replay_headers)) == 409
    refused = [r for r in caplog.records if r.getMessage() == "payment notification refused"]
    reasons = sorted(getattr(r, "reason", "") for r in refused)
    assert reasons == sorted(["forged", "forged", "stale", "stale", "mismatch", "mismatch", "unknown_order", "malformed",
                              "unknown_provider", "replayed"]), reasons
    # only the one good notification credited
    done = await wait_state(site, http, created["id"], "credited")
    assert len(await ledger_recharges(site, done["transaction_id"])) == 1
    assert float(await site.balance(http, "R1")) == pytest.approx(float(balance) + 20)

    async def nonces() -> int:
        async with site.payments.db.sessions() as s:
            return len((await s.scalars(select(PaymentNonce.nonce).where(PaymentNonce.nonce == replay_headers["Sandbox-Nonce"]))).all())

    assert await site.srv.run(nonces) == 1


async def test_a_burst_of_notifications_is_taken_together_and_each_answered_on_its_own(site: Site, http: aiohttp.ClientSession) -> None:
    """Notifications arriving together are accepted and credited in batches: a refused one in a
    batch refuses only itself, a duplicate in the same batch credits once."""
    bank = sandbox(site).bank
    url = site.api + "/payments/notify/sandbox"
    orders = [await order(site, http, amount=f"{3 + k}.00") for k in range(6)]
    paid = [await site.srv.run(lambda o=o: bank.pay(o["pay_url"].rsplit("/", 1)[1], send=False)) for o in orders]
    bodies = [json.dumps(bank.event(p, "payment.succeeded")).encode() for p in paid]
    replay_headers = signed_headers(bank.keys, bodies[1], utcnow())
    burst = [(b, None) for b in bodies[:5]]  # orders 0-4 paid; order 5's notification says the wrong amount
    burst += [(bodies[0], None), (bodies[1], replay_headers), (bodies[1], replay_headers)]  # a duplicate; one nonce twice
    burst += [(json.dumps(json.loads(bodies[5]) | {"amount": "1.00"}).encode(), None)]
    before = float(await site.balance(http, "R1"))
    statuses = await asyncio.gather(*(site.srv.run(lambda b=b, h=h: bank.post(url, b, h or signed_headers(bank.keys, b, utcnow())))
                                      for b, h in burst))
    assert statuses[:6] == [200] * 6 and sorted(statuses[6:8]) == [200, 409] and statuses[8] == 422, statuses
    for o in orders[:5]:
        done = await wait_state(site, http, o["id"], "credited")
        assert len(await ledger_recharges(site, done["transaction_id"])) == 1
    status, body = await site.call(http, "GET", f"/payments/orders/{orders[5]['id']}")
    assert status == 200 and body["state"] == "created"
    assert float(await site.balance(http, "R1")) == pytest.approx(before + 3 + 4 + 5 + 6 + 7)
    # the refusal lost nothing: the provider's true notification is taken (and the day reconciles for the tests after)
    assert await site.srv.run(lambda: bank.post(url, bodies[5], signed_headers(bank.keys, bodies[5], utcnow()))) == 200
    await wait_state(site, http, orders[5]["id"], "credited")
    assert float(await site.balance(http, "R1")) == pytest.approx(before + 3 + 4 + 5 + 6 + 7 + 8)


async def test_events_out_of_order_change_nothing(site: Site, http: aiohttp.ClientSession) -> None:
    created = await order(site, http, amount="5.00")
    bank = sandbox(site).bank
    paid = await site.srv.run(lambda: bank.pay(created["pay_url"].rsplit("/", 1)[1], send=False))
    url = site.api + "/payments/notify/sandbox"
    for kind in ("payment.succeeded", "payment.pending", "payment.failed"):
        assert await site.srv.run(lambda k=kind: bank.deliver(url, bank.event(paid, k))) == 200
    done = await wait_state(site, http, created["id"], "credited")
    assert done["detail"] == ""


async def test_a_declined_payment_fails_the_order(site: Site, http: aiohttp.ClientSession) -> None:
    created = await order(site, http, amount="7.00")
    r = await pay_on_page(http, created["pay_url"], "decline")
    assert r.status == 303
    done = await wait_state(site, http, created["id"], "failed")
    assert done["transaction_id"] is None and done["entry"] is None


async def test_orders_are_bounded_and_authorised(site: Site, http: aiohttp.ClientSession) -> None:
    for amount, field in (("0.50", "amount"), ("5000.01", "amount"), ("1.001", "amount"), ("-5", "amount")):
        status, err = await site.call(http, "POST", "/payments/orders", "cashier", {"room": "R1", "amount": amount})
        assert status == 422 and err["field"] == field, (amount, err)
    status, err = await site.call(http, "POST", "/payments/orders", "cashier", {"room": "R1", "amount": "5", "provider": "paypal"})
    assert status == 422 and err["field"] == "provider"
    status, err = await site.call(http, "POST", "/payments/orders", "cashier", {"room": "NOPE", "amount": "5"})
    assert status == 404 and err["field"] == "room"
    status, _ = await site.call(http, "POST", "/payments/orders", "viewer", {"room": "R1", "amount": "5"})
    assert status == 403
    status, _ = await site.call(http, "POST", "/payments/orders", "", {"room": "R1", "amount": "5"})
    assert status == 401
    status, _ = await site.call(http, "GET", "/payments/orders/1", "operator")
    assert status == 403
    status, _ = await site.call(http, "GET", "/payments/orders/99999999")
    assert status == 404


async def test_an_order_paid_after_it_expired_is_credited_or_refunded_per_config(site: Site, http: aiohttp.ClientSession) -> None:
    service = site.payments

    async def expire(order_id: int) -> None:
        async with service.db.transaction() as s:
            await s.execute(update(PaymentOrder).where(PaymentOrder.id == order_id).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        await service.recover()

    credited = await order(site, http, amount="9.00")
    await site.srv.run(lambda: expire(credited["id"]))
    await wait_state(site, http, credited["id"], "expired")
    before = await site.balance(http, "R1")
    await pay_on_page(http, credited["pay_url"])
    done = await wait_state(site, http, credited["id"], "credited")
    assert done["late"] and "expired" in done["detail"]
    assert float(await site.balance(http, "R1")) == pytest.approx(float(before) + 9)

    refunded = await order(site, http, amount="8.00")
    await site.srv.run(lambda: expire(refunded["id"]))
    original = service.config
    service.config = original.model_copy(update={"late_payment": "refund"})
    try:
        await pay_on_page(http, refunded["pay_url"])
        done = await wait_state(site, http, refunded["id"], "refunded")
    finally:
        service.config = original
    assert done["late"] and done["entry"] is None and "late_payment" in done["detail"]
    row = await site.srv.run(lambda: sandbox(site).bank.by_order(done["order_no"]))
    assert row is not None and row.state == "refunded" and row.refunded_minor == 800
    assert float(await site.balance(http, "R1")) == pytest.approx(float(before) + 9)  # not credited


async def test_a_recovery_round_with_nothing_to_do_takes_no_write_lock(site: Site) -> None:
    """The recovery runs every minute and mostly finds nothing: it looks on the read-only
    connection first, and writes (holding SQLite's write lock) only what is due."""
    service = site.payments

    async def quiet_round() -> int:
        await service.recover()  # what other tests left due
        # the server's other writers wait the full time for the lock: held only for this round
        with write_lock_held(service.db.url.database or ""):
            async with asyncio.timeout(5):  # a round that waited for the lock would wait 10 s
                return await service.recover()

    assert await site.srv.run(quiet_round) == 0


async def test_refunds_follow_the_cash_refund_rule(site: Site, http: aiohttp.ClientSession) -> None:
    small = await order(site, http, room="R2", amount="30.00")
    big = await order(site, http, room="R2", amount="600.00")
    for o in (small, big):
        await pay_on_page(http, o["pay_url"])
        await wait_state(site, http, o["id"], "credited")
    before = float(await site.balance(http, "R2"))
    status, body = await site.call(http, "POST", f"/payments/orders/{small['id']}/refund", "cashier", {"reason": "tenant asked"})
    assert status == 200 and body["state"] == "refunded" and body["refund_entry"], body
    status, body = await site.call(http, "POST", f"/payments/orders/{big['id']}/refund", "cashier", {"reason": "paid twice"})
    assert status == 202 and body["state"] == "pending", body
    status, err = await site.call(http, "POST", f"/approvals/{body['id']}/approve", "cashier", {"reason": "mine"})
    assert status == 403, err
    status, done = await site.call(http, "POST", f"/approvals/{body['id']}/approve", "supervisor", {"reason": "checked"})
    assert status == 200 and done["state"] == "executed", done
    _, refunded = await site.call(http, "GET", f"/payments/orders/{big['id']}")
    assert refunded["state"] == "refunded" and refunded["refund_entry"]
    assert float(await site.balance(http, "R2")) == pytest.approx(before - 630)
    status, err = await site.call(http, "POST", f"/payments/orders/{big['id']}/refund", "cashier", {"reason": "again"})
    assert status == 409
    status, err = await site.call(http, "POST", f"/payments/orders/{big['id']}/refund", "viewer", {"reason": "x"})
    assert status == 403


async def test_reconciliation_reports_paid_not_credited_and_the_reverse(site: Site, http: aiohttp.ClientSession) -> None:
    today = utcnow().astimezone(site.engine.tz).date().isoformat()
    # a payment whose notification never arrives: paid at the provider, not credited here
    lost = await order(site, http, amount="3.00")
    bank = sandbox(site).bank
    paid = await site.srv.run(lambda: bank.pay(lost["pay_url"].rsplit("/", 1)[1], send=False))
    # a credit through the provider's channel that the provider never saw
    status, body = await site.call(http, "POST", "/rooms/R1/account/recharge", "cashier",
                                   {"amount": "4.00", "reference": "sbxt_nobody", "channel": "sandbox"})
    assert status == 200, body
    status, body = await site.call(http, "POST", "/payments/reconciliations", "cashier", {"day": today})
    assert status == 200 and not body["ok"], body
    report = body["reports"][0]
    assert [i["transaction_id"] for i in report["paid_not_credited"]] == [paid.transaction_id]
    assert [i["transaction_id"] for i in report["credited_not_paid"]] == ["sbxt_nobody"]
    assert report["payments"] >= 3
    # the notification comes after all: that payment reconciles; the stray credit is reversed
    assert await site.srv.run(lambda: bank.deliver(site.api + "/payments/notify/sandbox", bank.event(paid, "payment.succeeded"))) == 200
    await wait_state(site, http, lost["id"], "credited")
    status, body = await site.call(http, "POST", "/rooms/R1/account/refund", "cashier",
                                   {"amount": "4.00", "reason": "not a real payment", "channel": "sandbox", "reference": "sbxt_nobody"})
    assert status == 200, body
    # the CLI reads the same statement (and still sees the stray credit of the day)
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "scada", "payments", "reconcile", "--day", today,
                                                      "--config", str(site.config_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CREDITED NOT PAID" in result.stdout and "sbxt_nobody" in result.stdout and "PAID NOT CREDITED" not in result.stdout
    status, body = await site.call(http, "GET", f"/payments/reconciliations?day={today}", "cashier")
    assert status == 200 and len(body["reports"]) == 2


async def test_sandbox_pay_from_the_command_line(site: Site, http: aiohttp.ClientSession) -> None:
    created = await order(site, http, room="R2", amount="11.00")
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "scada", "payments", "sandbox-pay", created["order_no"],
                                                      "--config", str(site.config_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"-> 200", result.stdout), result.stdout
    done = await wait_state(site, http, created["id"], "credited")
    assert len(await ledger_recharges(site, done["transaction_id"])) == 1


async def test_a_credited_payment_sends_the_tenant_a_message_in_their_language(site: Site, http: aiohttp.ClientSession) -> None:
    bank = sandbox(site).bank
    url = site.api + "/payments/notify/sandbox"
    for room, amount in (("R1", "25.00"), ("R2", "26.00")):
        created = await order(site, http, room=room, amount=amount)
        paid = await site.srv.run(lambda c=created: bank.pay(c["pay_url"].rsplit("/", 1)[1], send=False))
        for _ in range(3):  # duplicates: still one credit, one message
            assert await site.srv.run(lambda p=paid: bank.deliver(url, bank.event(p, "payment.succeeded"))) == 200
        await wait_state(site, http, created["id"], "credited")
        balance = await site.balance(http, room)
        for _ in range(100):
            texts = [t for t in site.sms.texts_to(PHONES[room]) if created["order_no"] in t]
            if texts:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        texts = [t for t in site.sms.texts_to(PHONES[room]) if created["order_no"] in t]
        assert len(texts) == 1, texts
        # no consumption or charge yet: no estimate of the days left (test_payments_sandbox_options has one)
        if room == "R1":  # R1's tenant reads Chinese
            assert f"在线充值 {amount} CNY 已到账" in texts[0] and texts[0].rstrip().endswith(f"当前余额 {balance} CNY。"), texts[0]
        else:
            assert f"payment of {amount} CNY" in texts[0] and texts[0].rstrip().endswith(f"New balance: {balance} CNY."), texts[0]
