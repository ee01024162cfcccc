"""Tenants' PINs, one-time codes, sessions, and the accounts a tenant may see.

- **PIN**: set when an account is opened (or later by a cashier), ``tenants.pin_digits`` digits,
  not a trivial one (all the same digit, a run up or down); kept as a scrypt hash. Signing in
  takes the account number and the PIN; an unknown account costs the same time as a wrong PIN.
- **One-time codes**: a tenant gives the phone number registered on their account (the account's
  contact, or their customer's) and gets a code by SMS, through the notification channel
  ``tenants.code_channel``. A code expires after ``code_ttl_s``, is used at most once, and is void
  after ``code_max_attempts`` wrong entries; codes to a number are rate-limited (one per
  ``code_resend_s``, ``code_sends_per_hour``), and so are the requests of one address. Whether a
  number is registered is never told: the answer is the same either way.
- **Sessions**: a random cookie token (only its SHA-256 is stored) with its CSRF token, idle and
  absolute expiry. The accounts a session may see are worked out again on every request: an
  account closed, or a phone number changed, ends what it gave.
- The rate limit of the sign-ins themselves is the server's one login limiter
  (:class:`scada.users.ratelimit.LoginRateLimiter`), applied by the portal before this checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from scada.billing.models import AccountBilling, Customer
from scada.core.inputs import InputError, e164, parse_id
from scada.db import Database
from scada.prepaid.models import Account
from scada.tenants.config import TenantsConfig
from scada.tenants.models import TenantCode, TenantPin, TenantSession
from scada.users.audit import Actor, AuditLog
from scada.users.auth import hash_password, verify_password
from tags import utcnow

__all__ = ["CodeSent", "SendSms", "Tenant", "TenantError", "TenantService"]

log = logging.getLogger(__name__)

# sends one SMS: (phone number, text, language); raises when the gateway refuses
SendSms = Callable[[str, str, str], Awaitable[None]]

# the session's last_seen is refreshed at most this often
_TOUCH_EVERY = dt.timedelta(seconds=60)

CODE_TEXT = {
    "en": "{site}: your sign-in code is {code}. It expires in {minutes} minutes. Do not tell it to anyone.",
    "zh-CN": "【{site}】您的登录验证码为{code}，{minutes}分钟内有效，请勿告诉他人。",
}


class TenantError(Exception):
    """A refused tenant request: its message, HTTP status, field and (rate limits) how long to wait."""

    def __init__(self, message: str, *, status: int = 422, field: str | None = None, wait_s: float = 0.0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
        self.wait_s = wait_s


@dataclass(frozen=True, slots=True)
class Tenant:
    """A signed-in tenant (a live session)."""

    session_id: str
    kind: str  # pin | code
    subject: str  # account:<id> | phone:<E.164>
    account_ids: frozenset[int]
    csrf_token: str
    language: str

    @property
    def actor(self) -> Actor:
        return Actor(f"tenant:{self.subject}"[:64], "hmi", "tenant")

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest((presented or "").encode(), self.csrf_token.encode())

    def owns(self, account_id: int) -> bool:
        return account_id in self.account_ids


@dataclass(frozen=True, slots=True)
class CodeSent:
    """What a code request answers (the same whether the number is registered or not)."""

    phone: str
    expires_in_s: float


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@functools.cache
def _dummy_pin_hash() -> str:
    return hash_password(secrets.token_urlsafe(12))


def trivial_pin(pin: str) -> bool:
    """All one digit, or a run up or down (123456, 987654): the first PINs anyone tries."""
    digits = [int(c) for c in pin]
    steps = {b - a for a, b in zip(digits, digits[1:], strict=False)}
    return len(set(digits)) == 1 or steps in ({1}, {-1})


class _Window:
    """Events in a sliding window (in memory: a restart forgets them, which only lets a few more
    codes go out)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.events: dict[str, deque[float]] = {}

    def count(self, key: str, window_s: float) -> tuple[int, float]:
        """(events in the window, the oldest of them) of ``key``."""
        now = self.clock()
        q = self.events.get(key)
        if q is None:
            return 0, now
        while q and q[0] <= now - window_s:
            q.popleft()
        if not q:
            del self.events[key]
            return 0, now
        return len(q), q[0]

    def last(self, key: str) -> float | None:
        q = self.events.get(key)
        return q[-1] if q else None

    def add(self, key: str) -> None:
        if len(self.events) > 100_000:  # bounded: the keys seen first go first
            for k in list(self.events)[:1000]:
                del self.events[k]
        self.events.setdefault(key, deque()).append(self.clock())


