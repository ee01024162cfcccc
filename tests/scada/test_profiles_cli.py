"""``scada profiles list`` and ``scada profiles check FILE``."""

from __future__ import annotations

from pathlib import Path

from .test_cli import run_cli


def test_profiles_list_names_every_shipped_profile_with_its_protocol(tmp_path: Path) -> None:
    done = run_cli("profiles", "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in done.stdout.splitlines()[1:]}
    for name in ("eastron-sdm120", "eastron-sdm630", "chint-dtsu666", "acrel-adl400", "acrel-adw300", "acrel-ddsy1352"):
        assert rows[name] == ["modbus", "electricity"], name
    assert rows["dlt645-single-phase"] == ["dlt645", "electricity"]


def test_profiles_check_accepts_good_files_and_names_every_problem(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "protocols" / "profiles"
    good = run_cli("profiles", "check", str(shipped / "acrel-adl400.toml"), str(shipped / "dlt645-single-phase.toml"), cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "acrel-adl400 (modbus, electricity, 13 points)" in good.stdout
    assert "dlt645-single-phase (dlt645, electricity, 13 points, supply control confirmed by relay_closed)" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[profile]\nname = "bad"\nkind = "electricity"\n[poll_classes]\nfast = 5\n'
        '[points.power]\nfc = 4\naddress = 0\ntype = "f32"\npoll = "fast"\nratio = ["pt"]\n'
        '[points.voltage]\nfc = 4\naddress = 1\ntype = "f32"\npoll = "slow"\n'
    )
    done = run_cli("profiles", "check", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert "points.voltage.poll: unknown poll class 'slow'" in done.stderr
    assert "points.power.ratio[0]: no point 'pt' in this profile" in done.stderr
    assert "points.voltage: registers 0x0001-0x0002 overlap points.power" in done.stderr
    dlt = tmp_path / "meter.toml"
    dlt.write_text(
        '[profile]\nname = "meter"\nprotocol = "dlt645"\nkind = "electricity"\n[poll_classes]\nfast = 5\n'
        '[points.energy_total]\ndi = "00010000"\nformat = "XXXXX.XX"\npoll = "fast"\n'
    )
    done = run_cli("profiles", "check", str(dlt), cwd=tmp_path)
    assert done.returncode == 1
    assert "points.energy_total.format: expected digits like 'XXXXXX.XX' (an even number of X), found 'XXXXX.XX'" in done.stderr
