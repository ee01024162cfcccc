"""The asset registry as a component: imports the configured site file, then loads the registry."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context, Key
from scada.core.runtime import Component
from scada.db.component import DATABASE
from scada.site.assets import AssetRegistry
from scada.site.importer import SiteImportError, apply_site, parse_site_file
from scada.site.profiles import known_profile_names
from scada.users.audit import Actor

__all__ = ["ASSETS", "EMBEDDED", "SiteComponent", "resolve_site_file"]

log = logging.getLogger(__name__)

ASSETS: Key[AssetRegistry] = Key("assets", AssetRegistry)

EMBEDDED = "embedded:"


def resolve_site_file(config: ScadaConfig, value: str) -> Path:
    """A site file path; ``embedded:NAME`` names a file shipped in ``scada/defaults``."""
    if value.startswith(EMBEDDED):
        ref = resources.files("scada.defaults").joinpath(value[len(EMBEDDED):])
        return Path(str(ref))
    return config.path(value)


class SiteComponent(Component):
    """Provides the asset registry (sites, buildings, floors, rooms, meters). The site file of
    ``site.import_file`` is imported first, idempotently: a restart changes nothing."""

    name = "site"
    requires = (CONFIG, DATABASE)
    provides = (ASSETS,)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config, db = ctx[CONFIG], ctx[DATABASE]
        if config.site.import_file:
            path = resolve_site_file(config, config.site.import_file)
            try:
                result = await apply_site(
                    db, parse_site_file(path), Actor.system("startup"),
                    known_links={link.name for link in config.links}, known_profiles=known_profile_names(config),
                )
            except SiteImportError as exc:
                raise SiteImportError([f"site.import_file: {p}" for p in exc.problems]) from None
            if result.changed:
                log.info("site imported", extra={"file": str(path), "result": result.summary()})
        assets = AssetRegistry(db)
        await assets.load()
        ctx[ASSETS] = assets
        yield
