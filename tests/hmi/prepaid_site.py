"""A small site for the prepaid API tests: two rooms, three meters."""

from __future__ import annotations

from pathlib import Path

from scada.config import ScadaConfig

from ..services import free_port

SITE = """
[site]
id = "t"
name = "Test"
timezone = "Asia/Shanghai"

[[buildings]]
id = "B"
name = "B"

[[floors]]
id = "B-F1"
building = "B"
level = 1
name = "F1"

[[rooms]]
id = "R1"
floor = "B-F1"
name = "R1"

[[rooms]]
id = "R2"
floor = "B-F1"
name = "R2"

[[meters]]
id = "E1"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
max_power_kw = "10"

[[meters]]
id = "E2"
kind = "electricity"
room = "R2"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 2
max_power_kw = "10"

[[meters]]
id = "W2"
kind = "water"
room = "R2"
profile = "water-valve"
link = "gw"
unit_id = 3
"""


def prepaid_extra(tmp_path: Path, more: str = "") -> str:
    """Config lines: the site above and a link for its meters (nothing answers there: relay
    commands fail fast), no friendly-credit windows."""
    (tmp_path / "site.toml").write_text(SITE)
    return f"""
[[links]]
name = "gw"
host = "127.0.0.1"
port = {free_port()}
timeout_s = 0.2

[commands]
retries = 0
confirm_timeout_s = 0.5
confirm_interval_s = 0.1

[prepaid.friendly_credit]
windows = []
weekends = false
{more}
"""


def with_site(config: ScadaConfig) -> ScadaConfig:
    """``config`` importing ``site.toml`` (next to it) at start."""
    return config.model_copy(update={"site": config.site.model_copy(update={"import_file": "site.toml"})})
