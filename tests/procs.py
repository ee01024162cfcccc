"""Run our own command line as a real process: wait for log lines, send signals, collect output."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ScadaProcess", "demo_port_args"]


def demo_port_overrides() -> list[str]:
    """Config overrides that move every port of the demo to a free one, so a demo in a test
    never collides with another demo (or another suite) on this machine."""
    from .services import free_port

    return [
        "hmi.port=0",
        "simulator.control_port=0",
        "opcua.port=0",
        f"links[0].port={free_port()}",
        f"links[1].port={free_port()}",
    ]


def isolated_demo_overrides(base: Path) -> list[str]:
    """The demo's ports (free ones) and files (under ``base``) for an in-process demo server."""
    return [
        f"database.url=\"sqlite:///{base / 'scada.db'}\"",
        f"runtime.data_dir=\"{base}\"",
        f"simulator.state_file=\"{base / 'sim.json'}\"",
        *demo_port_overrides(),
    ]


def demo_port_args() -> list[str]:
    """``--set`` arguments of :func:`demo_port_overrides` for ``python -m scada``."""
    return [arg for override in demo_port_overrides() for arg in ("--set", override)]


class ScadaProcess:
    def __init__(self, args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **(env or {})}
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scada", *args],
            cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, "out"), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, "err"), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _pump(self, stream: object, sink: list[str], name: str) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))
            self._lines.put((name, line.rstrip("\n")))

    def wait_for(self, pattern: str, timeout: float = 60.0) -> str:
        """The first new output line matching ``pattern``; fails with the output so far."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _, line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self._lines.empty():
                    break
                continue
            if rx.search(line):
                return line
        raise AssertionError(
            f"no line matching {pattern!r} (exit={self.proc.poll()}):\n" + "\n".join(self.stderr[-40:] + self.stdout[-10:])
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._close()
            raise AssertionError("process did not stop in time:\n" + "\n".join(self.stderr[-40:])) from None
        self._close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        for t in self._readers:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> ScadaProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
