"""Users, their tokens and the audit log as a component; makes sure an administrator exists."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context, Key
from scada.core.runtime import Component
from scada.db.component import DATABASE
from scada.users.audit import Actor, AuditLog
from scada.users.auth import UserStore

__all__ = ["AUDIT", "USERS", "UsersComponent"]

AUDIT: Key[AuditLog] = Key("audit", AuditLog)
USERS: Key[UserStore] = Key("users", UserStore)


class UsersComponent(Component):
    """Provides the user store and the audit log. At start it creates the configured administrator
    when missing (with a generated password when none is configured, announced once)."""

    name = "users"
    requires = (CONFIG, DATABASE)
    provides = (AUDIT, USERS)

    def __init__(self, *, reset_admin: bool = False, announce: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.reset_admin = reset_admin  # the demo sets (and announces) the admin password each start
        self.announce = announce or (lambda _msg: None)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        db = ctx[DATABASE]
        users = UserStore(db)
        await self._ensure_admin(ctx[CONFIG], users, Actor.system("startup"))
        ctx[AUDIT] = AuditLog(db)
        ctx[USERS] = users
        yield

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
