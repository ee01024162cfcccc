"""Message templates (jinja2) in the recipient's language: English and Simplified Chinese.

A template set has a subject and a body per language, named ``<set>/<language>/subject.txt``
and ``<set>/<language>/body.txt``. Two sets are built in: ``alarm`` (for staff: what, where,
priority, state) and ``tenant`` (for an account's contact: the balance levels in plain words).
A ``templates_dir`` in the config is searched first, so a site can override any file or add
sets of its own. Templates run sandboxed, and an unknown variable is an error (the delivery
fails with the reason) rather than a silently blank message.

Variables: ``alarm`` (the occurrence: ``alarm_class``, ``priority``, ``state``, ``object_id``,
``meter_id``, ``room_id``, ``message``, ``detail``, ``value``, ``raised_at``…), ``event``
(raised, cleared, acknowledged) and ``event_text`` (in the language), ``title`` (the class in
the language), ``priority`` (its name in the language), ``site``, ``room`` (the room's name or
None), ``when`` (local time of the event), ``balance`` and ``currency`` (the room's balance as
displayed, or None), ``contact`` (name, phone, email, language; or None), ``language``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["BUILTIN_TEMPLATES", "CLASS_TITLES", "MessageTemplates", "RenderedMessage", "TemplateProblem"]


class TemplateProblem(Exception):
    """A message template that does not render, and why."""
    pass


CLASS_TITLES: dict[str, dict[str, str]] = {
    "en": {
        "comm_loss": "Communication lost",
        "link_down": "Communication link down",
        "relay_fault": "Relay/valve did not follow a command",
        "balance_low": "Balance low (level 1)",
        "balance_very_low": "Balance very low (level 2)",
        "balance_exhausted": "Balance exhausted (level 3)",
        "review_hold": "Register reading held for review",
        "tamper": "Tampering detected",
        "reverse_energy": "Reverse energy",
        "over_power": "Power above the limit",
        "historian_buffer": "Historian buffer filling up",
        "login_burst": "Burst of failed logins",
        "loss_high": "Loss above its limit",
    },
    "zh-CN": {
        "comm_loss": "通信中断",
        "link_down": "通信链路中断",
        "relay_fault": "继电器/阀门未执行指令",
        "balance_low": "余额不足（一级报警）",
        "balance_very_low": "余额严重不足（二级报警）",
        "balance_exhausted": "余额已用尽（三级报警）",
        "review_hold": "读数异常，待复核",
        "tamper": "窃电/开盖报警",
        "reverse_energy": "反向电能",
        "over_power": "功率超限",
        "historian_buffer": "历史数据缓存即将占满",
        "login_burst": "登录失败次数激增",
        "loss_high": "线损/变损超限",
    },
}
PRIORITY_NAMES = {
    "en": {1: "low", 2: "medium", 3: "high", 4: "critical"},
    "zh-CN": {1: "低", 2: "中", 3: "高", 4: "紧急"},
}
EVENT_TEXT = {
    "en": {"raised": "ALARM", "cleared": "cleared", "acknowledged": "acknowledged"},
    "zh-CN": {"raised": "报警", "cleared": "恢复", "acknowledged": "已确认"},
}

BUILTIN_TEMPLATES: dict[str, str] = {
    "alarm/en/subject.txt": "[{{ priority|upper }}] {{ event_text }}: {{ title }} - {{ alarm.object_type }} {{ alarm.object_id }}",
    "alarm/en/body.txt": """\
{{ event_text }}: {{ title }}
{{ alarm.message }}{% if alarm.detail %} ({{ alarm.detail }}){% endif %}

Site:      {{ site }}
Priority:  {{ priority }}
State:     {{ alarm.state.value|replace("_", " ") }}
Object:    {{ alarm.object_type }} {{ alarm.object_id }}{% if room %}, room {{ room }}{% endif %}{% if alarm.link %}, link {{ alarm.link }}{% endif %}
Time:      {{ when }}
Alarm id:  {{ alarm.id }}
""",
    "alarm/zh-CN/subject.txt": "【{{ priority }}】{{ event_text }}：{{ title }} - {{ alarm.object_id }}",
    "alarm/zh-CN/body.txt": """\
{{ event_text }}：{{ title }}
{{ alarm.message }}{% if alarm.detail %}（{{ alarm.detail }}）{% endif %}

