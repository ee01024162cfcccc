"""A broker that wants a user and a password, and one that speaks TLS only: the link's password
comes from a secret, its CA bundle from ``ca_file``; a wrong password keeps the gateways down."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import ipaddress
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.mqtt import sparkplug
from protocols.mqtt.config import MqttLinkConfig
from protocols.mqtt.simgw import MqttWire
from protocols.mqtt.sparkplug import DataType, Metric

from ...services import MosquittoServer, ServiceUnavailable, build_dir, require_services
from .test_links import Site, running, specs, until


def _broker(**kw: object) -> MosquittoServer:
    try:
        server = MosquittoServer(**kw)  # type: ignore[arg-type]
        server.start()
    except (ServiceUnavailable, OSError) as exc:
        if require_services():
            pytest.fail(f"required test service unavailable: Mosquitto: {exc}")
        pytest.skip(f"Mosquitto: {exc}")
    return server


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for p in (folder, *paths):
        p.chmod(0o755 if p.is_dir() else 0o644)  # the broker runs as its own user
    return paths


@pytest.fixture
def cert_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=build_dir()) as d:
        yield Path(d)


def link(port: int, **kw: object) -> MqttLinkConfig:
    return MqttLinkConfig.model_validate({"name": "s", "kind": "mqtt", "host": "127.0.0.1", "port": port, "group_id": "sec", **kw})


async def test_user_and_password_from_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _broker(users={"scada": "s3cret", "gw": "gw-pass"})
    try:
        monkeypatch.setenv("SCADA_TEST_MQTT_PASSWORD", "s3cret")
        cfg = link(broker.port, username="scada", password={"env": "SCADA_TEST_MQTT_PASSWORD"})
        assert cfg.password is not None
        site = Site(broker, [cfg], specs("s", 1), {"s": cfg.password.get()})  # as the server resolves it
        async with running(site):
            wire = MqttWire()
            await wire.connect("127.0.0.1", broker.port, "gw", username="gw", password="gw-pass")
            wire.publish(sparkplug.topic("sec", "NBIRTH", "s"), sparkplug.encode_payload([Metric("bdSeq", 0, DataType.UINT64)], 0, 1))
            wire.publish(sparkplug.topic("sec", "DBIRTH", "s", "m1"),
                         sparkplug.encode_payload([Metric("energy_total", 7.5, DataType.DOUBLE)], 1, 2))
            await until(lambda: site.value("E-s-1", "energy_total") == 7.5)
            await wire.close()
        # a wrong password: the broker refuses, the gateway stays down
        bad = Site(broker, [cfg], specs("s", 1), {"s": "wrong"})
        task = asyncio.create_task(bad.links.run(), name="mqtt-bad")
        await until(lambda: bad.links.gateways["s"].stats.reconnects >= 1)
        assert not bad.links.brokers[0].connected and bad.db.read("link:s.comm_ok").value is False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # paho-mqtt 2.2 leaves the socket of a TLS handshake that failed to the garbage collector
        # (a ResourceWarning of the library): collected here, where that is expected
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        broker.stop()


async def test_tls_with_the_sites_ca(cert_dir: Path) -> None:
    ca, cert, key = _certificates(cert_dir)
    broker = _broker(tls=(ca, cert, key))
    try:
        cfg = link(broker.port, tls=True, ca_file=str(ca))
        site = Site(broker, [cfg], specs("s", 1))
        async with running(site):
            assert site.links.brokers[0].connected
        # without the site's CA the broker's certificate is not trusted: never connected
        untrusted = Site(broker, [link(broker.port, tls=True)], specs("s", 1))
        task = asyncio.create_task(untrusted.links.run(), name="mqtt-untrusted")
        await until(lambda: untrusted.links.gateways["s"].stats.reconnects >= 1)
        assert not untrusted.links.brokers[0].connected
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # paho-mqtt 2.2 leaves the socket of a TLS handshake that failed to the garbage collector
        # (a ResourceWarning of the library): collected here, where that is expected
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        broker.stop()
