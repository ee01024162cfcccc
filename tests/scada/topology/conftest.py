"""Fixtures of the topology tests: the site of ``site.py`` in a migrated database (SQLite and
PostgreSQL), its registry and a tag database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from scada.db import Database
from scada.site.assets import AssetRegistry
from scada.site.importer import apply_site, parse_toml
from scada.topology.readings import ManualReadings
from scada.users.audit import Actor
from tags import TagDB

from .site import SITE

TZ = ZoneInfo("Asia/Shanghai")


@dataclass
class SiteDb:
    db: Database
    assets: AssetRegistry
    tagdb: TagDB

    def readings(self, **kw: object) -> ManualReadings:
        return ManualReadings(self.db, self.assets, self.tagdb, tz=TZ, margin=Decimal(1), **kw)  # type: ignore[arg-type]


@pytest.fixture
async def site(db: Database) -> AsyncIterator[SiteDb]:
    await apply_site(db, parse_toml(SITE, "site.toml"), Actor.system("test"))
    assets = AssetRegistry(db)
    await assets.load()
    yield SiteDb(db, assets, TagDB())
