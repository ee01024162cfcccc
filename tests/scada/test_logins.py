"""The one login limiter (HMI, API, OPC UA): attempts counted before the password is checked,
limits per address and per user name with doubling waits, no lock-out from an address that never
failed; failed logins counted in memory, reported in bulk (a log line and one audit row), and a
burst alarmed through the tag ``system:logins.failures``; the local ``scada user token``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from scada.alarms.store import AlarmFilter
from scada.db import Database
from scada.users.audit import AuditLog
from scada.users.auth import UserStore
from scada.users.logins import LOGIN_FAILURES_TAG, LoginReporter
from scada.users.ratelimit import LoginRateLimiter
from tags import TagDB

from .alarms.site import build_site, engine_for, site_toml


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def limiter(clock: Clock, **kw: float) -> LoginRateLimiter:
    return LoginRateLimiter(5, 300.0, clock, max_address_failures=20, max_user_failures=50, lock_s=30.0, max_lock_s=900.0, **kw)  # type: ignore[arg-type]


def fail(lim: LoginRateLimiter, address: str, user: str) -> bool:
    """One wrong password; False when the attempt was refused before the check."""
    attempt = lim.attempt(address, user)
    if attempt.refused:
        return False
    attempt.failed()
    return True


def test_parallel_attempts_are_counted_before_the_check() -> None:
    # 20 wrong passwords in parallel: every one starts before the first is checked (scrypt is slow)
    lim = limiter(Clock())
    attempts = [lim.attempt("10.0.0.9", "admin") for _ in range(20)]
    allowed = [a for a in attempts if not a.refused]
    assert len(allowed) == 5 and all(a.wait >= 1 for a in attempts if a.refused)
    for a in allowed:
        a.failed()
    assert lim.attempt("10.0.0.9", "admin").refused


def test_waits_double_and_a_success_clears_the_name() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(5):
        assert fail(lim, "10.0.0.9", "op")
    first = lim.attempt("10.0.0.9", "op")
    assert first.refused and first.wait == pytest.approx(30)
    clock.t += 30.5
    assert fail(lim, "10.0.0.9", "op")  # one try after the wait, wrong again: the wait doubles
    assert lim.attempt("10.0.0.9", "op").wait == pytest.approx(60)
    clock.t += 60.5
    assert fail(lim, "10.0.0.9", "op")
    assert lim.attempt("10.0.0.9", "op").wait == pytest.approx(120)
    clock.t += 120.5
    ok = lim.attempt("10.0.0.9", "op")
    assert not ok.refused
    ok.succeeded()
    assert not lim.attempt("10.0.0.9", "op").refused


def test_waits_are_capped_and_failures_forgotten() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(20):
        fail(lim, "10.0.0.9", "op")
        clock.t += 1000
    assert lim.retry_after("10.0.0.9", "op") <= 900
    clock.t += 900 + 301
    assert lim.retry_after("10.0.0.9", "op") == 0 and not lim.attempt("10.0.0.9", "op").refused


def test_nobody_locks_a_user_out_of_a_clean_address() -> None:
    # today: five failures from anywhere locked admin out for everyone, renewably
    clock = Clock()
    lim = limiter(clock)
    for i in range(200):  # many addresses, each failing for admin until refused
        while fail(lim, f"203.0.113.{i}", "admin"):
            pass
    honest = lim.attempt("192.0.2.7", "admin")  # the operator's own desk never failed
    assert not honest.refused
    honest.succeeded()
    # the attackers' addresses stay refused
    assert lim.attempt("203.0.113.5", "admin").refused


def test_one_address_is_limited_over_all_names_and_a_failed_address_by_the_user_limit() -> None:
    clock = Clock()
    lim = limiter(clock)
    for i in range(20):
        assert fail(lim, "198.51.100.1", f"user{i}")
    assert lim.attempt("198.51.100.1", "somebody-else").refused
    # a name guessed from many addresses (each below its own limits) slows down where it failed
    for i in range(50):
        assert fail(lim, f"198.51.100.{10 + i}", "cashier")
    assert lim.attempt("198.51.100.10", "cashier").refused  # failed there before
    assert not lim.attempt("198.51.100.200", "cashier").refused  # never failed there


def test_summary_and_recent_failures() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(7):
        fail(lim, "10.0.0.1", "admin")
    fail(lim, "10.0.0.2", "bob")
    assert lim.recent_failures(60) == 6
    clock.t += 61
    assert lim.recent_failures(60) == 0
    summary = lim.take_summary()
    assert (summary.failures, summary.refused) == (6, 2)
    assert summary.by_user == [("admin", 5), ("bob", 1)] and summary.by_address[0] == ("10.0.0.1", 5)
    assert not lim.take_summary()


def test_the_limiter_stays_bounded() -> None:
    clock = Clock()
    lim = limiter(clock)
    from scada.users import ratelimit

    for i in range(ratelimit.MAX_KEYS // 3 + 10):
        fail(lim, f"a{i}", f"u{i}")
    assert len(lim._keys) <= ratelimit.MAX_KEYS


def test_a_full_limiter_does_not_scan_every_key_for_each_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full of live keys (a spray of names from many addresses), the limiter makes room for many
    new keys at once: a full scan per new key cost tens of milliseconds of the event loop each."""
    from scada.users import ratelimit

    monkeypatch.setattr(ratelimit, "MAX_KEYS", 3_000)
    clock = Clock()
    lim = limiter(clock)
    for i in range(1_000):  # 3 keys each (the pair, the address, the name): full
        fail(lim, f"a{i}", f"u{i}")
    checks = 0
    expired = lim._expired

    def counted(k: Any, now: float) -> bool:
        nonlocal checks
        checks += 1
        return expired(k, now)

    monkeypatch.setattr(lim, "_expired", counted)
    for i in range(1_000, 2_000):
        fail(lim, f"a{i}", f"u{i}")
    assert len(lim._keys) <= ratelimit.MAX_KEYS
    # a scan per 300 new keys (a tenth of the room), not one per key (3,000 × 3,000)
    assert checks <= 12 * ratelimit.MAX_KEYS, checks
    # the newest keys are kept: the last address is still counted
    assert any("a1999" in key for key in lim._keys)


