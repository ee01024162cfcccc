"""The payment message reads as a bill payment when the payment paid a bill (the back office),
and as a recharge otherwise, in both languages."""

from __future__ import annotations

from scada.alarms.notify.contacts import Contact
from scada.operations.messages import MessageTemplates

BASE = {"site": "Demo", "room": "R101", "contact": Contact("Li Lei", "+8613800000001", None, "zh-CN"), "currency": "CNY",
        "level": 0, "when": "2026-12-01 09:00", "text": "", "amount": "1000.00", "reference": "B-9", "balance": "0.00"}


def test_payment_message_names_the_bill_it_paid() -> None:
    templates = MessageTemplates()
    subject, body = templates.render("payment", "en", BASE | {"bill": "2026-11-0001"})
    assert "we received 1000.00 CNY for room R101 on bill 2026-11-0001 (reference B-9). New balance: 0.00 CNY." in body, body
    subject, body = templates.render("payment", "zh-CN", BASE | {"bill": "2026-11-0001"})
    assert subject == "Demo：房间R101缴费成功" and "已缴纳账单 2026-11-0001 1000.00 CNY（单号 B-9）" in body, (subject, body)
    subject, body = templates.render("payment", "zh-CN", BASE | {"bill": None})
    assert subject == "Demo：房间R101充值成功" and "已充值 1000.00 CNY（单号 B-9）" in body, (subject, body)
    _, body = templates.render("payment", "en", BASE | {"bill": None})
    assert "for room R101 (reference B-9)" in body, body
