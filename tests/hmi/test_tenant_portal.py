"""The tenant portal and the tenant's API scope, on one server for the module: sign-in with the
account number and PIN or with the phone number and a one-time code (expired, reused and wrong
codes refused, the sixth attempt within a minute refused by the login limiter), a tenant sees
only their own accounts (another's by URL or API is a 404), and a tenant's session reaches no
operator page, API route or feed."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from sqlalchemy import update

from scada.tenants.component import TENANTS
from scada.tenants.models import TenantCode
from tags import utcnow

from .payments_site import PHONES, PINS, Site, payment_site

CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with payment_site(tmp_path_factory.mktemp("tenant")) as s:
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def form_token(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        m = CSRF_INPUT.search(await r.text())
        assert m
        return m.group(1)


async def pin_login(site: Site, http: aiohttp.ClientSession, room: str, pin: str | None = None) -> tuple[int, str]:
    token = await form_token(http, site.url + "/tenant/login")
    async with http.post(site.url + "/tenant/login", data={"csrf": token, "account": str(site.accounts[room]),
                                                          "pin": pin or PINS[room]}) as r:
        return r.status, await r.text()


async def code_request(site: Site, http: aiohttp.ClientSession, phone: str) -> str:
    token = await form_token(http, site.url + "/tenant/login")
    async with http.post(site.url + "/tenant/login/code", data={"csrf": token, "phone": phone}) as r:
        text = await r.text()
        assert r.status == 200, text
        return text


async def code_verify(site: Site, http: aiohttp.ClientSession, phone: str, code: str) -> tuple[int, str]:
    token = await form_token(http, site.url + "/tenant/login")
    async with http.post(site.url + "/tenant/login/verify", data={"csrf": token, "phone": phone, "code": code}) as r:
        return r.status, await r.text()


def last_code(site: Site, phone: str) -> str:
    texts = site.sms.texts_to(phone)
    assert texts, site.sms.messages
    m = re.search(r"([0-9]{6})", texts[-1])
    assert m, texts[-1]
    return m.group(1)


async def test_pin_sign_in_shows_only_the_tenants_own_account(site: Site, browser: aiohttp.ClientSession) -> None:
    status, page = await pin_login(site, browser, "R1")
    assert status == 200
    assert "100.00" in page and "R1" in page  # redirected to the account page: the balance
    csrf = CSRF_META.search(page)
    assert csrf
    headers = {"X-CSRF-Token": csrf.group(1)}
    api = site.api
    async with browser.get(api + "/tenant/accounts") as r:
        body = await r.json()
        assert r.status == 200 and [a["id"] for a in body["accounts"]] == [site.accounts["R1"]]
        assert body["accounts"][0]["contact"] is None  # nothing of the contact details comes back
    async with browser.get(api + f"/tenant/accounts/{site.accounts['R1']}") as r:
        summary = await r.json()
        assert r.status == 200 and summary["balance"] == "100.00" and len(summary["days"]) == 30
        assert summary["today"]["cost"] == "0.00" and "electricity" in summary["units"]
    other = site.accounts["R2"]
    for path in (f"/tenant/accounts/{other}", f"/tenant/accounts/{other}/ledger", f"/tenant/accounts/{other}/bills",
                 f"/tenant/accounts/{other}/statement", "/tenant/accounts/99999999", "/tenant/accounts/abc"):
        async with browser.get(api + path) as r:
            assert r.status == 404, (path, await r.text())
    async with browser.get(site.url + f"/tenant/accounts/{other}") as r:
        assert r.status == 404
    # an order for another tenant's room, and one of theirs read by id
    async with browser.post(api + "/payments/orders", json={"room": "R2", "amount": "5.00"}, headers=headers) as r:
        assert r.status == 404, await r.text()
    status, theirs = await site.call(browser, "POST", "/payments/orders", "cashier", {"room": "R2", "amount": "5.00"})
    assert status == 201
    async with browser.get(api + f"/payments/orders/{theirs['id']}", headers={}) as r:
        assert r.status == 404
    async with browser.get(api + "/payments/orders") as r:
        assert r.status == 200 and all(o["account"] == site.accounts["R1"] for o in (await r.json())["orders"])
    # their own order: with the CSRF token only
    async with browser.post(api + "/payments/orders", json={"room": "R1", "amount": "5.00"}) as r:
        assert r.status == 403 and "CSRF" in (await r.json())["error"]
    async with browser.post(api + "/payments/orders", json={"room": "R1", "amount": "5.00"}, headers=headers) as r:
        mine = await r.json()
        assert r.status == 201 and mine["state"] == "created" and mine["pay_url"], mine
    async with browser.get(api + f"/payments/orders/{mine['id']}") as r:
        assert r.status == 200 and (await r.json())["account"] == site.accounts["R1"]


async def test_a_tenant_session_reaches_no_operator_route_page_or_feed(site: Site, browser: aiohttp.ClientSession) -> None:
    status, page = await pin_login(site, browser, "R2")
    assert status == 200
    csrf = CSRF_META.search(page)
    assert csrf
    headers = {"X-CSRF-Token": csrf.group(1)}
    for method, path in (("GET", "/rooms"), ("GET", "/rooms/R2/account"), ("GET", "/rooms/R2/account/ledger"), ("GET", "/users"),
                         ("POST", "/rooms/R2/account/recharge"), ("POST", "/payments/reconciliations"), ("GET", "/payments/reconciliations"),
                         ("POST", "/payments/orders/1/refund"), ("PUT", "/rooms/R2/account/pin"), ("GET", "/approvals")):
        async with browser.request(method, site.api + path, json={}, headers=headers) as r:
            assert r.status == 401, (method, path, await r.text())
    for page_path in ("/", "/cashier", "/rooms/R2", "/alarms", "/approvals"):
        async with browser.get(site.url + page_path, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/login"), (page_path, r.status)
    async with browser.get(site.url + "/ws", headers={"Origin": site.url}) as r:
        assert r.status in (401, 403), r.status
    # and the other way round: an operator's token is no tenant
    async with browser.get(site.api + "/tenant/accounts", headers={"Authorization": f"Bearer {site.tokens['admin']}"}) as r:
        assert r.status == 401


async def test_wrong_pin_and_unknown_account_are_refused_alike(site: Site, browser: aiohttp.ClientSession) -> None:
    status, page = await pin_login(site, browser, "R1", pin="999111")
    assert status == 401 and "wrong" in page
    token = await form_token(browser, site.url + "/tenant/login")
    async with browser.post(site.url + "/tenant/login", data={"csrf": token, "account": "99999999", "pin": PINS["R1"]}) as r:
        assert r.status == 401 and "wrong" in await r.text()
    async with browser.post(site.url + "/tenant/login", data={"account": str(site.accounts["R1"]), "pin": PINS["R1"]}) as r:
        assert r.status == 403  # no CSRF token
    async with browser.get(site.api + "/tenant/accounts") as r:
        assert r.status == 401


async def test_pins_are_set_by_cashiers_only_and_checked(site: Site, browser: aiohttp.ClientSession) -> None:
    for pin, field in (("123456", "pin"), ("111111", "pin"), ("12345", "pin"), ("12a456", "pin")):
        status, err = await site.call(browser, "PUT", "/rooms/R1/account/pin", "cashier", {"pin": pin})
        assert status == 422 and err["field"] == field, (pin, err)
    status, _ = await site.call(browser, "PUT", "/rooms/R1/account/pin", "operator", {"pin": "975310"})
    assert status == 403
    status, body = await site.call(browser, "PUT", "/rooms/R1/account/pin", "cashier", {"pin": PINS["R1"]})
    assert status == 200 and body["pin"] == "set"


async def test_one_time_codes_sign_in_once_and_expire(site: Site, browser: aiohttp.ClientSession) -> None:
    phone = PHONES["R2"]
    page = await code_request(site, browser, "+86 139-0000-0002")  # written with separators: the same number
    assert phone in page
    code = last_code(site, phone)
    assert "Payments Test" in site.sms.texts_to(phone)[-1] and "expires" in site.sms.texts_to(phone)[-1]  # R2's tenant reads English
    status, page = await code_verify(site, browser, phone, code)
    assert status == 200 and "R2" in page
    async with browser.get(site.api + "/tenant/accounts") as r:
        assert [a["id"] for a in (await r.json())["accounts"]] == [site.accounts["R2"]]
    # the same code again: used up
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        status, _ = await code_verify(site, other, phone, code)
        assert status == 401
        # a fresh code, expired before it is used
        await code_request(site, other, phone)
        stale = last_code(site, phone)

        async def expire() -> None:
            async with site.srv.rt.ctx[TENANTS].db.transaction() as s:  # type: ignore[union-attr]
                await s.execute(update(TenantCode).where(TenantCode.phone == phone).values(expires_at=utcnow() - dt.timedelta(seconds=1)))

        await site.srv.run(expire)
        status, _ = await code_verify(site, other, phone, stale)
        assert status == 401
        # an unknown number is told the same as a known one, and gets nothing
        sent = len(site.sms.messages)
        page = await code_request(site, other, "+8613900000099")
        assert "+8613900000099" in page and len(site.sms.messages) == sent


async def test_the_sixth_attempt_within_a_minute_is_refused_by_the_rate_limit(site: Site, browser: aiohttp.ClientSession) -> None:
    phone = PHONES["R1"]
    await code_request(site, browser, phone)
    code = last_code(site, phone)
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    for _ in range(5):
        status, page = await code_verify(site, browser, phone, wrong)
        assert status == 401, page
    status, page = await code_verify(site, browser, phone, code)  # right, but the sixth within the minute
    assert status == 429 and re.search(r"[0-9]+ s", page), page
    async with browser.get(site.api + "/tenant/accounts") as r:
        assert r.status == 401
