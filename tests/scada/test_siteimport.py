"""Site import: idempotent, audited, atomic, with line-precise errors; on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from scada.config import load_demo_config
from scada.db import Database
from scada.site.assets import AssetRegistry
from scada.site.component import resolve_site_file
from scada.site.importer import SiteImportError, import_site_file, parse_site_file
from scada.site.models import Meter, Room
from scada.users.audit import Actor, AuditLog
from scada.users.models import AuditEntry

ME = Actor("tester", "cli")

SMALL = """
[site]
id = "s"
name = "Small"
timezone = "Europe/London"

[[buildings]]
id = "B1"
name = "Block A"

[[floors]]
id = "B1-F1"
building = "B1"
level = 1
name = "F1"

[[rooms]]
id = "B1-R101"
floor = "B1-F1"
name = "R101"
area_m2 = "30.5"

[[rooms]]
id = "B1-R102"
floor = "B1-F1"
name = "R102"

[[meters]]
id = "E-101"
kind = "electricity"
room = "B1-R101"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
initial_reading = "12.34"

[[meters]]
id = "C-1"
kind = "electricity"
role = "common"
building = "B1"
profile = "acrel-adf400l"
link = "gw"
unit_id = 2
circuit = 1
"""


async def counts(db: Database) -> tuple[int, int, int]:
    async with db.sessions() as s:
        return (
            await s.scalar(select(func.count()).select_from(Room)),
            await s.scalar(select(func.count()).select_from(Meter)),
            await s.scalar(select(func.count()).select_from(AuditEntry)),
        )


async def test_import_then_reimport_changes_nothing(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "site.toml"
    f.write_text(SMALL)
    first = await import_site_file(db, f, ME)
    assert first.created == {"site": 1, "building": 1, "floor": 1, "room": 2, "meter": 2}
    after_first = await counts(db)
    second = await import_site_file(db, f, ME)
    assert not second.changed
    assert second.unchanged["meter"] == 2
    assert await counts(db) == after_first  # no new rows, not even audit entries

    reg = AssetRegistry(db)
    await reg.load()
    m = reg.snapshot.meters["E-101"]
    assert m.initial_reading == Decimal("12.34") and m.building_id == "B1"
    assert reg.snapshot.rooms["B1-R101"].area_m2 == Decimal("30.5")
    assert reg.snapshot.meters["C-1"].room_id is None and reg.snapshot.meters["C-1"].circuit == 1


async def test_changed_row_is_updated_and_audited(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "site.toml"
    f.write_text(SMALL)
    await import_site_file(db, f, ME)
    f.write_text(SMALL.replace('name = "R102"', 'name = "R102b"'))
    result = await import_site_file(db, f, ME, reason="renamed")
    assert result.updated == {"room": 1}
    entries = await AuditLog(db).query(target_type="room", target_id="B1-R102", action="site.import.update")
    assert len(entries) == 1
    e = entries[0]
    assert e.before == {"name": "R102"} and e.after == {"name": "R102b"}
    assert e.actor == "tester" and e.reason == "renamed"


async def test_bad_row_reports_line_and_commits_nothing(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "site.toml"
    bad = SMALL.replace("unit_id = 1\n", "unit_id = 900\n").replace('kind = "electricity"\nrole', 'kind = "gas"\nrole')
    f.write_text(bad)
    with pytest.raises(SiteImportError) as info:
        await import_site_file(db, f, ME)
    problems = info.value.problems
    line_e101 = bad.splitlines().index("[[meters]]") + 1
    assert any(p.startswith(f"{f}:{line_e101}: meters[0]: unit_id:") and "<= 247" in p for p in problems), problems
    assert any("meters[1]: kind: expected one of 'electricity' or 'water', found 'gas'" in p for p in problems), problems
    assert await counts(db) == (0, 0, 0)


async def test_reference_errors_roll_back_everything(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "site.toml"
    f.write_text(SMALL.replace('room = "B1-R101"', 'room = "B1-R999"'))
    with pytest.raises(SiteImportError, match="unknown room 'B1-R999'"):
        await import_site_file(db, f, ME)
    assert await counts(db) == (0, 0, 0)


async def test_unknown_link_and_duplicate_address_are_refused(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "site.toml"
    f.write_text(SMALL)
    with pytest.raises(SiteImportError, match="unknown link 'gw'"):
        await import_site_file(db, f, ME, known_links={"other"})
    f.write_text(SMALL.replace("unit_id = 2\ncircuit = 1", "unit_id = 1"))
    with pytest.raises(SiteImportError, match="link gw unit 1 is already used by meter E-101"):
        await import_site_file(db, f, ME)


CSV = """site_id,building_id,building_name,floor_id,floor_level,room_id,room_name,area_m2,meter_id,kind,profile,link,unit_id
s,B1,Block A,B1-F1,1,B1-R101,R101,30.5,E-101,electricity,acrel-ddsy1352,gw,1
s,B1,Block A,B1-F1,1,B1-R101,R101,30.5,W-101,water,water-valve,gw,2
s,B1,Block A,B1-F1,1,B1-R102,R102,,,,,,
"""


async def test_csv_import_idempotent(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "site.csv"
    f.write_text(CSV)
    first = await import_site_file(db, f, ME)
    assert first.created == {"site": 1, "building": 1, "floor": 1, "room": 2, "meter": 2}
    assert not (await import_site_file(db, f, ME)).changed


async def test_csv_errors_carry_line_numbers(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "site.csv"
    f.write_text(CSV.replace("water-valve,gw,2", "water-valve,gw,two").replace("30.5,E-101", "-3,E-101"))
    with pytest.raises(SiteImportError) as info:
        await import_site_file(db, f, ME)
    text = "\n".join(info.value.problems)
    assert f"{f}:3: unit_id: expected an integer, found 'two'" in text
    assert f"{f}:2: area_m2: expected a value > 0, found '-3'" in text
    assert await counts(db) == (0, 0, 0)


def test_csv_unknown_column(tmp_path: Path) -> None:
    f = tmp_path / "site.csv"
    f.write_text("site_id,building_id,floor_id,room_id,colour\ns,B,F,R,red\n")
    with pytest.raises(SiteImportError, match="unknown column\\(s\\) colour"):
        parse_site_file(f)


async def test_demo_site_imports(db: Database) -> None:
    cfg = load_demo_config()
    path = resolve_site_file(cfg, cfg.site.import_file or "")
    result = await import_site_file(db, path, ME, known_links={link.name for link in cfg.links})
    assert result.created["room"] == 60 and result.created["floor"] == 4
    reg = AssetRegistry(db)
    await reg.load()
    snap = reg.snapshot
    assert sum(1 for m in snap.meters.values() if m.kind == "electricity" and m.role == "tenant") == 60
    assert sum(1 for m in snap.meters.values() if m.kind == "water") >= 10
    assert [m.id for m in snap.meters.values() if m.role == "common"] == ["C-B1-01"]


async def test_replaced_meters_are_history_to_the_import(db: Database, tmp_path: Path) -> None:
    """The site file still lists a meter the database holds as replaced: re-importing it keeps
    the successor on the old meter's unit id and leaves the history as it is."""
    from scada.site.assets import RegistryError

    f = tmp_path / "site.toml"
    f.write_text(SMALL)
    await import_site_file(db, f, ME)
    reg = AssetRegistry(db)
    await reg.load()
    await reg.replace_meter("E-101", "E-101b", ME, reason="broken display")  # takes unit 1
    before = await counts(db)
    again = await import_site_file(db, f, ME)  # E-101 on unit 1 in the file: history
    assert not again.changed and await counts(db) == before
    await reg.replace_meter("E-101b", "E-101c", ME, reason="again", unit_id=7)  # moves to unit 7
    await reg.set_active("C-1", False, ME, reason="removed")
    before = await counts(db)
    again = await import_site_file(db, f, ME)  # E-101 (unit 1) and C-1 are history now
    assert not again.changed and again.unchanged["meter"] == 2
    assert await counts(db) == before
    await reg.load()
    meters = reg.snapshot.meters
    assert [m.id for m in reg.snapshot.active_meters] == ["E-101c"]
    assert meters["E-101"].replaced_by == "E-101b" and meters["E-101b"].replaced_by == "E-101c" and meters["E-101c"].unit_id == 7
    # a new meter in the file may use a unit id the history left free, not one a successor holds
    f.write_text(SMALL + '\n[[meters]]\nid = "E-102"\nkind = "electricity"\nroom = "B1-R102"\nprofile = "acrel-ddsy1352"\nlink = "gw"\nunit_id = 1\n')
    assert (await import_site_file(db, f, ME)).created == {"meter": 1}
    f.write_text(SMALL + '\n[[meters]]\nid = "E-103"\nkind = "electricity"\nroom = "B1-R102"\nprofile = "acrel-ddsy1352"\nlink = "gw"\nunit_id = 7\n')
    with pytest.raises(SiteImportError, match="unit 7 is already used by meter E-101c"):
        await import_site_file(db, f, ME)
    # a replacement onto another active meter's unit id is refused: it would break the next start
    await reg.load()
    with pytest.raises(RegistryError, match="unit 1 is already used by meter E-102"):
        await reg.replace_meter("E-101c", "E-101d", ME, reason="x", unit_id=1)
    with pytest.raises(RegistryError, match="unit 1 is already used by meter E-102"):
        await reg.check_replace("E-101c", "E-101d", 1)
