"""One login limiter for every way in (the HMI's login form, the API's token endpoint and the
OPC UA server's user tokens).

- **Counted before the check**: :meth:`LoginRateLimiter.attempt` registers the attempt (as a
  failure until it is known to have succeeded) before the password is verified, so parallel
  attempts cannot slip past the limit while the slow hash runs.
- **Per source and per user, with backoff**: past ``max_failures`` failures of one user name from
  one address, or ``max_address_failures`` from one address whatever the names, the address
  waits ``lock_s``, doubled by each further failure up to ``max_lock_s``. Failures are forgotten
  after ``window_s`` without one (once the wait is over).
- **Never a lock-out from a clean address**: the per-user limit over all addresses
  (``max_user_failures``, against guessing from many addresses) applies only to addresses that
  have themselves failed. An address that never failed is never refused, so nobody can lock
  ``admin`` out by failing on purpose; and the local command line (``scada user token``)
  never goes through here.
- **Counted in memory, not written**: failures are not audited one row each; :meth:`take_summary`
  hands the counts since the last summary to a periodic report (a log line and one audit row,
  see ``scada.users.component``), and :meth:`recent_failures` feeds the burst alarm.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoginAttempt", "LoginRateLimiter", "LoginSummary"]

MAX_KEYS = 100_000  # tracked addresses and names; beyond it the oldest are dropped


@dataclass
class _Key:
    limit: int  # failures before the waits begin
    failures: int = 0
    pending: int = 0  # attempts being checked right now
    last: float = 0.0  # time of the last failure


@dataclass(frozen=True)
class LoginSummary:
    """Failed and refused logins since the previous summary."""

    failures: int
    refused: int
    by_user: list[tuple[str, int]] = field(default_factory=list)  # the most frequent first
    by_address: list[tuple[str, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.failures or self.refused)

    def as_json(self) -> dict[str, object]:
        return {
            "failures": self.failures, "refused": self.refused,
            "users": dict(self.by_user), "addresses": dict(self.by_address),
        }


class LoginAttempt:
    """One attempt, counted from :meth:`LoginRateLimiter.attempt` on. ``wait`` > 0: refused
    (retry after that many seconds) and nothing is to be checked; else check the password and
    report the result with :meth:`succeeded` or :meth:`failed` (or leave it as a failure)."""

    __slots__ = ("_done", "_keys", "_limiter", "address", "user", "wait")

    def __init__(self, limiter: LoginRateLimiter, address: str, user: str, wait: float, keys: list[_Key]) -> None:
        self._limiter = limiter
        self._keys = keys
        self._done = wait > 0
        self.address = address
        self.user = user
        self.wait = wait

    @property
    def refused(self) -> bool:
        return self.wait > 0

    def succeeded(self) -> None:
        if not self._done:
            self._done = True
            self._limiter._succeeded(self)

    def failed(self) -> None:
        if not self._done:
            self._done = True
            self._limiter._failed(self)

    def __enter__(self) -> LoginAttempt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.failed()  # an attempt not reported as a success counts as a failure


class LoginRateLimiter:
    """See the module docstring. ``clock`` is monotonic seconds (a test drives its own)."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_address_failures: int = 20,
        max_user_failures: int = 50,
        lock_s: float = 30.0,
        max_lock_s: float = 900.0,
    ) -> None:
        self.max_failures = max_failures
        self.max_address_failures = max_address_failures
        self.max_user_failures = max_user_failures
        self.window_s = window_s
        self.lock_s = lock_s
        self.max_lock_s = max_lock_s
        self._clock = clock
        self._keys: dict[tuple[str, ...], _Key] = {}
        self._recent: deque[float] = deque(maxlen=10_000)
        self._failures_by_user: Counter[str] = Counter()
        self._failures_by_address: Counter[str] = Counter()
        self._refused = 0

    # -- the attempt ------------------------------------------------------------------------------
    def attempt(self, address: str, user: str) -> LoginAttempt:
        """Count an attempt of ``user`` from ``address`` before its password is checked."""
        now = self._clock()
        user = user[:64]
        address = address[:64]
        pair = self._key(("pair", user, address), self.max_failures, now)
        addr = self._key(("addr", address), self.max_address_failures, now)
        per_user = self._key(("user", user), self.max_user_failures, now)
        checked = [pair, addr]
        if pair.failures or addr.failures:  # the user-wide limit never refuses a clean address
            checked.append(per_user)
        wait = max(self._wait(k, now) for k in checked)
        if wait > 0:
            self._refused += 1
            return LoginAttempt(self, address, user, wait, [])
        keys = [pair, addr, per_user]
        for k in keys:
            k.pending += 1
        return LoginAttempt(self, address, user, 0.0, keys)

    def _wait(self, k: _Key, now: float) -> float:
        if k.failures + k.pending < k.limit:
            return 0.0
        remaining = k.last + self._lock(k) - now
        if k.pending:  # at the limit, one attempt at a time: the others wait for its outcome
            return max(remaining, 1.0)
        return max(remaining, 0.0)

    def _lock(self, k: _Key) -> float:
        """The wait after ``k``'s last failure: none below its limit, then doubling."""
        if k.failures < k.limit:
            return 0.0
        return min(self.lock_s * 2.0 ** min(k.failures - k.limit, 30), self.max_lock_s)

    def _expired(self, k: _Key, now: float) -> bool:
        return k.pending == 0 and now > k.last + self._lock(k) + self.window_s

    def _succeeded(self, attempt: LoginAttempt) -> None:
        pair, _addr, per_user = attempt._keys
        for k in attempt._keys:
            k.pending -= 1
        # the user proved who they are from there: their name is clean again; the address keeps
        # what other names failed from it
        pair.failures = 0
        per_user.failures = 0

    def _failed(self, attempt: LoginAttempt) -> None:
        now = self._clock()
        for k in attempt._keys:
            k.pending -= 1
            k.failures += 1
            k.last = now
        self._recent.append(now)
        self._failures_by_user[attempt.user] += 1
        self._failures_by_address[attempt.address] += 1

    def _key(self, name: tuple[str, ...], limit: int, now: float) -> _Key:
        k = self._keys.get(name)
        if k is not None and k.failures and self._expired(k, now):
            k.failures = 0  # quiet for a window after the wait: forgotten
        if k is None:
            if len(self._keys) >= MAX_KEYS:
                self._prune(now)
            k = self._keys[name] = _Key(limit)
        return k

    def _prune(self, now: float) -> None:
        for name in [n for n, k in self._keys.items() if self._expired(k, now)]:
            del self._keys[name]
        # still (nearly) full of live keys: the oldest go, a tenth of the room at once, so that the
        # next scan is thousands of new keys away; one at a time, a spray of names or addresses
        # paid a scan of every key on each attempt (tens of milliseconds of the event loop)
        excess = len(self._keys) - (MAX_KEYS - MAX_KEYS // 10)
        for name in list(itertools.islice(self._keys, max(excess, 0))):
            del self._keys[name]

    # -- what the summary and the alarm read -----------------------------------------------------
    def recent_failures(self, seconds: float = 60.0) -> int:
        """Failed logins in the last ``seconds``."""
        cutoff = self._clock() - seconds
        recent = self._recent
        while recent and recent[0] < cutoff:
            recent.popleft()
        return len(recent)

    def take_summary(self, top: int = 10) -> LoginSummary:
        """The failures and refusals since the last call (at most ``top`` names and addresses)."""
        summary = LoginSummary(
            sum(self._failures_by_user.values()), self._refused,
            self._failures_by_user.most_common(top), self._failures_by_address.most_common(top),
        )
        self._failures_by_user.clear()
        self._failures_by_address.clear()
        self._refused = 0
        return summary

    def retry_after(self, address: str, user: str) -> float:
        """Seconds until ``user`` may try again from ``address`` (0: now); counts nothing."""
        now = self._clock()
        pair = self._keys.get(("pair", user[:64], address[:64]))
        addr = self._keys.get(("addr", address[:64]))
        per_user = self._keys.get(("user", user[:64]))
        checked = [k for k in (pair, addr) if k is not None]
        if per_user is not None and any(k.failures for k in checked):
            checked.append(per_user)
        return max((self._wait(k, now) for k in checked), default=0.0)
