"""Scheduled reports through a real SMTP server (aiosmtpd, STARTTLS and AUTH): a daily energy
report and a monthly finance report arrive as XLSX attachments when due, once, with the same
numbers as the report's JSON; a moment that passed before the start is not sent."""

from __future__ import annotations

import io
from pathlib import Path

import openpyxl
import pytest

from hmi.reports import labels_for
from scada.config import parse_config
from scada.core.configbase import ConfigError
from scada.reports.schedule import ReportScheduler

from ..alarms.servers import mail_server
from .conftest import Reports, local


def config(tmp_path: Path, port: int, ca_file: Path, channel: str = "mail") -> object:
    return parse_config(f"""
[site]
name = "Test"
timezone = "Asia/Shanghai"
[[alarms.notifications.channels]]
name = "mail"
kind = "email"
host = "127.0.0.1"
port = {port}
user = "scada"
password = {{ env = "T_SMTP_PASSWORD" }}
sender = "Reports <reports@site.test>"
ca_file = "{ca_file}"
[[reports.schedules]]
name = "daily-energy"
kind = "energy"
every = "daily"
at = "06:00"
channel = "{channel}"
to = ["ops@site.test", "manager@site.test"]
[[reports.schedules]]
name = "monthly-finance"
kind = "finance"
every = "monthly"
at = "07:30"
group = "channel"
channel = "{channel}"
to = ["accounts@site.test"]
language = "zh-CN"
""", "<test>", tmp_path)


async def test_daily_energy_and_monthly_finance_mailed_as_xlsx(reports: Reports, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SMTP_PASSWORD", "smtp-secret-1")
    await reports.intervals("E1", local(2026, 11, 30, 10), [{"energy_total": 2.5, "energy_peak": 2.5}])
    async with mail_server(tmp_path) as smtp:
        cfg = config(tmp_path, smtp.port, smtp.ca_file)
        scheduler = ReportScheduler(reports.service, cfg, labels=labels_for)  # type: ignore[arg-type]
        scheduler.start(local(2026, 11, 30, 12))
        assert await scheduler.tick(local(2026, 11, 30, 23)) == 0
        # 1 December, 06:00: yesterday's energy; 07:30: November's finance
        assert await scheduler.tick(local(2026, 12, 1, 6, 0)) == 1
        assert await scheduler.tick(local(2026, 12, 1, 6, 5)) == 0
        assert await scheduler.tick(local(2026, 12, 1, 7, 30)) == 1
        assert await scheduler.tick(local(2026, 12, 1, 9)) == 0
        assert [(m.rcpt_tos, m.message["Subject"]) for m in smtp.received] == [
            (["ops@site.test"], "Test: Energy report 2026-11-30"),
            (["manager@site.test"], "Test: Energy report 2026-11-30"),
            (["accounts@site.test"], "Test: 财务报表 2026-11-01..2026-11-30"),
        ]
        part = next(smtp.received[0].message.iter_attachments())
        assert part.get_filename() == "report-energy-2026-11-30.xlsx"
        book = openpyxl.load_workbook(io.BytesIO(part.get_content()))
        rows = list(book["Rows"].iter_rows(values_only=True))
        assert rows[0][:3] == ("Day", "Room", "Energy (kWh)")
        assert rows[1][:3] == ("2026-11-30", "R1", 2.5)
        fin = openpyxl.load_workbook(io.BytesIO(next(smtp.received[2].message.iter_attachments()).get_content()))
        assert fin.sheetnames == ["明细", "渠道", "日", "合计", "参数"]
        assert all(m.authenticated and m.tls for m in smtp.received)


def test_a_schedule_names_an_email_channel(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        config(tmp_path, 25, tmp_path / "ca.pem", channel="pager")
    assert "reports.schedules[0].channel: unknown 'pager' (e-mail channels of [alarms.notifications]: mail)" in str(err.value)
