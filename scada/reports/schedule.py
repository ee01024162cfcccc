"""Scheduled reports (``[[reports.schedules]]``): a report e-mailed as XLSX at a time of day.

``every = "daily"``: at ``at`` (site time) each day, the report of the day before; ``"monthly"``:
at ``at`` on the 1st, the report of the month before. The workbook goes to every address of
``to`` through an e-mail channel of ``[alarms.notifications]`` (the notifications' SMTP path).

A schedule fires once for each moment it is due while the server runs (:meth:`ReportScheduler.tick`
is given the time; the task calls it every ``check_s``); a moment that passed while the server was
down is not sent afterwards. A failed delivery to one address is logged with the schedule, the
address and the reason, and the other addresses still get theirs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scada.alarms.notify.delivery import Attachment, Channel, DeliveryError, OutgoingMessage
from scada.config import ScadaConfig
from scada.reports.config import ReportSchedule
from scada.reports.service import ReportService
from scada.reports.xlsx import write_xlsx
from tags.timers import run_every

__all__ = ["ReportScheduler", "due_moment", "report_range"]

log = logging.getLogger(__name__)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Labels = Callable[[str], Mapping[str, str]]


def due_moment(schedule: ReportSchedule, now: dt.datetime, tz: Any) -> dt.datetime:
    """The latest moment at or before ``now`` when ``schedule`` is due."""
    local = now.astimezone(tz)
    hh, mm = (int(x) for x in schedule.at.split(":"))
    day = local.date()
    if schedule.every == "monthly":
        day = day.replace(day=1)
    moment = dt.datetime.combine(day, dt.time(hh, mm), tz)
    if moment > local:
        if schedule.every == "monthly":
            prev = day - dt.timedelta(days=1)
            moment = dt.datetime.combine(prev.replace(day=1), dt.time(hh, mm), tz)
        else:
            moment = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(hh, mm), tz)
    return moment.astimezone(dt.UTC)


def report_range(schedule: ReportSchedule, moment: dt.datetime, tz: Any) -> tuple[dt.date, dt.date]:
    """The days the report sent at ``moment`` covers (both inclusive)."""
    day = moment.astimezone(tz).date()
    if schedule.every == "monthly":
        last = day.replace(day=1) - dt.timedelta(days=1)
        return last.replace(day=1), last
    return day - dt.timedelta(days=1), day - dt.timedelta(days=1)


class ReportScheduler:
    def __init__(self, service: ReportService, config: ScadaConfig, *, labels: Labels | None = None,
                 channels: Mapping[str, Channel] | None = None, check_s: float = 30.0,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.service = service
        self.config = config
        self.schedules = list(config.reports.schedules)
        self.labels = labels
        self.check_s = check_s
        self.clock = clock
        self.tz = config.site.tz
        self._channels: dict[str, Channel] = dict(channels or {})
        self._last: dict[str, dt.datetime] = {}
        self.sent: list[tuple[str, str, str]] = []  # (schedule, address, filename), for the status and tests

    def channel(self, name: str) -> Channel:
        if name not in self._channels:
            from scada.alarms.notify.channels import build_channel  # noqa: PLC0415 - only when a schedule sends

            self._channels[name] = build_channel(self.config.alarms.notifications.channel(name), Path(self.config.base_dir))
        return self._channels[name]

    def start(self, now: dt.datetime) -> None:
        """Nothing already due at ``now`` is sent (no catching up after a restart)."""
        for s in self.schedules:
            self._last[s.name] = due_moment(s, now, self.tz)

    async def tick(self, now: dt.datetime) -> int:
        """Send every schedule due since the last tick; returns how many reports were made."""
        made = 0
        for s in self.schedules:
            moment = due_moment(s, now, self.tz)
            last = self._last.get(s.name)
            if last is not None and moment <= last:
                continue
            self._last[s.name] = moment
            try:
                await self.send(s, moment)
                made += 1
            except Exception:
                log.exception("scheduled report failed", extra={"schedule": s.name, "kind": s.kind})
        return made

    async def send(self, s: ReportSchedule, moment: dt.datetime) -> None:
        first, last = report_range(s, moment, self.tz)
        params = {"from": first.isoformat(), "to": last.isoformat(), "interval": s.interval, "format": "xlsx", "lang": s.language}
        if s.group:
            params["group"] = s.group
        report = await self.service.report(s.kind, params)
        labels = self.labels(s.language) if self.labels else None
        cfg = self.config.reports
        data = await asyncio.to_thread(lambda: write_xlsx(report, labels=labels, energy_decimals=cfg.energy_decimals,
                                                          volume_decimals=cfg.volume_decimals, generated_at=self.clock()))
        span = first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"
        filename = f"report-{s.kind}-{span}.xlsx"
        title = (labels or {}).get(f"report.kind.{s.kind}", f"{s.kind} report")
        subject = f"{self.config.site.name}: {title} {span}"
        body = f"{title}, {span} ({self.config.site.timezone}), {report.row_count} rows: see the attached workbook.\n"
        channel = self.channel(s.channel)
        for address in s.to:
            message = OutgoingMessage(0, "report", address, s.language, subject, body, attachments=(Attachment(filename, XLSX, data),))
            try:
                await channel.send(message)
            except DeliveryError as exc:
                log.warning("scheduled report not delivered", extra={"schedule": s.name, "recipient": address, "reason": str(exc)})
                continue
            self.sent.append((s.name, address, filename))
            log.info("scheduled report sent", extra={"schedule": s.name, "recipient": address, "report": filename})

    async def run(self) -> None:
        self.start(self.clock())
        await run_every(self.check_s, lambda: self.tick(self.clock()), name="report-schedules")
