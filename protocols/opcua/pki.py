"""The server's certificate and the trust list of client certificates.

Layout under the PKI folder (``<data_dir>/pki`` unless configured)::

    own/cert.der      the server's certificate, generated on first start (and again when it
    own/key.pem       expires or no longer names the application URI); the key is mode 0600
    trusted/          client certificates accepted for signed / encrypted channels
    rejected/         certificates of clients that were refused, to inspect and accept

A client certificate is accepted when it is valid now, names the client's application URI and is
byte-for-byte one of the certificates in ``trusted/`` (self-signed application certificates are the
norm in OPC UA). ``trust()`` accepts one (``scada opcua trust FILE|THUMBPRINT``); copying a DER
or PEM file into ``trusted/`` does the same. The trust list is re-read when the folder changes,
without a restart. asyncua's own default accepts every certificate; this does not.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertInfo", "Pki", "PkiError", "load_certificate_bytes"]

log = logging.getLogger(__name__)

_SERVER_CERT_DAYS = 5 * 365
_RENEW_BEFORE = dt.timedelta(days=30)


class PkiError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class CertInfo:
    thumbprint: str  # SHA-1 of the DER, hex: what OPC UA tools show
    subject: str
    application_uri: str | None
    not_after: dt.datetime
    path: Path | None = None

    def describe(self) -> str:
        uri = self.application_uri or "no application URI"
        return f"{self.thumbprint}  {self.subject}  ({uri}, valid until {self.not_after:%Y-%m-%d})"


def load_certificate_bytes(data: bytes, source: str = "certificate") -> x509.Certificate:
    """A certificate from DER or PEM bytes; ``PkiError`` naming ``source`` when it is neither."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"{source}: not a DER or PEM X.509 certificate ({exc})") from None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(_der(cert)).hexdigest()  # noqa: S324 - the OPC UA thumbprint, not a security check


