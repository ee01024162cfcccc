"""The command line as a user runs it: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..procs import ScadaProcess, demo_port_args


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_starts_and_stops_cleanly(sig: int, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SCADA_ADMIN_PASSWORD"}
    with ScadaProcess([*demo_port_args(), "demo"], cwd=tmp_path, env=env) as p:
        p.wait_for(r"scada: ready")
        code = p.stop(sig)
    assert code == 0, "\n".join(p.stderr)
    passwords = [line for line in p.stdout if "password:" in line]
    assert len(passwords) == 1 and "user 'admin'" in passwords[0]
    assert (tmp_path / "var" / "demo" / "scada.db").exists()
    assert any("stopped" in line and "component=database" in line for line in p.stderr)


def test_demo_uses_admin_password_from_env_and_json_logs(tmp_path: Path) -> None:
    with ScadaProcess(["--log-format", "json", *demo_port_args(), "demo"], cwd=tmp_path, env={"SCADA_ADMIN_PASSWORD": "demo-password-1"}) as p:
        p.wait_for(r'"msg": "ready"')
        assert p.stop(signal.SIGTERM) == 0
    assert not any("demo-password-1" in line for line in p.stdout + p.stderr)
    records = [json.loads(line) for line in p.stderr if line.startswith("{")]
    started = [r for r in records if r["msg"] == "started"]
    assert {r["component"] for r in started} >= {"database", "tags", "hmi"}
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)


def test_run_with_broken_site_file_exits_nonzero(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text('[site]\nid = "x"\nname = "X"\n[[rooms]]\nid = "R1"\nfloor = "nowhere"\nname = "R1"\n')
    (tmp_path / "scada.toml").write_text('[site]\nname = "X"\nimport_file = "site.toml"\n')
    with ScadaProcess(["run", "--config", str(tmp_path / "scada.toml")], cwd=tmp_path) as p:
        p.proc.wait(60)
        code = p.stop()
    assert code == 1
    assert any("unknown floor 'nowhere'" in line for line in p.stderr)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scada", *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )


def test_user_add_and_import_site_commands(tmp_path: Path) -> None:
    cfg = tmp_path / "scada.toml"
    cfg.write_text('[site]\nname = "X"\n[[links]]\nname = "gw"\nhost = "127.0.0.1"\nport = 5020\n')
    r = run_cli("user", "add", "cash1", "--role", "cashier", "--config", str(cfg), cwd=tmp_path, env={"SCADA_PASSWORD": "long-enough-pw"})
    assert r.returncode == 0, r.stderr
    assert "user cash1 added with role cashier" in r.stdout
    r = run_cli("user", "add", "cash2", "--role", "cashier", "--config", str(cfg), cwd=tmp_path, env={"SCADA_PASSWORD": ""})
    assert r.returncode != 0 and "no password" in r.stderr
    r = run_cli("user", "list", "--config", str(cfg), cwd=tmp_path)
    assert "cash1" in r.stdout and "cashier" in r.stdout

    site = tmp_path / "site.csv"
    site.write_text("site_id,building_id,floor_id,floor_level,room_id,meter_id,kind,profile,link,unit_id\n"
                    "s,B1,B1-F1,1,B1-R1,E-1,electricity,acrel-ddsy1352,gw,1\n")
    r = run_cli("import-site", str(site), "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "created" in r.stdout and "1 meter" in r.stdout
    r = run_cli("import-site", str(site), "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 0 and "created" not in r.stdout and "unchanged" in r.stdout
    site.write_text("site_id,building_id,floor_id,floor_level,room_id,meter_id,kind,profile,link,unit_id\n"
                    "s,B1,B1-F1,1,B1-R1,E-1,electricity,acrel-ddsy1352,nolink,1\n")
    r = run_cli("import-site", str(site), "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 1
    assert f"{site}:2: link: unknown link 'nolink'" in r.stderr and "nothing was imported" in r.stderr
    site.write_text("site_id,building_id,floor_id,floor_level,room_id,meter_id,kind,profile,link,unit_id\n"
                    "s,B1,B1-F1,1,B1-R1,E-1,electricity,no-such-meter,gw,1\n")
    r = run_cli("import-site", str(site), "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 1
    assert f"{site}:2: profile: unknown device profile 'no-such-meter' (known: acrel-adf400l" in r.stderr
