"""The tenant messages' SMS channel on the demo site: the notifier's channel pointed at the SMS
gateway test double (``tests.scada.alarms.servers.sms_gateway``) and the messages sent through it,
and quiet hours that cover, or avoid, the (real) hour now, as the notifier runs on the real clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from ..scada.alarms.servers import SmsGateway

__all__ = ["SMS_KEY_ENV", "quiet_hours", "sms_settings"]

SMS_KEY_ENV = "T_SMS_KEY"  # the gateway's key, from the environment as a deployment keeps it


def sms_settings(gateway: SmsGateway) -> tuple[str, str]:
    """Config overrides: an ``sms`` channel to ``gateway`` (its key from ``SMS_KEY_ENV``), and
    tenant messages sent through it."""
    channel = (f'[{{ name = "sms", kind = "sms", url = "{gateway.url}", headers = {{ Authorization = "Bearer {{{{ key }}}}" }}, '
               f'body = \'{{"to": {{{{ to|tojson }}}}, "text": {{{{ text|tojson }}}}}}\', key = {{ env = "{SMS_KEY_ENV}" }}, timeout_s = 5 }}]')
    return f"alarms.notifications.channels={channel}", 'operations.messages.channels=["sms"]'


def quiet_hours(*, now: bool) -> str:
    """A config override: quiet hours that cover the site's hour now (``now``) or lie hours away."""
    local = dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    start, end = (local.hour, local.hour + 2) if now else (local.hour + 6, local.hour + 7)
    return f'alarms.notifications.quiet_hours={{ start = "{start % 24:02d}:00", end = "{end % 24:02d}:00" }}'
