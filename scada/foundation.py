"""The foundation components: the database (with users, audit and the asset registry) and
the tag database. Their context keys are declared here."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from tags import TagDB

from .assets import AssetRegistry
from .audit import Actor, AuditLog
from .auth import UserStore
from .config import ScadaConfig
from .context import Context, Key
from .db import Database, async_url
from .runtime import Component
from .siteimport import SiteImportError, apply_site, parse_site_file

__all__ = [
    "ASSETS",
    "AUDIT",
    "CONFIG",
    "DATABASE",
    "DatabaseComponent",
    "TAGDB",
    "TagComponent",
    "USERS",
    "open_database",
    "known_profile_names",
    "resolve_site_file",
]

log = logging.getLogger(__name__)

CONFIG: Key[ScadaConfig] = Key("config", ScadaConfig)
DATABASE: Key[Database] = Key("database", Database)
AUDIT: Key[AuditLog] = Key("audit", AuditLog)
USERS: Key[UserStore] = Key("users", UserStore)
ASSETS: Key[AssetRegistry] = Key("assets", AssetRegistry)
TAGDB: Key[TagDB] = Key("tagdb", TagDB)

EMBEDDED = "embedded:"


def open_database(config: ScadaConfig) -> Database:
    password = config.database.password.get(Path(config.base_dir)) if config.database.password else None
    url = async_url(config.database.url, password=password, base_dir=Path(config.base_dir))
    return Database(url, pool_size=config.database.pool_size, echo=config.database.echo)


def known_profile_names(config: ScadaConfig) -> set[str]:
    """Names of the device profiles meters may use (shipped and ``modbus.profiles_dir``)."""
    from .polling import load_profiles  # the poller owns profile loading

    return set(load_profiles(config).names())


def resolve_site_file(config: ScadaConfig, value: str) -> Path:
    """A site file path; ``embedded:NAME`` names a file shipped in ``scada/defaults``."""
    if value.startswith(EMBEDDED):
        ref = resources.files("scada.defaults").joinpath(value[len(EMBEDDED):])
        return Path(str(ref))
    return config.path(value)


class DatabaseComponent(Component):
    """Opens the database, applies migrations, imports the configured site, loads the registry,
    and makes sure an administrator exists."""

    name = "database"
    requires = (CONFIG,)
    provides = (DATABASE, AUDIT, USERS, ASSETS)

    def __init__(self, *, reset_admin: bool = False, announce: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.reset_admin = reset_admin  # the demo sets (and announces) the admin password each start
        self.announce = announce or (lambda _msg: None)
        self.db: Database | None = None

    async def start(self, ctx: Context) -> None:
        config = ctx[CONFIG]
        self.db = db = open_database(config)
        await db.upgrade()
        actor = Actor.system("startup")
        if config.site.import_file:
            path = resolve_site_file(config, config.site.import_file)
            try:
                result = await apply_site(
                    db, parse_site_file(path), actor,
                    known_links={link.name for link in config.links}, known_profiles=known_profile_names(config),
                )
            except SiteImportError as exc:
                raise SiteImportError([f"site.import_file: {p}" for p in exc.problems]) from None
            if result.changed:
                log.info("site imported", extra={"file": str(path), "result": result.summary()})
        users = UserStore(db)
        await self._ensure_admin(config, users, actor)
        assets = AssetRegistry(db)
        await assets.load()
        ctx[DATABASE] = db
        ctx[AUDIT] = AuditLog(db)
        ctx[USERS] = users
        ctx[ASSETS] = assets

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

    async def stop(self) -> None:
        if self.db is not None:
            await self.db.dispose()


class TagComponent(Component):
    name = "tags"
    provides = (TAGDB,)

    async def start(self, ctx: Context) -> None:
        ctx[TAGDB] = TagDB()
