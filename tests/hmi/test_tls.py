"""The HMI over HTTPS (``hmi.tls_cert`` / ``hmi.tls_key``): pages, API and secure cookies."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hmi.component import HMI_URL

from ..harness import running_server, server_config


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "hmi.pem", folder / "hmi.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


async def test_the_hmi_serves_https_with_secure_cookies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    cert, key = self_signed(tmp_path)
    config = server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}")
    config = config.model_copy(update={"hmi": config.hmi.model_copy(update={"tls_cert": str(cert), "tls_key": str(key)})})
    async with running_server(config) as rt:
        url = rt.ctx[HMI_URL]
        assert url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(url + "/login", ssl=trusted) as r:
                assert r.status == 200 and "Secure" in r.headers.get("Set-Cookie", "")
            async with http.post(url + "/api/v1/auth/token", json={"user": "admin", "password": "admin-password-1"}, ssl=trusted) as r:
                assert r.status == 200 and (await r.json())["token"].startswith("sct_")
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with http.get(url + "/login"):  # an unknown certificate is refused by a verifying client
                    pass
            with pytest.raises(aiohttp.ClientError):
                async with http.get(url.replace("https://", "http://") + "/login"):  # no plain HTTP on the TLS port
                    pass
