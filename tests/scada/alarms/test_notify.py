"""Notifications delivered to real local servers: SMTP with STARTTLS and authentication, a
webhook receiver checking the HMAC signature, an HTTP SMS gateway. Retries, quiet hours,
deduplication and rate limits, with the delivery log saying what happened and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scada.alarms.clock import ManualClock
from scada.db import Database

from .harness import alarm_runtime, config_with
from .servers import mail_server, sms_gateway, webhook_receiver
from .site import build_site, site_toml

NO_DELAYS = "\n".join(
    f"[alarms.classes.{c}]\ndelay_on_s = 0\ndelay_off_s = 0"
    for c in ("comm_loss", "link_down", "relay_fault", "tamper", "over_power")
)
# 15:00 UTC is 23:00 in Asia/Shanghai (the test site's zone)
EVENING = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
NOON = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


def email_channel(port: int, ca_file: Path, *, user: str = "scada", env: str = "T_SMTP_PASSWORD") -> str:
    return f"""
[[alarms.notifications.channels]]
name = "mail"
kind = "email"
host = "127.0.0.1"
port = {port}
security = "starttls"
user = "{user}"
password = {{ env = "{env}" }}
sender = "SCADA <scada@site.test>"
ca_file = "{ca_file}"
timeout_s = 5
"""


async def test_email_over_starttls_with_auth(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SMTP_PASSWORD", "smtp-secret-1")
    assets = await build_site(db, site_toml(2))
    async with mail_server(tmp_path) as smtp:
        config = config_with(tmp_path, db_url, NO_DELAYS + email_channel(smtp.port, smtp.ca_file) + """
[[alarms.notifications.routes]]
name = "ops"
channel = "mail"
classes = ["comm_loss", "relay_fault"]
events = ["raised", "cleared"]
to = ["ops@site.test", "lead@site.test"]

[[alarms.notifications.routes]]
name = "ops-zh"
channel = "mail"
min_priority = "high"
to = ["zhang@site.test"]
language = "zh-CN"
""")
        async with alarm_runtime(config, db, assets, ManualClock(NOON)) as alarms:
            alarms.tags.write("E-R001.comm_ok", False)
            await alarms.settle()
            assert len(smtp.received) == 2
            mail = {m.rcpt_tos[0]: m for m in smtp.received}
            ops = mail["ops@site.test"]
            assert ops.authenticated and ops.tls
            assert ops.message["Subject"] == "[MEDIUM] ALARM: Communication lost - meter E-R001"
            assert ops.message["From"] == "SCADA <scada@site.test>"
            text = ops.message.get_content()
            assert "Communication lost: meter E-R001 (room 101)" in text and "Test Site" in text
            assert "2026-03-02 12:00" in text  # local time of the site

            # a high-priority alarm also goes to the Chinese-speaking engineer, in Chinese
            alarms.tags.write("E-R002.relay_fault", True)
            await alarms.settle()
            zh = [m for m in smtp.received if m.rcpt_tos == ["zhang@site.test"]]
            assert len(zh) == 1
            assert zh[0].message["Subject"] == "【高】报警：继电器/阀门未执行指令 - E-R002"
            assert "站点：Test Site" in zh[0].message.get_content()

            alarms.tags.write("E-R001.comm_ok", True)
            await alarms.settle()
            cleared = [m for m in smtp.received if m.message["Subject"].startswith("[MEDIUM] cleared")]
            assert len(cleared) == 2
            log = await alarms.notifier.deliveries()
            assert len(log) == 7 and {d.status for d in log} == {"sent"}
            assert all(d.attempts == 1 and d.sent_at is not None for d in log)


async def test_email_wrong_password_fails_with_reason(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SMTP_PASSWORD", "wrong")
    assets = await build_site(db, site_toml(1))
    async with mail_server(tmp_path) as smtp:
        config = config_with(tmp_path, db_url, NO_DELAYS + email_channel(smtp.port, smtp.ca_file) + """
