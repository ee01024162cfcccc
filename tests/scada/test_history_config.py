"""The ``[historian]`` section: defaults, paths, secrets, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from historian import InfluxSettings, SqliteSettings
from scada.config import ConfigError, load_config, load_demo_config
from scada.core.configbase import SecretError
from scada.history.settings import backend_settings, historian_settings

MINIMAL = '[site]\nname = "T"\ntimezone = "Asia/Shanghai"\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "scada.toml"
    path.write_text(MINIMAL + text)
    return load_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_defaults_put_files_in_the_data_dir(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    b = backend_settings(cfg)  # type: ignore[arg-type]
    h = historian_settings(cfg)  # type: ignore[arg-type]
    assert isinstance(b, SqliteSettings) and b.path == tmp_path / "var" / "historian.db"
    assert h.spool_path == tmp_path / "var" / "historian-buffer.db" and h.interval_s == 900


def test_demo_config_uses_sqlite_under_var_demo() -> None:
    cfg = load_demo_config()
    b = backend_settings(cfg)
    assert isinstance(b, SqliteSettings) and b.path == Path.cwd() / "var/demo/historian.db"
    assert historian_settings(cfg).spool_path == Path.cwd() / "var/demo/historian-buffer.db"
    assert historian_settings(cfg).raw_rules[0].patterns == ("*.power",)


def test_influx_settings_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
[historian]
backend = "influx"
interval_min = 5
[historian.influx]
api = "v2"
url = "https://influx.example:8086"
token = { env = "TEST_INFLUX_TOKEN" }
org = "site"
bucket = "scada"
"""
    cfg = load(tmp_path, text)
    with pytest.raises(SecretError, match="TEST_INFLUX_TOKEN"):
        backend_settings(cfg)  # type: ignore[arg-type]
    monkeypatch.setenv("TEST_INFLUX_TOKEN", "tok")
    b = backend_settings(cfg)  # type: ignore[arg-type]
    assert isinstance(b, InfluxSettings) and b.token == "tok" and b.api == "v2" and b.bucket == "scada"
    assert historian_settings(cfg).interval_s == 300  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[historian]\ninterval_min = 7\n", "historian.interval_min: must divide an hour"),
        ("[historian]\ninterval_min = 0\n", "historian.interval_min: expected a value >= 1, found 0"),
        ("[historian]\ninterval_min = 120\n", "historian.interval_min: expected a value <= 60, found 120"),
        ("[historian]\nbackend = \"mongo\"\n", "historian.backend: expected one of 'sqlite' or 'influx', found 'mongo'"),
        ("[historian.influx]\napi = \"v2\"\n", 'historian.influx: api = "v2" needs token, org, bucket'),
        ("[historian.influx]\nurl = \"influx:8086\"\n", "historian.influx.url: expected an http:// or https:// URL"),
        ("[historian.influx]\npassword = { env = \"X\" }\n", "historian.influx: a password needs a username"),
        ("[historian.buffer]\nwarn_fill = 1.5\n", "historian.buffer.warn_fill: expected a value < 1"),
        ("[historian.buffer]\nmax_points = 10\n", "historian.buffer.max_points: expected a value >= 100"),
        ("[[historian.raw]]\ntags = []\n", "historian.raw[0].tags"),
        ("[[historian.raw]]\ntags = [\"*.power\"]\ndeadband = -1\n", "historian.raw[0].deadband: expected a value >= 0"),
        ("[historian.sqlite]\nretention_days = 3\n", "historian.sqlite.retention_days: unknown key (allowed here:"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
