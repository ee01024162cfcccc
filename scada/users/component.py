"""Users, their tokens, the audit log and the login limiter as a component; makes sure an
administrator exists."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.users.audit import Actor, AuditLog
from scada.users.auth import UserStore
from scada.users.logins import LoginReporter
from scada.users.ratelimit import LoginRateLimiter

__all__ = ["AUDIT", "LOGINS", "USERS", "UsersComponent", "login_limiter"]

log = logging.getLogger(__name__)

AUDIT: Key[AuditLog] = Key("audit", AuditLog)
USERS: Key[UserStore] = Key("users", UserStore)
# the one login limiter of the HMI, the API and OPC UA
LOGINS: Key[LoginRateLimiter] = Key("logins", LoginRateLimiter)


def login_limiter(config: ScadaConfig) -> LoginRateLimiter:
    """The limiter the ``[login]`` section describes."""
    c = config.login
    return LoginRateLimiter(
        c.max_failures, c.window_s, max_address_failures=c.max_address_failures, max_user_failures=c.max_user_failures,
        lock_s=c.lock_s, max_lock_s=c.max_lock_s,
    )


class UsersComponent(Component):
    """Provides the user store, the audit log and the login limiter (with its periodic report of
    failures and the ``system:logins.failures`` tag). At start it creates the configured
    administrator when missing (with a generated password when none is configured, announced once)."""

    name = "users"
    requires = (CONFIG, DATABASE)
    optional = (TAGDB,)
    provides = (AUDIT, USERS, LOGINS)

    def __init__(self, *, reset_admin: bool = False, announce: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.reset_admin = reset_admin  # the demo sets (and announces) the admin password each start
        self.announce = announce or (lambda _msg: None)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        db = ctx[DATABASE]
        users = UserStore(db)
        config = ctx[CONFIG]
        await self._ensure_admin(config, users, Actor.system("startup"))
        audit = AuditLog(db)
        limiter = login_limiter(config)
        reporter = LoginReporter(limiter, audit, ctx.get(TAGDB), summary_interval_s=config.login.summary_interval_s)
        self.tasks.spawn(reporter.run, "login-report", restart=Restart.ON_FAILURE)
        ctx[AUDIT] = audit
        ctx[USERS] = users
        ctx[LOGINS] = limiter
        try:
            yield
        finally:
            try:
                await reporter.close()  # what was counted since the last report
            except Exception:
                log.exception("the last report of failed logins could not be written")

    async def _ensure_admin(self, config: ScadaConfig, users: UserStore, actor: Actor) -> None:
        name = config.admin.user
        password = config.admin.password.get(Path(config.base_dir))
        exists = await users.get(name) is not None
        if exists and not self.reset_admin:
            return
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        assert password is not None
        created = await users.ensure_admin(name, password, actor)
        if generated:
            self.announce(
                f"{'Created' if created else 'Reset'} user '{name}' with password: {password}\n"
                f"(set {config.admin.password.describe()} to choose it)"
            )
        elif created:
            self.announce(f"Created user '{name}' with the password from {config.admin.password.describe()}")
