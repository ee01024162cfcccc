"""``[alarms]`` is strict like every section: each problem names its key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from scada.alarms.alarm import Priority
from scada.alarms.classes import BUILTIN
from scada.alarms.notify.config import QuietHours
from scada.alarms.notify.contacts import StaticContactDirectory
from scada.alarms.notify.templates import MessageTemplates, TemplateProblem
from scada.config import ConfigError, load_demo_config, parse_config

SITE = '[site]\nname = "T"\n'


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(SITE + text, "t.toml", Path("."))
    return info.value.problems


def test_defaults_and_overrides() -> None:
    config = parse_config(SITE + '[alarms.classes.comm_loss]\npriority = "high"\ndelay_on_s = 60\nack_roles = ["maintenance"]\n', "t", Path("."))
    classes = config.alarms.resolved_classes()
    assert classes["comm_loss"].priority is Priority.HIGH and classes["comm_loss"].delay_on_s == 60
    assert classes["comm_loss"].ack_roles == ("maintenance",)
    assert classes["comm_loss"].delay_off_s == BUILTIN["comm_loss"].delay_off_s  # untouched keys keep defaults
    assert classes["tamper"] == BUILTIN["tamper"]


def test_demo_config_has_alarms() -> None:
    config = load_demo_config()
    assert config.alarms.enabled and config.alarms.notifications.routes == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[alarms.classes.comm_los]\npriority = 'high'\n", "alarms: classes.comm_los: unknown alarm class (classes: comm_loss,"),
        ("[alarms.classes.comm_loss]\npriority = 'urgent'\n", "alarms.classes.comm_loss.priority: expected one of 'low', 'medium', 'high' or 'critical', found 'urgent'"),
        ("[alarms.classes.comm_loss]\ndelay_on_s = -1\n", "alarms.classes.comm_loss.delay_on_s: expected a value >= 0, found -1"),
        ("[alarms.classes.comm_loss]\nlimit = 2.0\n", "classes.comm_loss: limit and deadband_pct apply only to historian_buffer, login_burst, loss_high, over_power"),
        ("[alarms.classes.tamper]\nack_roles = ['janitor']\n", "alarms.classes.tamper.ack_roles[0]: expected one of"),
        ("[alarms]\nshelve_hours = 3\n", "alarms.shelve_hours: unknown key (allowed here:"),
        (
            "[[alarms.notifications.channels]]\nname = 'm'\nkind = 'email'\nhost = 'h'\nsender = 's@x'\nurl = 'http://x'\n",
            "url: not a key of a email channel",
        ),
        (
            "[[alarms.notifications.channels]]\nname = 'm'\nkind = 'email'\nhost = 'h'\nsender = 's@x'\nuser = 'u'\npassword = { env = 'P' }\nsecurity = 'none'\n",
            "refusing to send an SMTP password without TLS",
        ),
        ("[[alarms.notifications.channels]]\nname = 'w'\nkind = 'webhook'\nurl = 'ftp://x'\nsecret = { env = 'S' }\n", "url: expected an http:// or https:// URL"),
        ("[[alarms.notifications.channels]]\nname = 'w'\nkind = 'webhook'\nurl = 'https://x'\n", "a webhook channel needs 'secret'"),
        ("[[alarms.notifications.channels]]\nname = 's'\nkind = 'sms'\nurl = 'https://x'\n", "an sms channel using POST needs a 'body' template"),
        ("[[alarms.notifications.routes]]\nname = 'r'\nchannel = 'nope'\nto = ['a@b']\n", "routes[0].channel: unknown channel 'nope' (channels: none configured)"),
        (
            "[[alarms.notifications.channels]]\nname = 'w'\nkind = 'webhook'\nurl = 'https://x'\nsecret = { env = 'S' }\n"
            "[[alarms.notifications.routes]]\nname = 'r'\nchannel = 'w'\nclasses = ['balance']\n",
            "notifications.routes[0].classes: unknown alarm class 'balance'",
        ),
        ("[alarms.notifications]\nquiet_hours = { start = '22:00', end = '7:00' }\n", "alarms.notifications.quiet_hours.end: expected a time HH:MM (24 h), found '7:00'"),
    ],
)
def test_bad_alarm_config(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("local", "release"),
    [
        ("21:59", None),
        ("22:00", "2026-03-03 07:00"),
        ("23:30", "2026-03-03 07:00"),
        ("03:00", "2026-03-02 07:00"),
        ("07:00", None),
    ],
)
def test_quiet_hours_across_midnight(local: str, release: str | None) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    qh = QuietHours(start="22:00", end="07:00")
    h, m = map(int, local.split(":"))
    at = datetime(2026, 3, 2, h, m, tzinfo=tz)
    got = qh.release_at(at)
    assert (got.strftime("%Y-%m-%d %H:%M") if got else None) == release
    assert got is None or got.tzinfo is tz
    assert QuietHours(start="12:00", end="14:00").release_at(datetime(2026, 3, 2, 13, 0, tzinfo=UTC)) is not None


def test_contact_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "contacts.toml"
    path.write_text('[[contacts]]\nroom = "R1"\nname = "A"\nphone = "call me"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"contacts\[0\]\.phone"):
        StaticContactDirectory.load(path)
    path.write_text('[[contacts]]\nroom = "R1"\nname = "A"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"contacts\[0\]: give 'phone' or 'email'"):
        StaticContactDirectory.load(path)
    path.write_text('[[contacts]]\nroom = "R1"\nname = "A"\nemail = "a@b.c"\nlanguage = "fr"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"contacts\[0\]\.language"):
        StaticContactDirectory.load(path)


def test_templates_can_be_overridden_and_are_checked(tmp_path: Path) -> None:
    (tmp_path / "tenant" / "en").mkdir(parents=True)
    (tmp_path / "tenant" / "en" / "subject.txt").write_text("Top up room {{ room }}", encoding="utf-8")
    (tmp_path / "custom" / "en").mkdir(parents=True)
    (tmp_path / "custom" / "en" / "subject.txt").write_text("{{ oops", encoding="utf-8")
    templates = MessageTemplates(tmp_path)
    templates.check("tenant")  # body and zh-CN come from the built-in set
    with pytest.raises(TemplateProblem, match="custom/en/subject.txt: line 1"):
        templates.check("custom")
    with pytest.raises(TemplateProblem, match="template nothing/en/subject.txt not found"):
        templates.check("nothing")
