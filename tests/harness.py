"""An in-process server for functional tests: the real runtime, real sockets on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from scada.config import ScadaConfig, parse_config
from scada.core.runtime import Runtime
from scada.server import build_runtime

__all__ = ["running_server", "server_config"]


def server_config(tmp_path: Path, db_url: str, extra: str = "", *, site: str = "Test Site") -> ScadaConfig:
    text = f"""
[site]
name = "{site}"
timezone = "Asia/Shanghai"

[database]
url = "{db_url}"

[hmi]
host = "127.0.0.1"
port = 0

[admin]
password = {{ env = "SCADA_TEST_ADMIN_PASSWORD" }}
{extra}
"""
    return parse_config(text, "<test>", tmp_path)


@asynccontextmanager
async def running_server(config: ScadaConfig, **kwargs: Any) -> AsyncIterator[Runtime]:
    runtime = build_runtime(config, announce=lambda _m: None, **kwargs)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
