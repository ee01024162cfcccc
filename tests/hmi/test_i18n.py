"""The message catalogs: both languages complete and consistent, every key the pages use exists,
and the language negotiation."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from hmi.i18n import LANGUAGES, Catalogs, negotiate
from hmi.live import CATEGORIES
from scada.alarms.alarm import AlarmState, Priority
from scada.alarms.classes import CLASS_NAMES
from scada.operations.messages import MESSAGE_EVENTS
from scada.users.auth import Permission, Role
from tags import Quality, QualityReason

HMI = Path(str(resources.files("hmi")))
PLACEHOLDER = re.compile(r"{(\w+)}")


@pytest.fixture(scope="module")
def catalogs() -> Catalogs:
    return Catalogs.load()


def test_every_language_has_every_key_with_the_same_placeholders(catalogs: Catalogs) -> None:
    en = catalogs.catalogs["en"]
    for lang in LANGUAGES:
        cat = catalogs.catalogs[lang]
        assert set(cat) == set(en), f"{lang}: missing {sorted(set(en) - set(cat))}, extra {sorted(set(cat) - set(en))}"
        for key, text in cat.items():
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(en[key])), f"{lang}: {key}"


def _static_keys() -> set[str]:
    keys: set[str] = set()
    for path in (HMI / "templates").rglob("*.html"):  # the print templates too
        keys |= set(re.findall(r"""\bt\(\s*'([a-z_.0-9-]+)'\s*[,)]""", path.read_text(encoding="utf-8")))
    for path in (HMI / "static" / "js").glob("*.js"):
        keys |= set(re.findall(r"""\bt\(\s*"([a-z_.0-9-]+)"\s*[,)]""", path.read_text(encoding="utf-8")))
    for path in (p for p in HMI.rglob("*.py") if p.name != "__init__.py"):  # __init__: docstring examples
        keys |= set(re.findall(r"""\bt\(\s*"([a-z_.0-9-]+)"\s*[,)]""", path.read_text(encoding="utf-8")))
        keys |= set(re.findall(r"""nav=\("([a-z_.]+)\"""", path.read_text(encoding="utf-8")))
    return keys


def test_every_key_the_pages_use_exists(catalogs: Catalogs) -> None:
    used = _static_keys()
    assert len(used) > 50  # the scan finds the keys
    missing = sorted(k for k in used if not k.endswith(".") and k not in catalogs.catalogs["en"])
    assert not missing


def test_families_of_dynamic_keys_are_complete(catalogs: Catalogs) -> None:
    en = catalogs.catalogs["en"]
    families = {
        "state.room.": CATEGORIES,
        "role.": [r.value for r in Role],
        "permission.": [p.value for p in Permission],
        "state.quality.": [q.name.lower() for q in Quality],
        "state.reason.": [r.value for r in QualityReason],
        "state.supply.": ["on", "cutting", "off", "restoring", "unknown"],
        "state.account.": ["none", "open", "closed", "unknown"],
        "state.comm.": ["ok", "fault", "unknown"],
        "state.alarm_level.": ["0", "1", "2", "3", "unknown"],
        "alarm.class.": list(CLASS_NAMES),
        "alarm.state.": [s.value for s in AlarmState],
        "alarm.priority.": [p.label for p in Priority],
        "meter.kind.": ["electricity", "water"],
        "meter.role.": ["tenant", "common", "utility", "virtual"],
        "state.meter.": ["online", "offline", "unknown", "config_error", "manual", "virtual", "inactive"],
        "apportionment.method.": ["consumption", "area", "equal", "ratio"],
        "apportionment.settle.": ["balance", "bill"],
        "apportionment.schedule.": ["monthly", "daily"],
        "messages.status.": ["all", "pending", "held", "sent", "failed", "skipped", "cancelled"],
        "messages.event.": list(MESSAGE_EVENTS),
    }
    for prefix, values in families.items():
        missing = [prefix + v for v in values if prefix + v not in en]
        assert not missing, missing


def test_translator_fills_and_falls_back(catalogs: Catalogs) -> None:
    zh = catalogs.translator("zh-CN")
    assert zh("overview.page", page=2, pages=5) == "第 2 页，共 5 页"
    assert zh("overview.page") == "第 {page} 页，共 {pages} 页"  # no values: the raw text
    assert zh("overview.page", page=1) == "第 1 页，共 {pages} 页"  # a missing value never raises
    assert zh("no.such.key") == "no.such.key"
    assert catalogs.translator("fr").language == "en"
    assert all(k.startswith(("js.", "jobs.", "state.", "alarm.", "supply.", "comms.", "point.", "trend.", "ledger.", "receipt.", "channel.",
                             "report.")) for k in zh.client_messages())
    assert zh.maybe("point.power") == "有功功率" and zh.maybe("point.nonsense") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh", "zh-CN"),
        ("fr-FR,fr;q=0.9", "en"),
        ("fr;q=0.9,zh-Hans;q=0.8,en;q=0.5", "zh-CN"),
        ("en-GB,zh;q=0.5", "en"),
        ("zh;q=0, en", "en"),
        ("zh;q=abc", "en"),
    ],
)
def test_negotiate(header: str, expected: str) -> None:
    assert negotiate(header, list(LANGUAGES), "en") == expected
