"""A whole server (the real runtime, HMI on port 0) for the alarm end-to-end tests, with its
configuration written to a file so that the command line can share it.

The site is imported into the database beforehand, without ``[[links]]`` in the config: no
poller talks to meters that do not exist, and the tests write the condition tags themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from scada.config import ScadaConfig, load_config
from scada.core.runtime import Runtime
from scada.core.tags import TAGDB
from scada.db.component import open_database
from scada.site.component import ASSETS
from scada.site.importer import apply_site, parse_toml
from scada.users.audit import Actor

from ...harness import running_server
from .site import register_condition_tags, site_toml

__all__ = ["alarm_server", "write_config"]


def write_config(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "scada.toml"
    path.write_text(
        f"""
[site]
name = "Test Site"
timezone = "Asia/Shanghai"

[database]
url = "{db_url}"

[hmi]
port = 0

[admin]
password = {{ env = "SCADA_TEST_ADMIN_PASSWORD" }}

[alarms]
sync_interval_s = 0.2
{extra}
""",
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def alarm_server(config: ScadaConfig | Path, rooms: int = 3) -> AsyncIterator[Runtime]:
    if isinstance(config, Path):
        config = load_config(config)
    db = open_database(config)
    try:
        await db.upgrade()
        await apply_site(db, parse_toml(site_toml(rooms), "<test site>"), Actor.system("test"))
    finally:
        await db.dispose()
    async with running_server(config) as rt:
        register_condition_tags(rt.ctx[TAGDB], rt.ctx[ASSETS])  # what the poller and prepaid engine do
        yield rt