[[alarms.notifications.routes]]
name = "ops"
channel = "mail"
to = ["ops@site.test"]
""")
        async with alarm_runtime(config, db, assets, ManualClock(NOON)) as alarms:
            alarms.tags.write("E-R001.tamper", True)
            await alarms.settle()
            [delivery] = await alarms.notifier.deliveries()
            assert delivery.status == "failed" and delivery.attempts == 1, delivery.reason
            assert delivery.reason.startswith("SMTP authentication failed: 535")
            [attempt] = await alarms.notifier.attempts(delivery.id)
            assert attempt.outcome == "failed" and "535" in attempt.error
            assert smtp.received == []


def webhook_channel(url: str) -> str:
    return f"""
[[alarms.notifications.channels]]
name = "hook"
kind = "webhook"
url = "{url}"
secret = {{ env = "T_HOOK_SECRET" }}
timeout_s = 5

[[alarms.notifications.routes]]
name = "hook"
channel = "hook"
events = ["raised", "acknowledged"]
"""


async def test_webhook_is_signed(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_HOOK_SECRET", "hook-secret-1")
    assets = await build_site(db, site_toml(1))
    async with webhook_receiver("hook-secret-1") as hook:
        config = config_with(tmp_path, db_url, NO_DELAYS + webhook_channel(hook.url))
        async with alarm_runtime(config, db, assets, ManualClock(NOON)) as alarms:
            alarms.tags.write("link:gw-1.comm_ok", False)
            await alarms.settle()
            [alarm] = alarms.engine.active()
            from .site import MAINT

            await alarms.engine.acknowledge(alarm.id, MAINT, "gateway rebooting")
            await alarms.settle()
    assert hook.bad_signatures == 0
    raised, acked = hook.received
    assert raised["event"] == "raised" and acked["event"] == "acknowledged"
    assert raised["alarm"]["class"] == "link_down" and raised["alarm"]["priority_name"] == "high"
    assert acked["alarm"]["acked_by"] == "max" and acked["alarm"]["ack_reason"] == "gateway rebooting"
    assert raised["subject"] == "[HIGH] ALARM: Communication link down - link gw-1"


async def test_webhook_with_the_wrong_secret_is_refused(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_HOOK_SECRET", "not-the-shared-secret")
    assets = await build_site(db, site_toml(1))
    async with webhook_receiver("hook-secret-1") as hook:
        config = config_with(tmp_path, db_url, NO_DELAYS + webhook_channel(hook.url))
        async with alarm_runtime(config, db, assets, ManualClock(NOON)) as alarms:
            alarms.tags.write("E-R001.tamper", True)
            await alarms.settle()
            [delivery] = await alarms.notifier.deliveries()
    assert hook.bad_signatures == 1 and hook.received == []
    assert delivery.status == "failed" and delivery.reason.startswith("HTTP 401 from http://127.0.0.1:")


async def test_failing_receiver_is_retried_with_backoff(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_HOOK_SECRET", "hook-secret-1")
    assets = await build_site(db, site_toml(2))
    async with webhook_receiver("hook-secret-1", fail_first=2) as hook:
        config = config_with(tmp_path, db_url, NO_DELAYS + webhook_channel(hook.url) + """
