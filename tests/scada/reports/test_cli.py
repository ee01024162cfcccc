"""``scada report`` on the command line: CSV, XLSX and PDF files from the configured database and
historian with no server running; a wrong option named with exit status 2 and no file written;
the progress bar only on a terminal."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import openpyxl
import pytest
from pypdf import PdfReader

from historian import IntervalRecord, SqliteSettings, make_backend
from historian.rollup import day_bounds
from scada.cli.main import main
from scada.reports.cli import Progress

from ...hmi.prepaid_site import SITE
from .conftest import TZ, local


def setup(tmp_path: Path) -> Path:
    (tmp_path / "site.toml").write_text(SITE)
    config = tmp_path / "scada.toml"
    config.write_text(f"""
[site]
name = "CLI site"
timezone = "Asia/Shanghai"
import_file = "site.toml"
[database]
url = "sqlite:///{tmp_path / 'scada.db'}"
[[links]]
name = "gw"
host = "127.0.0.1"
port = 1502
[historian.sqlite]
path = "{tmp_path / 'history.db'}"
""")

    async def fill() -> None:
        backend = make_backend(SqliteSettings(tmp_path / "history.db"))
        await backend.open()
        records = [IntervalRecord(m, int(local(2026, 11, d, 9).timestamp()), 900, {"energy_total": kwh * 1_000_000, "energy_peak": kwh * 1_000_000})
                   for d in (3, 4) for m, kwh in (("E1", 2), ("E2", 3))]
        await backend.write_intervals(records)
        await backend.rebuild_days(sorted({(r.meter, *day_bounds(r.start, TZ)) for r in records}))
        await backend.close()

    asyncio.run(fill())
    assert main(["import-site", str(tmp_path / "site.toml"), "--config", str(config)]) == 0
    return config


def test_report_files_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path)
    out = tmp_path / "energy.csv"
    assert main(["report", "energy", "--from", "2026-11-03", "--to", "2026-11-04", "--group", "floor", "--out", str(out), "--config", str(config)]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0][:3] == ["day", "floor", "energy"]
    assert [r[:3] for r in rows[1:]] == [["2026-11-03", "B-F1", "5"], ["2026-11-04", "B-F1", "5"], ["total", "B-F1", "10"], ["total", "total", "10"]]
    assert "energy.csv: 2 rows" in capsys.readouterr().err
    xlsx = tmp_path / "energy.xlsx"
    assert main(["report", "energy", "--from", "2026-11-03", "--to", "2026-11-04", "--format", "xlsx", "--out", str(xlsx), "--config", str(config)]) == 0
    book = openpyxl.load_workbook(xlsx)
    assert [r[:3] for r in book["Rows"].iter_rows(min_row=2, max_row=3, values_only=True)] == [("2026-11-03", "R1", 2), ("2026-11-03", "R2", 3)]
    pdf = tmp_path / "energy.pdf"
    assert main(["report", "energy", "--from", "2026-11-03", "--to", "2026-11-04", "--format", "pdf", "--lang", "zh-CN", "--out", str(pdf),
                 "--config", str(config)]) == 0
    reader = PdfReader(pdf)
    assert len(reader.pages) == 3 and "能耗报表" in reader.pages[0].extract_text()
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    assert main(["report", "energy", "--from", "2026-11-03", "--to", "2026-11-04", "--group", "galaxy", "--out", str(bad), "--config", str(config)]) == 2
    assert "error: --group: the energy report groups by meter, room, floor, building, customer, found 'galaxy'" in capsys.readouterr().err
    assert main(["report", "finance", "--from", "2026-11-05", "--to", "2026-11-04", "--out", str(bad), "--config", str(config)]) == 2
    assert "error: --to: must be after from" in capsys.readouterr().err
    assert not bad.exists()


def test_the_progress_bar_shows_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(stream, width=10)
        bar("ledger", 0.4)
        bar("done", 1.0)
        bar.close()
    assert tty.getvalue() == "\r[####......]  40% ledger      \r[##########] 100% done        \n"
    assert pipe.getvalue() == ""