站点：{{ site }}
优先级：{{ priority }}
对象：{{ alarm.object_type }} {{ alarm.object_id }}{% if room %}，房间 {{ room }}{% endif %}{% if alarm.link %}，链路 {{ alarm.link }}{% endif %}
时间：{{ when }}
报警编号：{{ alarm.id }}
""",
    "tenant/en/subject.txt": "{{ site }}: {{ title }} - room {{ room or alarm.object_id }}",
    "tenant/en/body.txt": """\
{% if contact %}Dear {{ contact.name }},{% else %}Dear tenant,{% endif %}
{% if alarm.alarm_class == "balance_exhausted" -%}
the prepaid balance of room {{ room or alarm.object_id }} is used up and the supply may be cut off.
{%- elif alarm.alarm_class == "balance_very_low" -%}
the prepaid balance of room {{ room or alarm.object_id }} is very low.
{%- elif alarm.alarm_class == "balance_low" -%}
the prepaid balance of room {{ room or alarm.object_id }} is low.
{%- else -%}
{{ title }} in room {{ room or alarm.object_id }}.
{%- endif %}
{% if balance is not none %}Current balance: {{ balance }} {{ currency }}. {% endif %}Please recharge soon.
{{ site }}, {{ when }}
""",
    "tenant/zh-CN/subject.txt": "{{ site }}：房间{{ room or alarm.object_id }}{{ title }}",
    "tenant/zh-CN/body.txt": """\
{% if contact %}尊敬的{{ contact.name }}：{% else %}尊敬的用户：{% endif %}
{% if alarm.alarm_class == "balance_exhausted" -%}
您房间{{ room or alarm.object_id }}的预付费余额已用尽，可能即将停止供电/供水。
{%- elif alarm.alarm_class == "balance_very_low" -%}
您房间{{ room or alarm.object_id }}的预付费余额严重不足。
{%- elif alarm.alarm_class == "balance_low" -%}
您房间{{ room or alarm.object_id }}的预付费余额不足。
{%- else -%}
您房间{{ room or alarm.object_id }}：{{ title }}。
{%- endif %}
{% if balance is not none %}当前余额：{{ balance }} {{ currency }}。{% endif %}请及时充值。
{{ site }} {{ when }}
""",
}


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A subject and body rendered for one language."""
    subject: str
    body: str


class MessageTemplates:
    """The message templates (shipped, or a folder of overrides), rendered sandboxed per language."""
    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir is not None:
            if not templates_dir.is_dir():
                raise TemplateProblem(f"alarms.notifications.templates_dir: no folder {templates_dir}")
            loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
        loaders.append(jinja2.DictLoader(BUILTIN_TEMPLATES))
        self.env = SandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined, autoescape=False,
            keep_trailing_newline=False,
        )

    def check(self, template: str, languages: tuple[str, ...] = ("en", "zh-CN")) -> None:
        """Fail at start, not at 3 a.m., when a configured template set is missing or broken."""
        for language in languages:
            for part in ("subject", "body"):
                name = f"{template}/{language}/{part}.txt"
                try:
                    self.env.get_template(name)
                except jinja2.TemplateNotFound:
                    raise TemplateProblem(f"template {name} not found (built-in sets: alarm, tenant)") from None
                except jinja2.TemplateSyntaxError as exc:
                    raise TemplateProblem(f"template {name}: line {exc.lineno}: {exc.message}") from None

    def render(self, template: str, language: str, context: dict[str, Any]) -> RenderedMessage:
        if language not in CLASS_TITLES:
            language = "en"
        alarm = context["alarm"]
        full = {
            **context,
            "language": language,
            "title": CLASS_TITLES[language].get(alarm.alarm_class, alarm.alarm_class),
            "priority": PRIORITY_NAMES[language][int(alarm.priority)],
            "event_text": EVENT_TEXT[language].get(context["event"], context["event"]),
        }
        try:
            subject = self.env.get_template(f"{template}/{language}/subject.txt").render(full)
            body = self.env.get_template(f"{template}/{language}/body.txt").render(full)
        except jinja2.TemplateError as exc:
            raise TemplateProblem(f"template {template}/{language}: {exc}") from exc
        return RenderedMessage(" ".join(subject.split()), body.strip() + "\n")
