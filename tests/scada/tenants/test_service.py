"""Tenant PINs, one-time codes and scopes at the service layer, on SQLite and PostgreSQL, with
driven clocks: code requests rate-limited per number and per address, a code void after too
many wrong entries, expired or used codes refused, a customer's phone number reaching all of
the customer's open accounts, a closed account ending a PIN session."""

from __future__ import annotations

import datetime as dt

import pytest

from scada.billing.models import AccountBilling, Customer
from scada.db import Database
from scada.prepaid.models import Account
from scada.site.importer import apply_site, parse_toml
from scada.tenants.config import TenantsConfig
from scada.tenants.service import TenantError, TenantService, trivial_pin
from scada.users.audit import Actor

SITE = """
[site]
id = "t"
name = "T"
[[buildings]]
id = "B"
name = "B"
[[floors]]
id = "F"
building = "B"
level = 1
name = "F"
""" + "".join(f'[[rooms]]\nid = "R{i}"\nfloor = "F"\nname = "R{i}"\n' for i in range(1, 5))

T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)


class Clocks:
    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
        self.mono += seconds


async def _accounts(db: Database) -> dict[str, int]:
    await apply_site(db, parse_toml(SITE, "<site>"), Actor("t", "cli"))
    out = {}
    async with db.transaction() as s:
        for i, phone in ((1, "+8613900000001"), (2, None), (3, None), (4, "+8613900000004")):
            a = Account(room_id=f"R{i}", open_room_id=f"R{i}", state="open", opened_at=T0, opened_by="t", contact_name="x",
                        contact_phone=phone, language="zh-CN" if i == 1 else "en", credit_limit_minor=0, thresholds=[], balance_minor=0,
                        remainder=0, updated_at=T0)
            s.add(a)
            await s.flush()
            out[f"R{i}"] = a.id
        c = Customer(name="Shop Co", kind="company", phone="+86 139 0000 0007", language="en", address="", bill_per="customer",
                     created_at=T0, created_by="t", updated_at=T0)
        s.add(c)
        await s.flush()
        for room in ("R2", "R3"):
            s.add(AccountBilling(account_id=out[room], customer_id=c.id, updated_at=T0))
    return out


def service(db: Database, clocks: Clocks, sent: list[tuple[str, str, str]], **cfg: object) -> TenantService:
    async def send(phone: str, text: str, language: str) -> None:
        sent.append((phone, text, language))

    config = TenantsConfig.model_validate({"code_resend_s": 30.0, "code_sends_per_hour": 3, "code_sends_per_address_per_hour": 5, **cfg})
    return TenantService(config, db, site_name="Site", send_sms=send, clock=lambda: clocks.now, monotonic=lambda: clocks.mono)


def test_trivial_pins() -> None:
    assert trivial_pin("000000") and trivial_pin("123456") and trivial_pin("987654") and trivial_pin("4567")
    assert not trivial_pin("246810") and not trivial_pin("135799") and not trivial_pin("120456")


async def test_pins(db: Database) -> None:
    accounts = await _accounts(db)
    svc = service(db, Clocks(), [])
    for bad in ("12345", "1234567", "12345a", "111111", "654321"):
        with pytest.raises(TenantError) as exc:
            await svc.set_pin(accounts["R1"], bad, Actor("c", "api"))
        assert exc.value.field == "pin"
    await svc.set_pin(accounts["R1"], "246810", Actor("c", "api"))
    assert await svc.authenticate_pin(str(accounts["R1"]), "246810") == f"account:{accounts['R1']}"
    assert await svc.authenticate_pin(str(accounts["R1"]), "246811") is None
    assert await svc.authenticate_pin(str(accounts["R2"]), "246810") is None  # no PIN there
    assert await svc.authenticate_pin("１２", "246810") is None  # full-width digits are not an account number
    assert await svc.accounts_of(f"account:{accounts['R1']}") == {accounts["R1"]}
    async with db.transaction() as s:
        a = await s.get(Account, accounts["R1"])
        assert a is not None
        a.state, a.open_room_id = "closed", None
    assert await svc.accounts_of(f"account:{accounts['R1']}") == frozenset()
    assert await svc.authenticate_pin(str(accounts["R1"]), "246810") is None


