"""Local servers the notification tests deliver to, each on a free loopback port (port 0):
a real SMTP server (aiosmtpd) with STARTTLS and authentication, a webhook receiver that checks
the HMAC signature, and a stub of an HTTP SMS gateway (the real one cannot run here)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["MailServer", "SmsGateway", "WebhookReceiver", "mail_server", "make_certificate", "sms_gateway", "webhook_receiver"]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem). The cert is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated: bool
    tls: bool


@dataclass
class MailServer:
    port: int
    ca_file: Path
    user: str
    password: str
    received: list[ReceivedMail] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        self.received.append(
            ReceivedMail(envelope.mail_from or "", list(envelope.rcpt_tos), message,  # type: ignore[arg-type]
                         bool(session.authenticated), session.ssl is not None)
        )
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == self.user.encode() and data.password == self.password.encode()
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 535 on failure


@asynccontextmanager
async def mail_server(folder: Path, user: str = "scada", password: str = "smtp-secret-1") -> AsyncIterator[MailServer]:
    """SMTP on 127.0.0.1: STARTTLS required before AUTH, AUTH required before MAIL."""
    cert, key = make_certificate(folder)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    server = MailServer(0, cert, user, password)
    listener = await loop.create_server(
        lambda: SMTP(server, hostname="mail.test", tls_context=tls, require_starttls=True, auth_required=True,
                     auth_require_tls=True, authenticator=server.authenticate, loop=loop),
        "127.0.0.1", 0,
    )
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


@dataclass
class WebhookReceiver:
    url: str
    secret: str
    fail_first: int = 0  # answer 503 this many times first
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    calls: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Scada-Signature", ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        if self.calls <= self.fail_first:
            return web.Response(status=503, text="receiver overloaded")
        document = json.loads(body)
        assert request.headers["X-Scada-Delivery"] == str(document["delivery_id"])
        self.received.append(document)
        return web.Response(status=204)


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def webhook_receiver(secret: str, fail_first: int = 0) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver("", secret, fail_first)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with _serve(app) as port:
        receiver.url = f"http://127.0.0.1:{port}/hook"
        yield receiver


@dataclass
class SmsGateway:
    """Accepts ``POST /send`` with a JSON body {to, text} and a Bearer key, like many gateways.
    With ``per_second`` it rate-limits like them: past that many messages in a second it answers
    429 with ``Retry-After: 1`` (counted in ``refused``)."""

    url: str
    key: str
    received: list[dict[str, Any]] = field(default_factory=list)
    per_second: int | None = None
    refused: int = 0
    _window: list[float] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": "bad key"}, status=403)
        if self.per_second is not None:
            now = asyncio.get_running_loop().time()
            self._window = [t for t in self._window if now - t < 1.0]
            if len(self._window) >= self.per_second:
                self.refused += 1
                return web.json_response({"error": "too many requests"}, status=429, headers={"Retry-After": "1"})
            self._window.append(now)
        document = await request.json()
        if not isinstance(document.get("to"), str) or not isinstance(document.get("text"), str):
            return web.json_response({"error": "to and text required"}, status=400)
        self.received.append(document)
        return web.json_response({"id": len(self.received)}, status=201)


@asynccontextmanager
async def sms_gateway(key: str, per_second: int | None = None) -> AsyncIterator[SmsGateway]:
    gateway = SmsGateway("", key, per_second=per_second)
    app = web.Application()
    app.router.add_post("/send", gateway.handle)
    async with _serve(app) as port:
        gateway.url = f"http://127.0.0.1:{port}/send"
        yield gateway