[alarms.notifications]
retry_initial_s = 10
retry_max_s = 600
max_attempts = 3
""")
        async with alarm_runtime(config, db, assets, ManualClock(NOON)) as alarms:
            alarms.tags.write("E-R001.tamper", True)
            await alarms.settle()
            [delivery] = await alarms.notifier.deliveries()
            assert delivery.status == "pending" and delivery.attempts == 1
            assert delivery.reason.startswith("attempt 1 failed: HTTP 503 from http://127.0.0.1:")
            assert "receiver overloaded" in delivery.reason
            assert delivery.next_attempt_at == NOON + timedelta(seconds=10)
            await alarms.advance(9)
            assert hook.calls == 1
            await alarms.advance(1)
            assert hook.calls == 2  # second failure: the next wait doubles
            [delivery] = await alarms.notifier.deliveries()
            assert delivery.next_attempt_at == NOON + timedelta(seconds=30)
            await alarms.advance(20)
            [delivery] = await alarms.notifier.deliveries()
            assert delivery.status == "sent" and delivery.attempts == 3 and len(hook.received) == 1
            attempts = await alarms.notifier.attempts(delivery.id)
            assert [(a.outcome, a.ts - NOON) for a in attempts] == [
                ("retry", timedelta(0)), ("retry", timedelta(seconds=10)), ("sent", timedelta(seconds=30)),
            ]
            assert "HTTP 503" in attempts[0].error and attempts[2].error == ""

            # a receiver that never recovers: given up after max_attempts, and the log says why
            hook.fail_first = 1000
            alarms.tags.write("E-R002.tamper", True)
            await alarms.settle()
            await alarms.advance(10)
            await alarms.advance(20)
            [last, _] = await alarms.notifier.deliveries()
            assert last.status == "failed" and last.attempts == 3
            assert last.reason.startswith("gave up after 3 attempts: HTTP 503")


def tenant_sms(gateway_url: str, contacts_file: Path, quiet: bool = True) -> str:
    return f"""
[alarms.notifications]
contacts_file = "{contacts_file}"
quiet_hours = {{ start = "22:00", end = "07:00" }}

[[alarms.notifications.channels]]
name = "sms"
kind = "sms"
url = "{gateway_url}"
headers = {{ Authorization = "Bearer {{{{ key }}}}" }}
body = '{{"to": {{{{ to|tojson }}}}, "text": {{{{ text|tojson }}}}}}'
key = {{ env = "T_SMS_KEY" }}
timeout_s = 5

[[alarms.notifications.routes]]
name = "tenants"
channel = "sms"
classes = ["balance_low", "balance_very_low", "balance_exhausted"]
to_room_contact = true
template = "tenant"
quiet_hours = {str(quiet).lower()}
"""


CONTACTS = """
[[contacts]]
room = "R001"
name = "李雷"
phone = "+8613800000001"
language = "zh-CN"

[[contacts]]
room = "R002"
name = "Ann Lee"
phone = "+8613800000002"
email = "ann@tenant.test"
language = "en"

