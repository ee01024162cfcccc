"""The wheel is the product: built from the tracked files, installed into a fresh virtual
environment, it runs ``scada check-config``, ``scada demo --help`` and a database migration
with nothing from the source tree (migrations, templates, static files, device profiles and the
embedded demo site are package data)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def tracked_copy(dest: Path) -> Path:
    """The repository's tracked files only: what a clean clone has, nothing generated."""
    files = run("git", "ls-files", "-z", cwd=ROOT).split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the tracked files")
    src = tracked_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist, ".", cwd=src)
    (wheel,) = dist.glob("prepaid_scada-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    py = venv / "bin" / "python"
    site = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    # the dependencies come from the test environment (a plain path line: its .pth files, and
    # so the editable install of the source tree, are not read); the project only from the wheel
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = run(py, "-c", "import scada, hmi, protocols, historian, tags; print(scada.__file__, hmi.__file__)", cwd=work, env=env)
    assert all(p.startswith(str(site)) for p in where.split()), where

    scada = venv / "bin" / "scada"
    config = shutil.copy(src / "config" / "demo.toml", work / "demo.toml")
    assert "OK (site" in run(scada, "check-config", config, cwd=work, env=env)
    assert "simulated demo site" in run(scada, "--help", cwd=work, env=env)
    assert "usage: scada demo" in run(scada, "demo", "--help", cwd=work, env=env)
    # the migrations, the embedded demo config and its site file are package data
    assert "database at" in run(scada, "db", "upgrade", cwd=work, env=env)
    assert (work / "var" / "demo").is_dir()
    files = run(py, "-c", (
        "from importlib import resources as r; "
        "print(r.files('hmi').joinpath('templates/base.html').is_file(), "
        "r.files('protocols').joinpath('profiles/dlt645-single-phase.toml').is_file(), "
        "r.files('scada.defaults').joinpath('site-demo.toml').is_file())"
    ), cwd=work, env=env)
    assert files.split() == ["True", "True", "True"]