class TenantService:
    """Tenants' PINs, one-time codes, sessions and the accounts a tenant may see."""

    def __init__(
        self,
        config: TenantsConfig,
        db: Database,
        *,
        site_name: str,
        send_sms: SendSms | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.db = db
        self.site_name = site_name
        self.send_sms = send_sms
        self.clock = clock
        self._sends = _Window(monotonic)
        self.idle = dt.timedelta(minutes=config.session_idle_minutes)
        self.max_age = dt.timedelta(hours=config.session_max_hours)

    # -- PINs ----------------------------------------------------------------------------------------
    def check_pin(self, pin: str, field: str = "pin") -> str:
        n = self.config.pin_digits
        if not isinstance(pin, str) or not re.fullmatch(rf"[0-9]{{{n}}}", pin, re.ASCII):
            raise TenantError(f"{field}: exactly {n} digits", field=field)
        if trivial_pin(pin):
            raise TenantError(f"{field}: too easy to guess (one digit repeated, or a run like 123456)", field=field)
        return pin

    async def set_pin(self, account_id: int, pin: str, actor: Actor) -> None:
        """Set (or replace) the account's PIN; audited without the PIN."""
        self.check_pin(pin)
        digest = await asyncio.to_thread(hash_password, pin)
        now = self.clock()
        async with self.db.transaction() as s:
            account = await s.get(Account, account_id)
            if account is None or account.state != "open":
                raise TenantError(f"account {account_id} is not open", status=404)
            row = await s.get(TenantPin, account_id, with_for_update=True)
            if row is None:
                s.add(TenantPin(account_id=account_id, pin_hash=digest, set_at=now, set_by=actor.name[:64]))
            else:
                row.pin_hash, row.set_at, row.set_by = digest, now, actor.name[:64]
            AuditLog.record(s, actor, "tenant.pin", "account", str(account_id), after={"room": account.room_id, "replaced": row is not None})
        log.info("tenant PIN set", extra={"account": account_id})

    async def has_pin(self, account_id: int) -> bool:
        async with self.db.reads() as s:
            return await s.get(TenantPin, account_id) is not None

    async def authenticate_pin(self, account_text: str, pin: str) -> str | None:
        """The subject (``account:<id>``) when the account is open and the PIN is its own."""
        try:
            account_id = parse_id(account_text.strip(), "account")
        except InputError:
            account_id = None
        stored = None
        if account_id is not None and re.fullmatch(r"[0-9]{4,12}", pin or "", re.ASCII):
            async with self.db.reads() as s:
                row = (await s.execute(select(TenantPin.pin_hash).join(Account, Account.id == TenantPin.account_id)
                                       .where(TenantPin.account_id == account_id, Account.state == "open"))).first()
            stored = row[0] if row is not None else None
        # an unknown account or a malformed PIN costs what a wrong PIN costs
        against = stored if stored is not None else await asyncio.to_thread(_dummy_pin_hash)
        ok = await asyncio.to_thread(verify_password, pin or "-", against)
        return f"account:{account_id}" if ok and stored is not None else None

    # -- one-time codes ------------------------------------------------------------------------------
    @property
    def codes_available(self) -> bool:
        return self.send_sms is not None

    def phone(self, text: str) -> str:
        try:
            return e164(text)
        except InputError as exc:
            raise TenantError(f"phone: {exc}", field="phone") from None

    def _code_hash(self, code: str, salt: str) -> str:
        return hmac.new(salt.encode(), code.encode(), hashlib.sha256).hexdigest()

    async def request_code(self, phone_text: str, address: str) -> CodeSent:
        """Send a one-time code to a registered number. Refused (429) when the number or the
        address asked too often; the same answer whether or not the number is registered."""
        cfg = self.config
        if self.send_sms is None:
            raise TenantError("sign-in by SMS code is not available here", status=503)
        phone = self.phone(phone_text)
        last = self._sends.last(f"phone:{phone}")
        now_m = self._sends.clock()
        if last is not None and now_m - last < cfg.code_resend_s:
            wait = cfg.code_resend_s - (now_m - last)
            raise TenantError(f"a code was sent to this number just now: wait {wait:.0f} s", status=429, field="phone", wait_s=wait)
        for key, limit in ((f"phone:{phone}", cfg.code_sends_per_hour), (f"addr:{address[:64]}", cfg.code_sends_per_address_per_hour)):
            count, oldest = self._sends.count(key, 3600)
            if count >= limit:
                wait = oldest + 3600 - now_m
                raise TenantError(f"too many codes asked for: wait {wait / 60:.0f} min", status=429, field="phone", wait_s=wait)
        self._sends.add(f"phone:{phone}")
        self._sends.add(f"addr:{address[:64]}")
        accounts = await self._phone_accounts(phone)
        sent = CodeSent(phone, cfg.code_ttl_s)
        if not accounts:
            log.info("sign-in code asked for an unknown number", extra={"phone": _mask(phone), "address": address[:64]})
            return sent
        code = f"{secrets.randbelow(10 ** cfg.code_digits):0{cfg.code_digits}d}"
        salt = secrets.token_hex(8)
        now = self.clock()
        async with self.db.transaction() as s:
            s.add(TenantCode(phone=phone, code_hash=self._code_hash(code, salt), salt=salt, created_at=now,
                             expires_at=now + dt.timedelta(seconds=cfg.code_ttl_s), used_at=None, attempts=0, address=address[:64]))
            language = await s.scalar(select(Account.language).where(Account.id == min(accounts)))
        language = language if language in CODE_TEXT else "en"
        text = CODE_TEXT[language].format(site=self.site_name, code=code, minutes=max(1, round(cfg.code_ttl_s / 60)))
        try:
            await self.send_sms(phone, text, language)
        except Exception as exc:
            log.warning("sign-in code could not be sent", extra={"phone": _mask(phone), "error": str(exc)[:200]})
            raise TenantError("the code could not be sent: try again later", status=502) from None
        log.info("sign-in code sent", extra={"phone": _mask(phone)})
        return sent

    async def verify_code(self, phone_text: str, code: str) -> str | None:
        """The subject (``phone:<number>``) when ``code`` is the number's live code (then used up)."""
        phone = self.phone(phone_text)
        if not re.fullmatch(rf"[0-9]{{{self.config.code_digits}}}", code or "", re.ASCII):
            return None
        now = self.clock()
        async with self.db.transaction() as s:
            row = await s.scalar(
                select(TenantCode).where(TenantCode.phone == phone, TenantCode.used_at.is_(None), TenantCode.expires_at > now,
                                         TenantCode.attempts < self.config.code_max_attempts)
                .order_by(TenantCode.id.desc()).limit(1).with_for_update()
            )
            if row is None:
                return None
            if not hmac.compare_digest(row.code_hash, self._code_hash(code, row.salt)):
                row.attempts += 1
                return None
            used = await s.execute(update(TenantCode).where(TenantCode.id == row.id, TenantCode.used_at.is_(None)).values(used_at=now))
            if (used.rowcount or 0) != 1:  # type: ignore[attr-defined]
                return None
        if not await self._phone_accounts(phone):
            return None
        return f"phone:{phone}"

    # -- which accounts ------------------------------------------------------------------------------
    async def _phone_accounts(self, phone: str) -> frozenset[int]:
        async with self.db.reads() as s:
            own = set((await s.scalars(select(Account.id).where(Account.state == "open", Account.contact_phone == phone))).all())
            customers = (await s.execute(select(Customer.id, Customer.phone).where(Customer.phone.is_not(None)))).all()
            matching = [cid for cid, p in customers if _same_phone(p, phone)]
            if matching:
                own |= set((await s.scalars(
                    select(Account.id).join(AccountBilling, AccountBilling.account_id == Account.id)
                    .where(Account.state == "open", AccountBilling.customer_id.in_(matching)))).all())
        return frozenset(own)

    async def accounts_of(self, subject: str) -> frozenset[int]:
        """The open accounts ``subject`` may see (none: the sign-in no longer holds)."""
        kind, _, value = subject.partition(":")
        if kind == "account":
            account_id = int(value)
            async with self.db.reads() as s:
                state = await s.scalar(select(Account.state).where(Account.id == account_id))
            return frozenset({account_id}) if state == "open" else frozenset()
        if kind == "phone":
            return await self._phone_accounts(value)
        return frozenset()

    async def language_of(self, account_ids: frozenset[int]) -> str:
        if not account_ids:
            return "en"
        async with self.db.reads() as s:
            language = await s.scalar(select(Account.language).where(Account.id == min(account_ids)))
        return language or "en"

    # -- sessions ------------------------------------------------------------------------------------
    async def sign_in(self, subject: str, kind: str, *, address: str, user_agent: str, language: str | None = None) -> tuple[str, Tenant]:
        """A new session for ``subject``: the cookie token (shown once) and the tenant."""
        accounts = await self.accounts_of(subject)
        if not accounts:
            raise TenantError("no open account", status=401)
        language = language or await self.language_of(accounts)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        row = TenantSession(id=_hash(token), kind=kind, subject=subject, csrf_token=secrets.token_urlsafe(32), language=language,
                            created_at=now, last_seen_at=now, expires_at=now + self.max_age, revoked_at=None, address=address[:64],
                            user_agent=user_agent[:200])
        tenant = Tenant(row.id, kind, subject, accounts, row.csrf_token, language)
        async with self.db.transaction() as s:
            s.add(row)
            AuditLog.record(s, tenant.actor, "tenant.login", "tenant", subject, after={"kind": kind, "address": address[:64],
                                                                                      "accounts": sorted(accounts)})
        log.info("tenant signed in", extra={"tenant": _masked_subject(subject), "kind": kind})
        return token, tenant

    async def resolve(self, token: str) -> Tenant | None:
        """The live session of a cookie token, with the accounts it may see now; else None."""
        if not token or len(token) > 128:
            return None
        sid = _hash(token)
        now = self.clock()
        async with self.db.reads() as s:
            row = await s.get(TenantSession, sid)
        if row is None or row.revoked_at is not None or row.expires_at <= now or row.last_seen_at + self.idle <= now:
            return None
        accounts = await self.accounts_of(row.subject)
        if not accounts:
            return None
        if now - row.last_seen_at >= _TOUCH_EVERY:
            async with self.db.transaction() as s:
                await s.execute(update(TenantSession).where(TenantSession.id == sid).values(last_seen_at=now))
        return Tenant(row.id, row.kind, row.subject, accounts, row.csrf_token, row.language)

    async def sign_out(self, tenant: Tenant) -> None:
        async with self.db.transaction() as s:
            await s.execute(update(TenantSession).where(TenantSession.id == tenant.session_id).values(revoked_at=self.clock()))
            AuditLog.record(s, tenant.actor, "tenant.logout", "tenant", tenant.subject)

    async def set_language(self, tenant: Tenant, language: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(update(TenantSession).where(TenantSession.id == tenant.session_id).values(language=language))


def _same_phone(stored: str | None, phone: str) -> bool:
    try:
        return stored is not None and e164(stored) == phone
    except InputError:
        return False


def _mask(phone: str) -> str:
    """A phone number for logs: its country code and last digits only."""
    return phone[:3] + "…" + phone[-2:] if len(phone) > 6 else "…"


def _masked_subject(subject: str) -> str:
    kind, _, value = subject.partition(":")
    return f"phone:{_mask(value)}" if kind == "phone" else subject
