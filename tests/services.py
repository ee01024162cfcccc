"""Servers the suite runs for itself: private instances on loopback ports, data under build/.

``make test`` installs the Debian packages (``.ci/install-services.sh``); the fixtures in
``conftest.py`` start one instance per test session and stop it afterwards. With
``SCADA_TEST_REQUIRE_SERVICES=1`` (set by ``make test`` and therefore CI) a missing server is a
failure; otherwise tests that need it are skipped with the reason.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = [
    "InfluxServer",
    "MosquittoServer",
    "PostgresServer",
    "ServiceUnavailable",
    "build_dir",
    "free_port",
    "require_services",
]


class ServiceUnavailable(Exception):
    pass


def require_services() -> bool:
    return os.environ.get("SCADA_TEST_REQUIRE_SERVICES") == "1"


def build_dir() -> Path:
    path = Path(os.environ.get("SCADA_TEST_BUILD") or Path(__file__).resolve().parent.parent / "build")
    path.mkdir(parents=True, exist_ok=True)
    return path


# free_port's ports: below the kernel's ephemeral range, a block for each xdist worker, taken in
# turn from a random place in it (two sessions on one machine do not walk the same ports in step)
_PORT_BASE = 20_000
_PORT_BLOCK = 1_000
_next_port = random.randrange(_PORT_BLOCK)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A loopback port nothing listens on, for a server a test starts a little later.

    Not one the kernel picks (bind to port 0): those come from the ephemeral range, where any
    process's outgoing connection may take the port before the test's server binds it (the
    suite met "address already in use" that way). The ports come from a block below that range
    that belongs to this xdist worker, in turn, skipping any in use."""
    global _next_port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    first = _PORT_BASE + index * _PORT_BLOCK
    if first + _PORT_BLOCK > _ephemeral_low():
        with socket.socket() as s:  # no room below the ephemeral range: the kernel's choice
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for _ in range(_PORT_BLOCK):
        port = first + _next_port % _PORT_BLOCK
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ServiceUnavailable(f"no free loopback port in {first}-{first + _PORT_BLOCK - 1}")


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise ServiceUnavailable(f"server exited with {proc.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ServiceUnavailable(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class PostgresServer:
    """A throw-away PostgreSQL cluster with trust authentication on a loopback port."""

    def __init__(self, *, fsync: bool = False) -> None:
        """``fsync``: as a production server runs (the benchmarks); the tests run without it."""
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        self.fsync = fsync
        if not bins:
            raise ServiceUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bindir = Path(bins[-1]).parent
        self.port = free_port()
        self.user = "postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable("no 'postgres' system user to run the server as") from None
            self._run_as = ["runuser", "-u", "postgres", "--"]
        self.root = self._data_root()
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def _data_root(self) -> Path:
        base = build_dir() / "pg"
        base.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=f"pg-{os.getpid()}-", dir=base))
        if self._run_as and not self._accessible(root):
            shutil.rmtree(root, ignore_errors=True)
            root = Path(tempfile.mkdtemp(prefix="scada-test-pg-"))
        if self._run_as:
            shutil.chown(root, "postgres", "postgres")
        return root

    def _accessible(self, path: Path) -> bool:
        shutil.chown(path, "postgres", "postgres")
        return subprocess.run([*self._run_as, "test", "-w", str(path)], check=False).returncode == 0

    def start(self) -> None:
        subprocess.run(
            [*self._run_as, str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
             "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True,
        )
        with open(self.log, "wb") as logf:
            self._spawn(logf)
        wait_port(self.port, 30, self.proc, self.log)
        self._wait_accepting(30)

    def _wait_accepting(self, timeout: float) -> None:
        # the port opens before start-up ends, and a connection made then is refused with
        # "the database system is starting up": wait until the server takes connections
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user],
                check=False, capture_output=True,
            )
            if ready.returncode == 0:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceUnavailable(f"PostgreSQL exited with {self.proc.returncode}: {self.log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"PostgreSQL on 127.0.0.1:{self.port} does not take connections after {timeout}s")
            time.sleep(0.1)

    def _spawn(self, logf: Any) -> None:
        if self._run_as:
            shutil.chown(self.log, "postgres", "postgres")
        self.proc = subprocess.Popen(
            [*self._run_as, str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
             *(() if self.fsync else ("-c", "fsync=off", "-c", "full_page_writes=off")), "-c", "max_connections=200"],
            stdout=logf, stderr=subprocess.STDOUT,
        )

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


class InfluxServer:
    """A throw-away InfluxDB 1.x (Debian's ``influxdb``) on loopback ports, with its own config
    file and meta/data/wal directories under build/. It can be stopped and started again on
    the same ports and data (outage tests)."""

    def __init__(self) -> None:
        binary = shutil.which("influxd")
        if binary is None:
            raise ServiceUnavailable("influxd not found (apt-get install influxdb)")
        self.binary = binary
        base = build_dir() / "influx"
        base.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f"influx-{os.getpid()}-", dir=base))
        self.port = free_port()
        self.rpc_port = free_port()  # the backup/restore service; its default 8088 would collide
        self.log = self.root / "influxd.log"
        self.config = self.root / "influxdb.conf"
        self.config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{self.root / 'meta'}"
  logging-enabled = false