async def test_failed_logins_write_one_summary_row_and_raise_a_burst_alarm(db: Database) -> None:
    audit = AuditLog(db)
    clock = Clock()
    lim = limiter(clock)
    tagdb = TagDB()
    reporter = LoginReporter(lim, audit, tagdb, summary_interval_s=60)
    for i in range(40):
        fail(lim, f"10.0.{i}.1", "admin" + "x" * 500)  # a long name is kept short
    assert reporter.publish() == 40 and tagdb.get(LOGIN_FAILURES_TAG).value == 40  # type: ignore[union-attr]
    await reporter.report()
    await reporter.report()  # nothing new: nothing written
    [row] = await audit.query(action="login.failures")
    assert row.outcome == "denied" and row.after["failures"] == 40 and len(row.after["users"]) == 1
    assert len(repr(row.after)) < 2000

    # the alarm subsystem's system alarms: the tag over [alarms.classes.login_burst] limit (30/min)
    assets = await build_site(db, site_toml(1))
    async with engine_for(db, assets) as engine:
        engine.tagdb.register(tagdb.meta(LOGIN_FAILURES_TAG))
        engine.tagdb.write(LOGIN_FAILURES_TAG, 10)
        await engine.settle()
        assert engine.active(AlarmFilter(classes=frozenset({"login_burst"}))) == []
        engine.tagdb.write(LOGIN_FAILURES_TAG, 40)
        await engine.settle()
        [alarm] = engine.active(AlarmFilter(classes=frozenset({"login_burst"})))
        assert alarm.object_type == "system" and alarm.detail == "40 failed logins in the last minute (limit 30)"


async def test_the_local_cli_issues_a_token_whatever_the_limiter_says(tmp_path: Path) -> None:
    """``scada user token NAME``: the way in that no login limit can close (a real process)."""
    from scada.db import Database

    from .test_cli import run_cli

    cfg = tmp_path / "scada.toml"
    cfg.write_text('[site]\nname = "X"\n', encoding="utf-8")
    r = await asyncio.to_thread(run_cli, "user", "add", "boss", "--role", "admin", "--config", str(cfg), cwd=tmp_path, env={"SCADA_PASSWORD": "long-enough-pw"})
    assert r.returncode == 0, r.stderr
    r = await asyncio.to_thread(run_cli, "user", "token", "boss", "--ttl-hours", "2", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    r = await asyncio.to_thread(run_cli, "user", "token", "nobody", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode != 0 and "no user 'nobody'" in r.stderr
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'scada.db'}")
    try:
        user = await UserStore(db).authenticate_token(token)
        assert user is not None and user.name == "boss"
        [issued] = await AuditLog(db).query(action="token.issue")
        assert issued.source == "cli" and issued.target_id == "boss" and issued.after == {"name": "cli"}
    finally:
        await db.dispose()
