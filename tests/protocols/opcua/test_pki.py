"""The server certificate and the trust list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from protocols.opcua.pki import Pki, PkiError


def client_cert(uri: str = "urn:client", days: int = 30) -> x509.Certificate:
    key = cert_gen.generate_private_key()
    return cert_gen.generate_self_signed_app_certificate(
        key, "client", {}, [x509.UniformResourceIdentifier(uri)], extended=[ExtendedKeyUsageOID.CLIENT_AUTH], days=days
    )


def app(uri: str = "urn:client") -> ua.ApplicationDescription:
    return ua.ApplicationDescription(ApplicationUri=uri)


def test_server_certificate_generated_once_and_renewed_for_a_new_uri(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    assert pki.ensure_server_certificate("urn:a:scada", "SCADA", ["127.0.0.1", "scada.example"])
    assert oct(pki.key_file.stat().st_mode & 0o777) == "0o600"
    info = pki.server_certificate()
    assert info.application_uri == "urn:a:scada"
    cert = x509.load_der_x509_certificate(pki.cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "scada.example" in san.get_values_for_type(x509.DNSName)
    assert not pki.ensure_server_certificate("urn:a:scada", "SCADA", [])  # kept
    key_before = pki.key_file.read_bytes()
    assert pki.ensure_server_certificate("urn:b:scada", "SCADA", [])  # new URI → new certificate, same key
    assert pki.server_certificate().application_uri == "urn:b:scada" and pki.key_file.read_bytes() == key_before


async def test_untrusted_client_is_rejected_then_trusted_by_thumbprint(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure_dirs()
    cert = client_cert()
    with pytest.raises(ServiceError) as err:
        await pki.validate_client(cert, app())
    assert err.value.code == ua.StatusCodes.BadCertificateUntrusted
    trusted, rejected = pki.listing()
    assert trusted == [] and len(rejected) == 1
    info = pki.trust(rejected[0].thumbprint[:10])
    assert info.path is not None and info.path.parent == pki.trusted
    await pki.validate_client(cert, app())  # accepted without a restart
    assert pki.listing()[1] == []  # no longer in rejected/
    pki.untrust(info.thumbprint)
    with pytest.raises(ServiceError):
        await pki.validate_client(cert, app())


async def test_trust_a_pem_file_and_check_uri_and_validity(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    cert = client_cert("urn:other")
    pem = tmp_path / "client.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.trust(str(pem))
    await pki.validate_client(cert, app("urn:other"))
    with pytest.raises(ServiceError) as err:
        await pki.validate_client(cert, app("urn:somebody-else"))
    assert err.value.code == ua.StatusCodes.BadCertificateUriInvalid
    key = cert_gen.generate_private_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.UTC)
    expired = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=10)).not_valid_after(now - dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:old")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ServiceError) as err:
        await pki.validate_client(expired, app("urn:old"))
    assert err.value.code == ua.StatusCodes.BadCertificateTimeInvalid
    assert expired.not_valid_after_utc < dt.datetime.now(dt.UTC)


def test_trust_refuses_what_is_not_a_certificate(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"not a certificate")
    with pytest.raises(PkiError, match="junk.der: not a DER or PEM"):
        pki.trust(str(junk))
    with pytest.raises(PkiError, match="no such file, and not a certificate thumbprint"):
        pki.trust("nope")
    with pytest.raises(PkiError, match="no rejected certificate"):
        pki.trust("deadbeefdeadbeef")
