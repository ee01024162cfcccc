"""The site file's topology keys: ``parent`` (effective-dated), ``manual``, ``role = "virtual"``
with a ``formula``; every mistake named with its place and key, nothing imported then."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from scada.db import Database
from scada.site.assets import AssetRegistry
from scada.site.importer import SiteImportError, apply_site, parse_csv, parse_toml
from scada.site.models import MeterParent
from scada.site.tree import ALWAYS
from scada.users.audit import Actor

from .site import SITE

ACTOR = Actor.system("test")


async def test_import_builds_the_tree_and_reimport_changes_nothing(db: Database) -> None:
    result = await apply_site(db, parse_toml(SITE, "site.toml"), ACTOR)
    assert result.created["parent"] == 8
    registry = AssetRegistry(db)
    await registry.load()
    snap = registry.snapshot
    u, v = snap.meters["U"], snap.meters["V"]
    assert (u.role, u.manual, u.polled, u.link, u.profile, u.unit_id) == ("utility", True, False, "", "", 0)
    assert (v.role, v.formula, v.polled) == ("virtual", "S1 + S2", False)
    assert snap.tree.children_at("U", dt.datetime.now(dt.UTC)) == ["S1", "S2"]
    assert [c.valid_from for c in snap.tree.timeline("E1")] == [ALWAYS]  # since always: the past has this tree too
    again = await apply_site(db, parse_toml(SITE, "site.toml"), ACTOR)
    assert not again.changed, again.summary()
    # a changed parent takes effect from the import on
    moved = SITE.replace('unit_id = 5\nparent = "S2"', 'unit_id = 5\nparent = "S1"')
    before = dt.datetime.now(dt.UTC)
    result = await apply_site(db, parse_toml(moved, "site.toml"), ACTOR)
    assert result.updated == {"parent": 1}
    await registry.load()
    tree = registry.snapshot.tree
    assert tree.parent_at("E5", before - dt.timedelta(seconds=1)) == "S2" and tree.parent_at("E5", dt.datetime.now(dt.UTC)) == "S1"
    async with db.sessions() as s:
        assert len((await s.scalars(select(MeterParent).where(MeterParent.meter_id == "E5"))).all()) == 2


@pytest.mark.parametrize(("old", "new", "problem"), [
    ('link = "gw"\nunit_id = 1\n', 'unit_id = 1\n', "meters[3]: link: missing (a polled meter needs a profile and a link"),
    ('manual = true\nmax_power_kw = "400"', 'manual = true\nlink = "gw"\nmax_power_kw = "400"', "meters[0]: link: a manual meter has no communications"),
    ('formula = "S1 + S2"', 'formula = "S1 + W1"', "meters[10]: formula: meter W1 measures water, this one electricity"),
    ('formula = "S1 + S2"', 'formula = "S1 + X9"', "meters[10]: formula: unknown meter 'X9'"),
    ('formula = "S1 + S2"', 'formula = "S1 + V"', "meters[10]: formula: formulas loop: V → V"),
    ('formula = "S1 + S2"', 'formula = "S1+S2"', "meters[10]: formula: 'S1+S2' is not a meter id"),
    ('role = "virtual"\nbuilding = "B"\nformula = "S1 + S2"', 'role = "virtual"\nbuilding = "B"', "meters[10]: formula: a virtual meter needs a formula"),
    ('unit_id = 6\nparent = "S1"', 'unit_id = 6\nparent = "S1"\nformula = "E1"', "meters[5]: formula: only a virtual meter"),
    ('unit_id = 3\nparent = "S2"', 'unit_id = 3\nparent = "X9"', "meters[6]: parent: unknown meter 'X9'"),
    ('unit_id = 3\nparent = "S2"', 'unit_id = 3\nparent = "W1"', "meters[6]: parent: meter W1 measures water, this one electricity"),
    ('manual = true\nmax_power_kw = "400"', 'manual = true\nmax_power_kw = "400"\nparent = "E1"', "parent: the parents make a loop: S1 → U → E1 → S1"),
])
async def test_mistakes_are_named_and_nothing_is_imported(db: Database, old: str, new: str, problem: str) -> None:
    assert old in SITE
    with pytest.raises(SiteImportError) as err:
        await apply_site(db, parse_toml(SITE.replace(old, new, 1), "site.toml"), ACTOR)
    assert any(problem in p for p in err.value.problems), err.value.problems
    registry = AssetRegistry(db)
    await registry.load()
    assert registry.snapshot.meters == {}


CSV = """site_id,building_id,floor_id,floor_level,room_id,area_m2,meter_id,kind,role,profile,link,unit_id,parent,manual,formula
s,B,F1,1,R1,30,U,electricity,utility,,,,,true,
s,B,F1,1,R1,30,E1,electricity,tenant,acrel-ddsy1352,gw,1,U,,
s,B,F1,1,R2,20,E2,electricity,tenant,acrel-ddsy1352,gw,2,U,,
s,B,F1,1,R2,20,V,electricity,virtual,,,,,,E1 + E2
"""


async def test_csv_has_the_topology_columns(db: Database) -> None:
    await apply_site(db, parse_csv(CSV, "site.csv"), ACTOR)
    registry = AssetRegistry(db)
    await registry.load()
    snap = registry.snapshot
    assert snap.meters["U"].manual and snap.meters["U"].room_id is None and snap.meters["V"].formula == "E1 + E2"
    assert snap.tree.children_at("U", dt.datetime.now(dt.UTC)) == ["E1", "E2"]
