"""Phone numbers are E.164 wherever they enter (contacts file, routes, account contacts), and every
value substituted into an SMS gateway's URL is encoded for the part of the URL it goes in: a
message cannot add a recipient (``&to=``) or cut itself short (``#``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from scada.alarms.notify.config import ChannelConfig, NotificationsConfig
from scada.alarms.notify.contacts import StaticContactDirectory
from scada.alarms.notify.delivery import DeliveryError, OutgoingMessage
from scada.alarms.notify.sms import SmsGatewayChannel
from scada.core.configbase import ConfigError
from scada.prepaid.accounts import checked_contact
from scada.prepaid.errors import PrepaidError
from scada.prepaid.ledger import Contact

INJECTIONS = ("123&to=+1999000000", "+8613800000000&to=+19990000000", "+86138#00000000", "+86 138 0000 0000\r\nX-Evil: 1", "call me")


def channel(url: str, **extra: object) -> SmsGatewayChannel:
    config = ChannelConfig.model_validate({"name": "sms", "kind": "sms", "url": url, "method": "GET", **extra})
    return SmsGatewayChannel(config, Path("."))


def message(to: str, text: str) -> OutgoingMessage:
    return OutgoingMessage(delivery_id=7, event="raised", recipient=to, language="en", subject="Balance", body=text, alarm={})


def test_values_are_encoded_for_their_part_of_the_url() -> None:
    sms = channel("https://sms.example.com/send/{{ id }}?to={{ to }}&msg={{ text }}&sig={{ key|urlencode }}#{{ subject }}")
    text = "Balance low & refill now: 8.50 CNY #1 /x ?y=z&to=+19990000000 100%"
    url, _headers, _body = sms.render(message("+8613800000000", text))
    parts = urlsplit(url)
    assert parts.netloc == "sms.example.com" and parts.path == "/send/7"
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    assert query == {"to": ["+8613800000000"], "msg": [text], "sig": [""]}  # one recipient, the whole text
    assert parts.fragment == "Balance"
    with_path = channel("https://sms.example.com/to/{{ to }}/{{ text }}")
    url, _h, _b = with_path.render(message("+8613800000000", "a/b?c#d"))
    assert urlsplit(url).path == "/to/%2B8613800000000/a%2Fb%3Fc%23d"


@pytest.mark.parametrize("to", INJECTIONS)
def test_a_recipient_that_is_not_e164_is_never_sent(to: str) -> None:
    sms = channel("https://sms.example.com/send?to={{ to }}&text={{ text }}")
    with pytest.raises(DeliveryError) as err:
        sms.render(message(to, "hello"))
    assert err.value.permanent and "E.164" in str(err.value)


def test_values_in_the_host_are_refused_at_configuration() -> None:
    with pytest.raises(ValidationError, match="not in the host"):
        ChannelConfig.model_validate({"name": "sms", "kind": "sms", "url": "https://{{ to }}.example.com/", "method": "GET"})


def test_header_values_with_line_breaks_are_not_sent() -> None:
    sms = channel("https://sms.example.com/send", headers={"X-Text": "{{ text }}"})
    with pytest.raises(DeliveryError, match="line break"):
        sms.render(message("+8613800000000", "one\r\nX-Evil: 1"))


@pytest.mark.parametrize("to", INJECTIONS)
def test_routes_and_contacts_files_take_e164_only(to: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"routes\[0\]\.to\[0\]"):
        NotificationsConfig.model_validate({
            "channels": [{"name": "sms", "kind": "sms", "url": "https://sms.example.com/send", "method": "GET"}],
            "routes": [{"name": "duty", "channel": "sms", "to": [to]}],
        })
    path = tmp_path / "contacts.toml"
    path.write_text(f'[[contacts]]\nroom = "R1"\nname = "A"\nphone = {to!r}\n'.replace("'", '"').replace("\r\n", "\\r\\n"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"contacts\[0\]\.phone"):
        StaticContactDirectory.load(path)


async def test_contacts_file_numbers_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "contacts.toml"
    path.write_text('[[contacts]]\nroom = "R1"\nname = "A"\nphone = "+86 138-0000-0001"\n', encoding="utf-8")
    contact = await StaticContactDirectory.load(path).room_contact("R1")
    assert contact is not None and contact.phone == "+8613800000001"


@pytest.mark.parametrize("to", INJECTIONS)
def test_account_contacts_take_e164_only(to: str) -> None:
    # the prepaid engine refuses it whatever the way in (the API answers a 422 naming the field)
    with pytest.raises(PrepaidError) as err:
        checked_contact(Contact("Li Lei", to, None, "zh-CN"))
    assert err.value.field == "contact.phone" and err.value.status == 422
    assert checked_contact(Contact("Li Lei", "+86 139-0000-0000", None, "en")) == Contact("Li Lei", "+8613900000000", None, "en")
