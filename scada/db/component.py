"""The database as a component: opened from ``[database]``, migrated to the newest schema at start."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context, Key
from scada.core.runtime import Component
from scada.db.engine import Database, async_url

__all__ = ["DATABASE", "DatabaseComponent", "open_database", "with_database"]

DATABASE: Key[Database] = Key("database", Database)

T = TypeVar("T")


def open_database(config: ScadaConfig) -> Database:
    """The configured database (not yet migrated); the password comes from its secret."""
    password = config.database.password.get(Path(config.base_dir)) if config.database.password else None
    url = async_url(config.database.url, password=password, base_dir=Path(config.base_dir))
    return Database(url, pool_size=config.database.pool_size, pool_timeout_s=config.database.pool_timeout_s, echo=config.database.echo)


async def with_database(config: ScadaConfig, fn: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``fn`` on the configured database, migrated first, and close it after (for commands)."""
    db = open_database(config)
    try:
        await db.upgrade()
        return await fn(db)
    finally:
        await db.dispose()


class DatabaseComponent(Component):
    """Opens the database and applies pending migrations (an older release's file upgrades in place)."""

    name = "database"
    requires = (CONFIG,)
    provides = (DATABASE,)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        db = open_database(ctx[CONFIG])
        try:
            await db.upgrade()
            ctx[DATABASE] = db
            yield
        finally:
            await db.dispose()
