"""Device profiles: the shipped ones load, bad ones are refused with precise messages."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from protocols.modbus.plan import plan_device
from protocols.modbus.profile import (
    BILLING_POINTS,
    ProfileError,
    ProfileLibrary,
    load_profile,
    parse_profile,
)

POINTS = {
    "energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley", "energy_reverse", "power",
    "voltage", "current", "power_factor", "relay_closed", "volume_total", "volume_reverse", "flow", "valve_open",
    # the wider device library: phases, frequency, combined registers, instrument transformers
    "voltage_l2", "voltage_l3", "current_l2", "current_l3", "power_l1", "power_l2", "power_l3", "frequency",
    "energy_absolute", "energy_combined", "pt_ratio", "ct_ratio",
}


def base() -> dict[str, Any]:
    return {
        "profile": {"name": "t", "kind": "electricity"},
        "poll_classes": {"fast": 5, "energy": 60},
        "points": {
            "energy_total": {"address": 0, "type": "u32", "scale": 0.01, "poll": "energy", "group": "energy"},
            "relay_closed": {"address": 10, "type": "u16", "true_value": 1, "poll": "fast"},
        },
        "commands": {
            "connect": {"address": 11, "value": 1, "confirm": "relay_closed"},
            "disconnect": {"address": 11, "value": 0, "confirm": "relay_closed"},
        },
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ProfileError) as info:
        parse_profile(data, "t.toml", expected_name="t")
    return info.value.problems


def test_shipped_profiles_load_and_use_tag_point_names() -> None:
    lib = ProfileLibrary.load()
    assert lib.names() == [
        "acrel-adf400l", "acrel-adl400", "acrel-adw300", "acrel-ddsy1352", "acrel-dtsy1352", "chint-dtsu666",
        "eastron-sdm120", "eastron-sdm630", "water-valve",
    ]
    for name in lib.names():
        profile = lib[name]
        assert set(profile.points) <= POINTS, name
        if name in ("acrel-adl400", "acrel-adw300", "chint-dtsu666", "eastron-sdm120", "eastron-sdm630"):
            assert profile.commands == {}, name  # meters without a relay are read only
            assert profile.supply_point is None
        else:
            assert set(profile.commands) == {"connect", "disconnect"}
            assert profile.supply_point == ("valve_open" if profile.kind == "water" else "relay_closed")
        # the cumulative registers come in one request, in one poll class
        billing = [p for n, p in profile.points.items() if n in BILLING_POINTS]
        blocks = plan_device(profile, 1 if profile.circuits > 1 else None, 8, 0)
        holding = [b for blocks_ in blocks.values() for b in blocks_ if any(p.name in BILLING_POINTS for p, _ in b.points)]
        assert len(holding) == 1 and len(holding[0].points) >= len(billing)


def test_the_config_folder_links_to_the_shipped_profiles() -> None:
    root = Path(__file__).resolve().parents[3]
    link = root / "config" / "profiles"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert (link / "acrel-ddsy1352.toml").read_text() == (root / "protocols/profiles/acrel-ddsy1352.toml").read_text()


def test_each_profile_says_what_it_is_modelled_on() -> None:
    for path in Path(ProfileLibrary.load()["water-valve"].path).parent.glob("*.toml"):
        text = path.read_text()
        header = text.split("[profile]")[0]
        if "[commands." in text and "protocol = \"dlt645\"" not in text and "protocol = \"mqtt\"" not in text:
            assert "simulator's" in header, path.name  # relay registers that are not public say so
        assert tomllib.loads(text)["profile"]["source"], path.name


def test_ddsy1352_register_map() -> None:
    p = ProfileLibrary.load()["acrel-ddsy1352"]
    assert [(n, p.points[n].address, p.points[n].data_type, p.points[n].scale) for n in ("energy_total", "energy_valley", "voltage", "current", "power", "power_factor")] == [
        ("energy_total", 0x0000, "u32", 0.01), ("energy_valley", 0x0008, "u32", 0.01), ("voltage", 0x000B, "u16", 0.1),
        ("current", 0x000C, "u16", 0.01), ("power", 0x000D, "i16", 0.001), ("power_factor", 0x0010, "i16", 0.001),
    ]
    # u32 x 0.01 reads exactly to the register's resolution
    value = p.points["energy_total"].decode([0x0001, 0x0002])
    assert value == 655.38 and Decimal(str(value)) == Decimal("655.38")


def test_overlapping_registers_are_refused() -> None:
    data = base()
    data["points"]["power"] = {"address": 1, "type": "i16", "poll": "fast"}
    assert problems(data) == [
        "points.power: registers 0x0001 overlap points.energy_total (0x0000-0x0001) in the holding registers"
    ]


def test_same_address_in_another_table_is_no_overlap() -> None:
    data = base()
    data["points"]["power"] = {"fc": 4, "address": 1, "type": "i16", "poll": "fast"}
    assert "power" in parse_profile(data, "t.toml").points


def test_unknown_type_is_refused() -> None:
    data = base()
    data["points"]["power"] = {"address": 20, "type": "u24", "poll": "fast"}
    assert problems(data) == ["points.power.type: unknown type 'u24' (known: u16, i16, u32, i32, f32, f64, bcd)"]


def test_missing_confirmation_point_is_refused() -> None:
    data = base()
    del data["commands"]["disconnect"]["confirm"]
    assert problems(data) == [
        "commands.disconnect.confirm: missing confirmation point (the status point read back after the write)"
    ]
    data = base()
    data["commands"]["connect"]["confirm"] = "relay_state"
    data["commands"]["disconnect"]["confirm"] = "relay_state"
    assert problems(data) == [
        "commands.connect.confirm: no point 'relay_state' in this profile",
        "commands.disconnect.confirm: no point 'relay_state' in this profile",
    ]
    data = base()
    data["points"]["relay_closed"].pop("true_value")
    assert "commands.connect.confirm: point 'relay_closed' is not boolean (give it true_value or bit)" in problems(data)


def test_other_mistakes_are_named() -> None:
    data = base()
    data["points"]["power"] = {"address": 20, "type": "i16", "poll": "often", "colour": "red"}
    data["profile"]["name"] = "other"
    assert problems(data) == ["points.power.colour: unknown key"]
    data["points"]["power"].pop("colour")
    assert problems(data) == [
        "profile.name: 'other' differs from the file name 't'",
        "points.power.poll: unknown poll class 'often' (declared: fast, energy)",
    ]
    data = base()
    data["points"]["energy_peak"] = {"address": 4, "type": "u32", "poll": "fast"}
    assert problems(data) == [
        "points energy_total, energy_peak: cumulative registers must be in one group "
        "(read in one request, so a bill never mixes readings of two moments)"
    ]
    data = base()
    del data["commands"]["connect"]
    assert problems(data) == ["commands.connect: missing (a profile with supply control needs connect and disconnect)"]


def test_multi_circuit_addresses(tmp_path: Path) -> None:
    p = ProfileLibrary.load()["acrel-adf400l"]
    assert p.circuits == 12
    assert p.address(p.points["energy_total"], 3) == 0x1000 + 2 * 0x40
    with pytest.raises(ValueError, match=r"needs circuit = 1..12, found None"):
        p.check_circuit(None)


def test_a_broken_profile_in_a_folder_is_named_with_its_file(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text(Path(ProfileLibrary.load()["water-valve"].path).read_text().replace('name = "water-valve"', 'name = "good"'))
    (tmp_path / "bad.toml").write_text('[profile]\nname = "bad"\nkind = "gas"\n')
    with pytest.raises(ProfileError) as info:
        ProfileLibrary.load(tmp_path)
    assert info.value.source == str(tmp_path / "bad.toml")
    assert "profile.kind: input should be 'electricity' or 'water', found 'gas'" in info.value.problems
    assert "poll_classes: missing required key" in info.value.problems
    (tmp_path / "bad.toml").unlink()
    assert load_profile(tmp_path / "good.toml").name == "good"


def test_a_library_loaded_again_shares_parsed_profiles_until_a_file_changes(tmp_path: Path) -> None:
    """A start loads the library once per component: an unchanged file is parsed once, a file
    whose text changed (even to the same size at once) is parsed again, and a file of bytes
    that are not UTF-8 is named as such."""
    text = Path(ProfileLibrary.load()["water-valve"].path).read_text().replace('name = "water-valve"', 'name = "mine"')
    path = tmp_path / "mine.toml"
    path.write_text(text)
    first, again = ProfileLibrary.load(tmp_path)["mine"], ProfileLibrary.load(tmp_path)["mine"]
    assert again is first
    assert 'description = "' in text and text.endswith("\n")
    changed = text.replace('description = "', 'description = "Y', 1)[:-1]
    path.write_text(changed)  # one character more, one less: the same size, within the same clock tick
    assert len(changed) == len(text)
    reloaded = ProfileLibrary.load(tmp_path)["mine"]
    assert reloaded is not first and reloaded.description.startswith("Y")
    path.write_bytes(b'[profile]\nname = "mine"\ndescription = "\xff"\n')
    with pytest.raises(ProfileError) as info:
        ProfileLibrary.load(tmp_path)
    assert info.value.source == str(path)
    assert info.value.problems == ["not UTF-8 text: invalid start byte at byte 39"]