[[contacts]]
room = "R003"
name = "No Phone"
email = "np@tenant.test"
"""


async def test_quiet_hours_hold_a_tenant_message_until_they_end(
    tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_SMS_KEY", "gateway-key-1")
    (tmp_path / "contacts.toml").write_text(CONTACTS, encoding="utf-8")
    assets = await build_site(db, site_toml(3))
    async with sms_gateway("gateway-key-1") as gateway:
        config = config_with(tmp_path, db_url, tenant_sms(gateway.url, tmp_path / "contacts.toml"))
        async with alarm_runtime(config, db, assets, ManualClock(EVENING)) as alarms:
            alarms.tags.write("room:R001.balance", 8.5)
            alarms.tags.write("room:R001.alarm_level", 1)
            alarms.tags.write("room:R003.alarm_level", 1)
            await alarms.settle()
            assert gateway.received == []
            log = {d.recipient: d for d in await alarms.notifier.deliveries()}
            held = log["+8613800000001"]
            assert held.status == "held" and held.reason == "quiet hours 22:00-07:00"
            assert held.next_attempt_at == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 07:00 local
            # the contact of R003 has no phone: nothing to send, and the log says so
            assert log["room:R003"].status == "skipped" and log["room:R003"].reason == "contact No Phone has no phone number"

            await alarms.advance(timedelta(hours=7, minutes=59).total_seconds())
            assert gateway.received == []
            await alarms.advance(60)
            [sms] = gateway.received
            assert sms["to"] == "+8613800000001"
            assert sms["text"].startswith("尊敬的李雷：\n您房间101的预付费余额不足。\n当前余额：8.50 CNY。请及时充值。")
            [sent] = [d for d in await alarms.notifier.deliveries() if d.recipient == "+8613800000001"]
            assert sent.status == "sent" and sent.sent_at == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)


async def test_held_message_is_cancelled_when_the_alarm_ends(
    tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_SMS_KEY", "gateway-key-1")
    (tmp_path / "contacts.toml").write_text(CONTACTS, encoding="utf-8")
    assets = await build_site(db, site_toml(2))
    async with sms_gateway("gateway-key-1") as gateway:
        config = config_with(tmp_path, db_url, tenant_sms(gateway.url, tmp_path / "contacts.toml"))
        async with alarm_runtime(config, db, assets, ManualClock(EVENING)) as alarms:
            alarms.tags.write("room:R002.alarm_level", 1)
            await alarms.settle()
            alarms.clock.advance(3600)
            alarms.tags.write("room:R002.alarm_level", 0)  # recharged during the night
            await alarms.settle()
            await alarms.advance(8 * 3600)
            [delivery] = await alarms.notifier.deliveries()
    assert gateway.received == []
    assert delivery.status == "cancelled" and delivery.reason == "the alarm cleared before the message could go"


async def test_duplicates_and_rate_limit_are_skipped(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SMS_KEY", "gateway-key-1")
    assets = await build_site(db, site_toml(4))
    async with sms_gateway("gateway-key-1") as gateway:
        config = config_with(tmp_path, db_url, NO_DELAYS + f"""
[alarms.notifications]
dedup_window_s = 3600
rate_limit = {{ messages = 3, window_s = 3600 }}

[[alarms.notifications.channels]]
name = "sms"
kind = "sms"
url = "{gateway.url}"
headers = {{ Authorization = "Bearer {{{{ key }}}}" }}
body = '{{"to": {{{{ to|tojson }}}}, "text": {{{{ text|tojson }}}}}}'
key = {{ env = "T_SMS_KEY" }}

[[alarms.notifications.routes]]
name = "duty"
channel = "sms"
to = ["+8613900000000"]
""")
        async with alarm_runtime(config, db, assets, ManualClock(NOON)) as alarms:
            # a relay that keeps failing and recovering: one message, not one per flip
            for _ in range(3):
                alarms.tags.write("E-R001.relay_fault", True)
                await alarms.settle()
                alarms.tags.write("E-R001.relay_fault", False)
                await alarms.settle()
            for i in (2, 3, 4):
                alarms.tags.write(f"E-R00{i}.relay_fault", True)
                await alarms.settle()
            log = sorted(await alarms.notifier.deliveries(), key=lambda d: d.id)
    statuses = [(d.alarm_key.split(":")[-1], d.status, d.reason.split(" (")[0]) for d in log]
    first = log[0].id
    assert statuses == [
        ("E-R001", "sent", ""),
        ("E-R001", "skipped", f"duplicate of delivery {first}"),
        ("E-R001", "skipped", f"duplicate of delivery {first}"),
        ("E-R002", "sent", ""),
        ("E-R003", "sent", ""),
        ("E-R004", "skipped", "rate limit: 3 messages per 3600 s to this recipient"),
    ]
    assert len(gateway.received) == 3


async def test_a_missing_secret_stops_the_start_naming_the_channel(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from scada.core.runtime import RuntimeError_

    monkeypatch.delenv("T_HOOK_SECRET", raising=False)
    assets = await build_site(db, site_toml(1))
    config = config_with(tmp_path, db_url, webhook_channel("http://127.0.0.1:9/hook"))
    with pytest.raises(RuntimeError_, match="notifications failed to start: alarms.notifications.channels 'hook': secret not set: environment variable T_HOOK_SECRET"):
        async with alarm_runtime(config, db, assets, ManualClock(NOON)):
            pass
