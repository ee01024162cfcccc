"""The sandbox provider as a misbehaving real one: with ``duplicates`` on, each payment's
"succeeded" notification comes four times (each copy signed anew), and with ``out_of_order`` on
a stale "pending" event follows it. Paid on the pay page, each order is still credited once (one
ledger entry, the balance up once, one message to the tenant), every copy is answered 2xx (so
the provider stops retrying), and the late "pending" leaves the order ``credited``.

The message tells the tenant the amount, the new balance and the days of credit left: with a
charge of 10.00 today as the account's only cost (a day's cost of 10.00, the account being less
than a day old), a balance of 140.00 is 14.0 days."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import aiohttp
import pytest

from scada.billing.service import BILLING_SERVICE

from .payments_site import PHONES, Site, payment_site
from .test_payments_api import ledger_recharges, order, pay_on_page, sandbox, wait_state

DUPLICATES = 3
TZ8 = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with payment_site(tmp_path_factory.mktemp("sandbox-options"), sandbox=f"duplicates = {DUPLICATES}\nout_of_order = true\n") as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def charge_ten_today(site: Site, http: aiohttp.ClientSession) -> None:
    """A one-off charge of 10.00 from each balance today, and the engine's daily costs brought up to date."""
    today = dt.datetime.now(TZ8).date()
    status, rule = await site.call(http, "POST", "/charges", "admin", {
        "name": "Key deposit", "kind": "fixed", "amount": "10.00", "period": "once", "targets": {"rooms": ["R1", "R2"]},
        "settle": "from_balance", "start": today.isoformat()})
    assert status == 201, rule
    billing = site.srv.rt.ctx[BILLING_SERVICE]  # type: ignore[union-attr]
    await site.srv.run(lambda: billing.post_period_charges(dt.datetime.now(dt.UTC)))
    await site.srv.run(lambda: site.engine.refresh_daily_costs())
    for room in ("R1", "R2"):
        assert await site.balance(http, room) == "90.00"


async def test_duplicate_and_out_of_order_notifications_credit_each_order_once(site: Site, http: aiohttp.ClientSession) -> None:
    await charge_ten_today(site, http)
    bank = sandbox(site).bank
    for room, amount in (("R1", "50.00"), ("R2", "50.00")):
        before = Decimal(await site.balance(http, room))
        sent_before = len(bank.sent)
        created = await order(site, http, room=room, amount=amount)
        r = await pay_on_page(http, created["pay_url"])
        assert r.status == 303
        # the success, its three copies, then the stale "pending": every one answered 200, none retried
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(bank.sent) < sent_before + DUPLICATES + 2:
            assert loop.time() < deadline, bank.sent[sent_before:]
            await asyncio.sleep(0.02)
        sent = bank.sent[sent_before:]
        assert [status for _, status in sent] == [200] * (DUPLICATES + 2), sent
        succeeded, stale = sent[0][0], sent[-1][0]
        assert [event for event, _ in sent[:-1]] == [succeeded] * (DUPLICATES + 1) and stale != succeeded
        done = await wait_state(site, http, created["id"], "credited")
        assert done["detail"] == "" and done["entry"] and not done["late"]
        entries = await ledger_recharges(site, done["transaction_id"])
        assert [(e.id, e.amount_minor, e.channel) for e in entries] == [(done["entry"], 5000, "sandbox")]
        balance = await site.balance(http, room)
        assert Decimal(balance) == before + Decimal(amount) == Decimal("140.00")
        # one message, with the days of credit left: 140.00 at 10.00 a day
        deadline = loop.time() + 30
        while not [t for t in site.sms.texts_to(PHONES[room]) if created["order_no"] in t]:
            assert loop.time() < deadline, site.sms.messages
            await asyncio.sleep(0.05)
        status, again = await site.call(http, "GET", f"/payments/orders/{created['id']}")
        assert status == 200 and again["state"] == "credited" and again["entry"] == done["entry"], again
        texts = [t for t in site.sms.texts_to(PHONES[room]) if created["order_no"] in t]
        assert len(texts) == 1, texts
        if room == "R1":  # R1's tenant reads Chinese
            assert f"在线充值 {amount} CNY 已到账" in texts[0] and "当前余额 140.00 CNY。预计可用约 14.0 天。" in texts[0], texts[0]
        else:
            assert "New balance: 140.00 CNY. That is about 14.0 days of credit." in texts[0], texts[0]