[data]
  dir = "{self.root / 'data'}"
  wal-dir = "{self.root / 'wal'}"
  query-log-enabled = false
  cache-max-memory-size = 268435456

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [self.binary, "run", "-config", str(self.config)], stdout=logf, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise ServiceUnavailable(f"influxd exited with {self.proc.returncode}: {tail}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1) as resp:
                    if resp.status == 204:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServiceUnavailable(f"influxd does not answer /ping on {self.url} after {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def query(self, q: str, db: str | None = None, epoch: str | None = "s") -> dict[str, Any]:
        """Run InfluxQL (POST /query) and return the decoded answer."""
        data = {"q": q, **({"db": db} if db else {})}
        url = self.url + "/query" + (f"?epoch={epoch}" if epoch else "")
        req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class MosquittoServer:
    """A throw-away Mosquitto (Debian's ``mosquitto``) on a loopback port, anonymous, with its
    config and log under build/."""

    def __init__(self, *, users: dict[str, str] | None = None, tls: tuple[Path, Path, Path] | None = None) -> None:
        """``users``: name -> password (anonymous clients are then refused); ``tls``: (CA,
        certificate, key) files for a TLS listener."""
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            raise ServiceUnavailable("mosquitto not found (apt-get install mosquitto)")
        self.binary = binary
        base = build_dir() / "mosquitto"
        base.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f"mqtt-{os.getpid()}-", dir=base))
        self.port = free_port()
        self.log = self.root / "mosquitto.log"
        self.config = self.root / "mosquitto.conf"
        auth = "allow_anonymous true\n"
        if users:
            passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            pw_file = self.root / "passwd"
            for i, (user, password) in enumerate(users.items()):
                subprocess.run([passwd, "-b", *(["-c"] if i == 0 else []), str(pw_file), user, password], check=True, capture_output=True)
            pw_file.chmod(0o644)
            auth = f"allow_anonymous false\npassword_file {pw_file}\n"
        if tls:
            auth += f"cafile {tls[0]}\ncertfile {tls[1]}\nkeyfile {tls[2]}\n"
        self.config.write_text(
            f"""listener {self.port} 127.0.0.1
{auth}persistence false
log_dest file {self.log}
log_type error
log_type warning
max_queued_messages 100000
max_inflight_messages 0
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        run_as = ["runuser", "-u", "mosquitto", "--"] if os.geteuid() == 0 and _user_exists("mosquitto") else []
        if run_as:
            shutil.chown(self.root, "mosquitto")
        with open(self.root / "stdout.log", "wb") as out:
            self.proc = subprocess.Popen([*run_as, self.binary, "-c", str(self.config)], stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.port, 15, self.proc, self.root / "stdout.log")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
