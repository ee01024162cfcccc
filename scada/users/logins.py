"""The report of failed logins: counted in memory by the limiter, told in bulk.

Failed and refused logins are not written one audit row each (a stream of wrong passwords would
fill the disk and contend with billing for the database's write lock). Instead, every
``login.summary_interval_s``, when there were any, one log line and one bounded audit row
(``login.failures``) say how many, for which user names and from which addresses (the ten most
frequent of each). The tag ``system:logins.failures`` carries the failed logins of the last minute,
from which the alarm engine raises ``login_burst`` (``[alarms.classes.login_burst] limit``).
"""

from __future__ import annotations

import asyncio
import logging

from scada.users.audit import Actor, AuditLog
from scada.users.ratelimit import LoginRateLimiter, LoginSummary
from tags import DataType, TagDB, TagMeta, names
from tags.timers import run_every

__all__ = ["LOGIN_FAILURES_TAG", "LoginReporter"]

log = logging.getLogger(__name__)

LOGIN_FAILURES_TAG = names.system_tag("logins", "failures")
PUBLISH_EVERY_S = 5.0


class LoginReporter:
    """Publishes the recent failures to the tag and writes the periodic summary."""

    def __init__(self, limiter: LoginRateLimiter, audit: AuditLog, tagdb: TagDB | None, *, summary_interval_s: float = 60.0) -> None:
        self.limiter = limiter
        self.audit = audit
        self.tagdb = tagdb
        self.summary_interval_s = summary_interval_s
        if tagdb is not None:
            tagdb.register(TagMeta(LOGIN_FAILURES_TAG, DataType.INT, point="failures", description="failed logins in the last minute"))

    def publish(self) -> int:
        """Write the failed logins of the last minute to the tag; returns the count."""
        count = self.limiter.recent_failures(60.0)
        if self.tagdb is not None:
            self.tagdb.write(LOGIN_FAILURES_TAG, count)
        return count

    async def report(self) -> LoginSummary:
        """The summary since the last one, logged and audited when not empty."""
        summary = self.limiter.take_summary()
        if summary:
            log.warning(
                "failed logins",
                extra={"failures": summary.failures, "refused": summary.refused,
                       "users": ",".join(f"{u}:{n}" for u, n in summary.by_user) or "-",
                       "addresses": ",".join(f"{a}:{n}" for a, n in summary.by_address) or "-"},
            )
            await self.audit.write(
                Actor.system("login"), "login.failures", "login", "summary", outcome="denied",
                reason=f"{summary.failures} failed, {summary.refused} refused in the last {self.summary_interval_s:g} s",
                after=summary.as_json(),
            )
        return summary

    async def run(self) -> None:
        """Publish every few seconds, report every ``summary_interval_s``."""
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self.summary_interval_s

        async def step() -> None:
            nonlocal next_report
            self.publish()
            if loop.time() >= next_report:
                next_report = loop.time() + self.summary_interval_s
                await self.report()

        await run_every(min(PUBLISH_EVERY_S, self.summary_interval_s), step, name="logins")

    async def close(self) -> None:
        """At shutdown: what was counted since the last report is reported."""
        await self.report()