async def test_codes_expire_are_single_use_and_void_after_wrong_entries(db: Database) -> None:
    accounts = await _accounts(db)
    clocks, sent = Clocks(), []
    svc = service(db, clocks, sent, code_ttl_s=60.0, code_max_attempts=3)
    await svc.request_code("+8613900000001", "10.0.0.1")
    (phone, text, language), = sent
    assert phone == "+8613900000001" and language == "zh-CN" and "验证码" in text
    code = text.split("验证码为")[1][:6]
    assert await svc.verify_code(phone, "000000" if code != "000000" else "111111") is None
    assert await svc.verify_code(phone, code) == f"phone:{phone}"
    assert await svc.verify_code(phone, code) is None  # used
    assert await svc.accounts_of(f"phone:{phone}") == {accounts["R1"]}
    # expired
    clocks.advance(31)
    await svc.request_code(phone, "10.0.0.1")
    code = sent[-1][1].split("验证码为")[1][:6]
    clocks.advance(61)
    assert await svc.verify_code(phone, code) is None
    # void after three wrong entries, even for the right code after
    clocks.advance(31)
    await svc.request_code(phone, "10.0.0.2")
    code = sent[-1][1].split("验证码为")[1][:6]
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    for _ in range(3):
        assert await svc.verify_code(phone, wrong) is None
    assert await svc.verify_code(phone, code) is None


async def test_code_requests_are_rate_limited_per_number_and_address(db: Database) -> None:
    await _accounts(db)
    clocks, sent = Clocks(), []
    svc = service(db, clocks, sent)
    phone = "+8613900000004"
    await svc.request_code(phone, "10.0.0.1")
    with pytest.raises(TenantError) as exc:
        await svc.request_code(phone, "10.0.0.1")  # within code_resend_s
    assert exc.value.status == 429 and 0 < exc.value.wait_s <= 30
    for _ in range(2):
        clocks.advance(31)
        await svc.request_code(phone, "10.0.0.1")
    clocks.advance(31)
    with pytest.raises(TenantError) as exc:
        await svc.request_code(phone, "10.0.0.1")  # the fourth in an hour
    assert exc.value.status == 429
    assert len(sent) == 3
    # one address asking for many numbers (registered or not) is limited too, and unknown numbers get nothing
    for i in range(2):
        await svc.request_code(f"+861390000010{i}", "10.0.0.1")
    with pytest.raises(TenantError):
        await svc.request_code("+8613900000200", "10.0.0.1")
    assert len(sent) == 3
    clocks.advance(3600)
    await svc.request_code(phone, "10.0.0.1")
    assert len(sent) == 4
    with pytest.raises(TenantError) as exc:
        await svc.request_code("not a number", "10.0.0.3")
    assert exc.value.field == "phone"


async def test_a_customers_phone_reaches_every_account_of_the_customer(db: Database) -> None:
    accounts = await _accounts(db)
    clocks, sent = Clocks(), []
    svc = service(db, clocks, sent)
    await svc.request_code("+8613900000007", "10.0.0.1")
    code = sent[-1][1].split("code is ")[1][:6]
    subject = await svc.verify_code("+8613900000007", code)
    assert subject == "phone:+8613900000007"
    assert await svc.accounts_of(subject) == {accounts["R2"], accounts["R3"]}
    token, tenant = await svc.sign_in(subject, "code", address="10.0.0.1", user_agent="t")
    assert tenant.account_ids == {accounts["R2"], accounts["R3"]} and tenant.language == "en"
    resolved = await svc.resolve(token)
    assert resolved is not None and resolved.account_ids == tenant.account_ids
    clocks.advance(31 * 60)  # idle longer than session_idle_minutes
    assert await svc.resolve(token) is None
