"""E-mail over SMTP submission: STARTTLS (or implicit TLS) and authentication.

The standard library's ``smtplib`` runs in a worker thread (it blocks), with a timeout; one
connection per message, which at alarm rates is simpler and more robust than a pool.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from scada.alarms.notify.config import ChannelConfig
from scada.alarms.notify.delivery import DeliveryError, OutgoingMessage, ssl_context

__all__ = ["EmailChannel"]


class EmailChannel:
    """E-mail over SMTP (STARTTLS or TLS, certificates verified)."""
    kind = "email"

    def __init__(self, config: ChannelConfig, base_dir: Path) -> None:
        assert config.host and config.sender
        self.name = config.name
        self.config = config
        self.password = config.password.require(base_dir) if config.password is not None else None
        self.context = ssl_context(config.ca_file, base_dir) if config.security != "none" else None

    async def send(self, message: OutgoingMessage) -> None:
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(f"alarm{message.delivery_id}")
        mail["Content-Language"] = message.language
        mail.set_content(message.body)
        for a in message.attachments:
            maintype, _, subtype = a.content_type.partition("/")
            mail.add_attachment(a.data, maintype=maintype, subtype=subtype, filename=a.filename)
        await asyncio.to_thread(self._send, mail)

    def _send(self, mail: EmailMessage) -> None:
        c = self.config
        try:
            if c.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(c.host or "", c.port, timeout=c.timeout_s, context=self.context)
            else:
                client = smtplib.SMTP(c.host or "", c.port, timeout=c.timeout_s)
            with client:
                client.ehlo()
                if c.security == "starttls":
                    if not client.has_extn("starttls"):
                        raise DeliveryError(f"{c.host}:{c.port} does not offer STARTTLS", permanent=True)
                    client.starttls(context=self.context)
                    client.ehlo()
                if c.user:
                    client.login(c.user, self.password or "")
                client.send_message(mail)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}", permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            refused = "; ".join(f"{r}: {code} {_text(msg)}" for r, (code, msg) in exc.recipients.items())
            raise DeliveryError(f"recipient refused: {refused}", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise DeliveryError(f"SMTP error {exc.smtp_code} {_text(exc.smtp_error)}", permanent=permanent) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"TLS certificate of {c.host} not trusted: {exc.verify_message}", permanent=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP {c.host}:{c.port}: {exc!r}") from None

    async def close(self) -> None:
        return None


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
