"""The approval service as a runtime component (``ctx[APPROVALS]``), with its expiry sweep."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator

from scada.config import CONFIG
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.db.component import DATABASE
from tags.timers import run_every

from .service import ApprovalService

__all__ = ["APPROVALS", "ApprovalsComponent"]

APPROVALS: Key[ApprovalService] = Key("approvals", ApprovalService)


class ApprovalsComponent(Component):
    """Provides the approval service; features register their executors on it at their start
    (and resume what a stop interrupted). Expired requests are swept periodically."""

    name = "approvals"
    requires = (CONFIG, DATABASE)
    provides = (APPROVALS,)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        cfg = ctx[CONFIG].approvals
        service = ApprovalService(ctx[DATABASE], expire_after=dt.timedelta(hours=cfg.expire_after_hours))
        self.tasks.spawn(
            lambda: run_every(cfg.sweep_interval_s, service.expire_due, name="approvals-expiry"),
            "expiry", Restart.ON_FAILURE,
        )
        ctx[APPROVALS] = service
        yield
