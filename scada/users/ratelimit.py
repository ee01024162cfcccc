"""Login rate limiting for every way in (the HMI's login and the OPC UA server's user tokens):
failed attempts per client address and per user name in a sliding window. Past the limit,
further attempts are refused without checking the password."""

from __future__ import annotations

import time
from collections import defaultdict, deque

__all__ = ["LoginRateLimiter"]


class LoginRateLimiter:
    """``max_failures`` per user name and ``max_address_failures`` (by default the same) per client
    address within ``window_s``: a client behind which many users sit (a gateway, an OPC UA
    aggregator) may be given a larger address allowance."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300.0,
        clock: object = time.monotonic,
        *,
        max_address_failures: int | None = None,
    ) -> None:
        self.max_failures = max_failures
        self.max_address_failures = max_address_failures or max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator,no-any-return]

    def _recent(self, key: str) -> deque[float]:
        q = self._failures[key]
        cutoff = self._now() - self.window_s
        while q and q[0] < cutoff:
            q.popleft()
        if not q:
            del self._failures[key]
            return deque()
        return q

    def retry_after(self, address: str, user: str) -> float:
        """Seconds until another attempt is allowed (0 when allowed now)."""
        wait = 0.0
        for key, limit in ((f"ip:{address}", self.max_address_failures), (f"user:{user}", self.max_failures)):
            q = self._recent(key)
            if len(q) >= limit:
                wait = max(wait, q[0] + self.window_s - self._now())
        return wait

    def failed(self, address: str, user: str) -> None:
        now = self._now()
        self._failures[f"ip:{address}"].append(now)
        self._failures[f"user:{user}"].append(now)

    def succeeded(self, address: str, user: str) -> None:
        self._failures.pop(f"user:{user}", None)
