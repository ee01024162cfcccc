"""Third-party browser files served from the project, never from a CDN and never copied into the
repository: they come with a pinned Python package at install time.

uPlot (the reports page's charts) is the built ``uPlot.iife.min.js`` and ``uPlot.min.css`` of
uPlot 1.6.31 as the PyPI package ``youplot`` (pinned in ``constraints.txt``) ships them — byte for
byte the files of the npm package ``uplot@1.6.31`` (``dist/``), checked here by SHA-256 before
they are served: another build in the installed package is refused (404 and a log line), not sent.
The package's own Python code is never imported.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import metadata

from aiohttp import web

__all__ = ["VENDOR", "install"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VendorFile:
    distribution: str
    path: str  # inside the distribution
    sha256: str
    content_type: str


VENDOR: dict[str, VendorFile] = {
    "uplot.iife.min.js": VendorFile("youplot", "youplot/vendor/uplot.iife.min.js",
                                    "2d27e8ad3d228164525ce213f9dc716f39b4e3aee0cc773fb3491c96cf4921a2", "text/javascript"),
    "uplot.min.css": VendorFile("youplot", "youplot/vendor/uplot.min.css",
                                "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04", "text/css"),
}


def _load(f: VendorFile) -> bytes | None:
    try:
        data = metadata.distribution(f.distribution).locate_file(f.path).read_bytes()  # type: ignore[union-attr]
    except (metadata.PackageNotFoundError, OSError) as exc:
        log.error("vendored browser file missing: reinstall the project's dependencies", extra={"file": f.path, "reason": str(exc)})
        return None
    digest = hashlib.sha256(data).hexdigest()
    if digest != f.sha256:
        log.error("vendored browser file is not the pinned build", extra={"file": f.path, "sha256": digest})
        return None
    return data


def install(app: web.Application) -> None:
    """``GET /static/vendor/<name>``: each file read and checked once, then served from memory."""
    cache: dict[str, bytes | None] = {}

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        f = VENDOR.get(name)
        if f is None:
            raise web.HTTPNotFound()
        if name not in cache:
            cache[name] = _load(f)
        data = cache[name]
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type=f.content_type, charset="utf-8", headers={"Cache-Control": "public, max-age=86400"})

    app.router.add_get("/static/vendor/{name}", serve, name="vendor")
