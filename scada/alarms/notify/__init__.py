"""Notifications of alarms: routing rules, templates, channels and delivery with a log.

Import the modules themselves (``scada.alarms.notify.notifier`` ...).
"""

__all__: list[str] = []
