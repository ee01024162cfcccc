"""``scada opcua …``: the OPC UA server's certificates.

- ``scada opcua certs`` lists the server certificate, the trusted client certificates and the
  rejected ones (a client refused for an untrusted certificate leaves it in ``rejected/``);
- ``scada opcua trust FILE|THUMBPRINT`` accepts a client certificate (a DER or PEM file, or
  the thumbprint of a rejected one); the running server picks it up without a restart;
- ``scada opcua untrust THUMBPRINT`` removes one.

Trusting and untrusting are written to the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from protocols.opcua.pki import Pki, PkiError
from scada.config import config_from_args
from scada.db.component import open_database
from scada.opcua.component import opcua_pki_dir
from scada.users.audit import Actor, AuditLog

__all__ = ["register"]


def _pki(args: argparse.Namespace) -> Any:

    config = config_from_args(args)
    if config.opcua is None:
        raise SystemExit("error: the configuration has no [opcua] section (see config/README.md)")
    return config, Pki(opcua_pki_dir(config, config.opcua))


async def _audit(config: Any, action: str, thumbprint: str, reason: str, after: dict[str, Any]) -> None:
    db = open_database(config)
    try:
        await db.upgrade()
        await AuditLog(db).write(Actor(getpass.getuser(), "cli"), action, "certificate", thumbprint, reason=reason, after=after)
    finally:
        await db.dispose()


def cmd_certs(args: argparse.Namespace) -> int:
    """scada opcua certs: the server certificate, trusted and rejected client certificates."""
    _, pki = _pki(args)
    out = sys.stdout
    if pki.cert_file.is_file():
        out.write(f"server certificate ({pki.cert_file}):\n  {pki.server_certificate().describe()}\n")
    else:
        out.write(f"server certificate: not generated yet (first start creates {pki.cert_file})\n")
    trusted, rejected = pki.listing()
    out.write(f"trusted client certificates ({pki.trusted}):\n")
    for info in trusted:
        out.write(f"  {info.describe()}\n")
    if not trusted:
        out.write("  none\n")
    out.write(f"rejected client certificates ({pki.rejected}):\n")
    for info in rejected:
        out.write(f"  {info.describe()}\n")
    if not rejected:
        out.write("  none\n")
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    """scada opcua trust: accept a client certificate (file or rejected thumbprint), audited."""
    config, pki = _pki(args)
    try:
        info = pki.trust(args.certificate)
    except PkiError as exc:
        raise SystemExit(f"error: {exc}") from None
    asyncio.run(_audit(config, "opcua.trust", info.thumbprint, args.reason or "", {
        "subject": info.subject, "application_uri": info.application_uri, "file": str(info.path),
    }))
    sys.stdout.write(f"trusted: {info.describe()}\n")
    return 0


def cmd_untrust(args: argparse.Namespace) -> int:
    """scada opcua untrust: remove a trusted client certificate, audited."""
    config, pki = _pki(args)
    try:
        info = pki.untrust(args.thumbprint)
    except PkiError as exc:
        raise SystemExit(f"error: {exc}") from None
    asyncio.run(_audit(config, "opcua.untrust", info.thumbprint, args.reason or "", {"subject": info.subject}))
    sys.stdout.write(f"no longer trusted: {info.describe()}\n")
    return 0


def register(sub: Any) -> None:
    """Add ``scada opcua`` to the command line."""
    p = sub.add_parser("opcua", help="OPC UA server certificates (trust list)")
    osub = p.add_subparsers(dest="opcua_command", required=True, metavar="ACTION")
    q = osub.add_parser("certs", help="list the server, trusted and rejected certificates")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_certs)
    q = osub.add_parser("trust", help="accept a client certificate (file, or thumbprint of a rejected one)")
    q.add_argument("certificate", help="a DER or PEM file, or the thumbprint (prefix) of a rejected certificate")
    q.add_argument("--config")
    q.add_argument("--reason", help="recorded in the audit log")
    q.set_defaults(handler=cmd_trust)
    q = osub.add_parser("untrust", help="remove a client certificate from the trust list")
    q.add_argument("thumbprint")
    q.add_argument("--config")
    q.add_argument("--reason", help="recorded in the audit log")
    q.set_defaults(handler=cmd_untrust)