def _application_uri(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _info(cert: x509.Certificate, path: Path | None = None) -> CertInfo:
    return CertInfo(_thumbprint(cert), cert.subject.rfc4514_string(), _application_uri(cert), cert.not_valid_after_utc, path)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "certificate"


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.own = root / "own"
        self.trusted = root / "trusted"
        self.rejected = root / "rejected"
        self.cert_file = self.own / "cert.der"
        self.key_file = self.own / "key.pem"
        self._trusted_stamp: tuple[int, int] | None = None
        self._trusted_ders: frozenset[bytes] = frozenset()
        self._rejected_logged: set[str] = set()

    def ensure_dirs(self) -> None:
        for d in (self.own, self.trusted, self.rejected):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.own, 0o700)

    # -- the server's own certificate --------------------------------------------------------
    def ensure_server_certificate(self, application_uri: str, server_name: str, hosts: list[str]) -> bool:
        """Generate the key and certificate when missing, expiring within 30 days, or not naming
        ``application_uri``. Blocking (RSA key generation): call it in a thread. True when new."""
        self.ensure_dirs()
        key = None
        if self.key_file.is_file():
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        if key is not None and self.cert_file.is_file():
            cert = x509.load_der_x509_certificate(self.cert_file.read_bytes())
            fresh = cert.not_valid_after_utc - _RENEW_BEFORE > dt.datetime.now(dt.UTC)
            if fresh and _application_uri(cert) == application_uri:
                return False
        if key is None:
            key = cert_gen.generate_private_key()
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(cert_gen.dump_private_key_as_pem(key))
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
        seen: set[str] = set()
        for host in [*hosts, socket.gethostname(), "localhost"]:
            if not host or host in seen or host in ("0.0.0.0", "::"):
                continue
            seen.add(host)
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = cert_gen.generate_self_signed_app_certificate(
            key, server_name, {}, names, extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            days=_SERVER_CERT_DAYS,
        )
        tmp = self.cert_file.with_suffix(".tmp")
        tmp.write_bytes(_der(cert))
        tmp.replace(self.cert_file)
        log.info("server certificate generated", extra={"file": str(self.cert_file), "thumbprint": _thumbprint(cert)})
        return True

    def server_certificate(self) -> CertInfo:
        return _info(x509.load_der_x509_certificate(self.cert_file.read_bytes()), self.cert_file)

    # -- trust list ------------------------------------------------------------------------------
    def _certs_in(self, folder: Path) -> list[tuple[x509.Certificate, Path]]:
        out: list[tuple[x509.Certificate, Path]] = []
        if not folder.is_dir():
            return out
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            try:
                out.append((load_certificate_bytes(path.read_bytes(), str(path)), path))
            except (PkiError, OSError) as exc:
                log.warning("ignoring a file in the trust list", extra={"file": str(path), "error": str(exc)})
        return out

    def _refresh_trusted(self) -> None:
        try:
            st = self.trusted.stat()
        except FileNotFoundError:
            self._trusted_ders = frozenset()
            self._trusted_stamp = None
            return
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._trusted_stamp:
            self._trusted_ders = frozenset(_der(c) for c, _ in self._certs_in(self.trusted))
            self._trusted_stamp = stamp

    def is_trusted(self, cert: x509.Certificate) -> bool:
        self._refresh_trusted()
        return _der(cert) in self._trusted_ders

    def reject(self, cert: x509.Certificate) -> Path:
        """Keep a refused client's certificate in ``rejected/`` so that it can be accepted."""
        self.rejected.mkdir(parents=True, exist_ok=True)
        info = _info(cert)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        path = self.rejected / f"{_safe(str(cn[0].value) if cn else 'client')}-{info.thumbprint}.der"
        if not path.exists():
            path.write_bytes(_der(cert))
        return path

    def trust(self, source: str) -> CertInfo:
        """Accept a certificate: ``source`` is a DER/PEM file or the thumbprint (or a unique
        prefix of at least 8 characters) of one in ``rejected/``."""
        path = Path(source)
        rejected_path: Path | None = None
        if path.is_file():
            cert = load_certificate_bytes(path.read_bytes(), source)
        else:
            prefix = source.strip().lower()
            if not re.fullmatch(r"[0-9a-f]{8,40}", prefix):
                raise PkiError(f"{source}: no such file, and not a certificate thumbprint")
            matches = [(c, p) for c, p in self._certs_in(self.rejected) if _thumbprint(c).startswith(prefix)]
            if not matches:
                raise PkiError(f"no rejected certificate with thumbprint {source} (see `scada opcua certs`)")
            if len(matches) > 1:
                raise PkiError(f"thumbprint {source} is ambiguous: {len(matches)} rejected certificates match")
            cert, rejected_path = matches[0]
        self.trusted.mkdir(parents=True, exist_ok=True)
        info = _info(cert)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        target = self.trusted / f"{_safe(str(cn[0].value) if cn else 'client')}-{info.thumbprint}.der"
        target.write_bytes(_der(cert))
        for c, p in self._certs_in(self.rejected):
            if _der(c) == _der(cert):
                p.unlink(missing_ok=True)
        if rejected_path is not None:
            rejected_path.unlink(missing_ok=True)
        return _info(cert, target)

    def untrust(self, thumbprint: str) -> CertInfo:
        prefix = thumbprint.strip().lower()
        matches = [(c, p) for c, p in self._certs_in(self.trusted) if _thumbprint(c).startswith(prefix)]
        if len(matches) != 1:
            raise PkiError(f"{len(matches)} trusted certificates match thumbprint {thumbprint}")
        cert, path = matches[0]
        path.unlink()
        return _info(cert, path)

    def listing(self) -> tuple[list[CertInfo], list[CertInfo]]:
        """(trusted, rejected)"""
        return (
            [_info(c, p) for c, p in self._certs_in(self.trusted)],
            [_info(c, p) for c, p in self._certs_in(self.rejected)],
        )

    # -- the asyncua certificate validator -------------------------------------------------------
    async def validate_client(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        """Raise ``ServiceError`` with the OPC UA status of why ``cert`` is refused."""
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid)
        if app.ApplicationUri and _application_uri(cert) != app.ApplicationUri:
            raise ServiceError(ua.StatusCodes.BadCertificateUriInvalid)
        trusted = await asyncio.to_thread(self.is_trusted, cert)
        if not trusted:
            path = await asyncio.to_thread(self.reject, cert)
            info = _info(cert)
            if info.thumbprint not in self._rejected_logged:
                self._rejected_logged.add(info.thumbprint)
                log.warning(
                    "OPC UA client certificate not trusted",
                    extra={"thumbprint": info.thumbprint, "subject": info.subject, "kept_in": str(path)},
                )
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
