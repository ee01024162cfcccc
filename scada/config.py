"""The runtime configuration: TOML parsed once at startup into frozen, cross-checked models.

``load_config(path)`` returns a :class:`ScadaConfig` or raises :class:`ConfigError` listing every
problem as ``<file>: <key path>: <what was expected>, found <what was found>``.

Relative paths in a config file are resolved against the directory of that file (for the
embedded demo defaults: against the current directory).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from protocols.dlt645.config import Dlt645LinkConfig
from protocols.modbus.config import LinkConfig, ModbusConfig, SimulatorConfig
from protocols.mqtt.config import MqttLinkConfig
from protocols.opcua.config import OpcUaConfig
from scada.alarms.config import AlarmsConfig
from scada.approvals.config import ApprovalsConfig
from scada.billing.config import BillingConfig
from scada.commands.config import CommandsConfig
from scada.core.configbase import (
    ConfigError,
    ConfigModel,
    SecretRef,
    format_validation_error,
)
from scada.core.context import Key
from scada.history.config import HistorianConfig
from scada.operations.config import OperationsConfig
from scada.payments.config import PaymentsConfig
from scada.prepaid.config import PrepaidConfig
from scada.reports.config import ReportsConfig
from scada.tenants.config import TenantsConfig
from scada.topology.config import TopologyConfig

__all__ = [
    "CONFIG",
    "is_loopback",
    "security_problems",
    "AdminConfig",
    "DatabaseConfig",
    "LoggingConfig",
    "RuntimeConfig",
    "ScadaConfig",
    "SiteConfig",
    "HmiConfig",
    "LoginConfig",
    "config_from_args",
    "load_config",
    "load_demo_config",
    "parse_config",
]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

# ISO 4217 minor units of the currencies we expect; others must set minor_units explicitly
_MINOR_UNITS = {"CNY": 2, "EUR": 2, "USD": 2, "GBP": 2, "ZAR": 2, "HKD": 2, "JPY": 0, "KRW": 0, "KWD": 3}


class SiteConfig(ConfigModel):
    """The ``[site]`` section: name, time zone, currency, the site file to import."""
    name: str = Field(min_length=1)
    timezone: str = "UTC"
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    minor_units: int | None = Field(default=None, ge=0, le=4)
    import_file: str | None = None  # a site TOML/CSV imported at start (idempotent)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like 'Asia/Shanghai')") from None
        return value

    @model_validator(mode="after")
    def _minor_units_known(self) -> SiteConfig:
        if self.minor_units is None and self.currency not in _MINOR_UNITS:
            raise ValueError(f"currency {self.currency} is not known: set site.minor_units")
        return self

    @property
    def currency_minor_units(self) -> int:
        return self.minor_units if self.minor_units is not None else _MINOR_UNITS[self.currency]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DatabaseConfig(ConfigModel):
    # sqlite:///relative/or/absolute.db  or  postgresql://user@host:port/dbname
    """The ``[database]`` section: the DSN (SQLite file or PostgreSQL) and its password secret."""
    url: str = "sqlite:///var/scada.db"
    password: SecretRef | None = None
    pool_size: int = Field(default=5, ge=1, le=100)
    # PostgreSQL: how long a query waits for a free pooled connection before it fails
    pool_timeout_s: float = Field(default=30.0, ge=0.1, le=600.0)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(f"expected a sqlite:/// or postgresql:// URL, found {value!r}")
        if "@" in value and ":" in value.split("://", 1)[-1].split("@", 1)[0]:
            raise ValueError("the URL must not contain a password: use database.password")
        return value


class LoggingConfig(ConfigModel):
    """The ``[logging]`` section: level and format (human or JSON)."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["human", "json"] = "human"


class RuntimeConfig(ConfigModel):
    """The ``[runtime]`` section: data folder, stop time-out, task restart policy."""
    data_dir: str = "var"
    stop_timeout_s: float = Field(default=10.0, gt=0, le=300)
    restart_initial_s: float = Field(default=1.0, gt=0)
    restart_max_s: float = Field(default=60.0, gt=0)
    restart_limit: int = Field(default=10, ge=0)  # restarts within restart_window_s, then fatal
    restart_window_s: float = Field(default=600.0, gt=0)


class AdminConfig(ConfigModel):
    """The bootstrap administrator created at start when the user store has none."""

    user: str = Field(default="admin", min_length=1)
    password: SecretRef = SecretRef(env="SCADA_ADMIN_PASSWORD")


class HmiConfig(ConfigModel):
    """The ``[hmi]`` section: listen address, default language, cookies."""
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    # a web session ends after this long without a request, and at the latest after max_hours
    session_idle_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60)
    session_max_hours: int = Field(default=24, ge=1, le=24 * 90)
    # "Secure" flag on the session cookie: "auto" sets it when the request came over HTTPS;
    # "always" behind a TLS-terminating proxy
    secure_cookies: Literal["auto", "always", "never"] = "auto"
    # live pushes to one WebSocket client are coalesced to at most one per this interval
    push_interval_ms: int = Field(default=100, ge=50, le=10_000)
    # a WebSocket client whose socket takes in nothing for this long is closed (code 1013) and
    # logged: until then it holds at most one push in flight and the newest state of its view
    ws_stall_timeout_s: float = Field(default=10.0, ge=1.0, le=600.0)
    default_language: Literal["en", "zh-CN"] = "en"
    # live WebSocket connections (/ws): per user, and in all; past either the connection is
    # closed at once with code 4429 and a reason naming the limit
    ws_max_per_user: int = Field(default=20, ge=1, le=10_000)
    ws_max_total: int = Field(default=1000, ge=1, le=100_000)
    # HTTPS: a PEM certificate (chain) and its key; off a loopback address the HMI needs them,
    # unless insecure_ok says (with a reason) why not, e.g. TLS ends at a proxy in front
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_ok: bool = False
    insecure_reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _tls_and_reason(self) -> HmiConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key (PEM files), or neither")
        if self.insecure_ok and not self.insecure_reason.strip():
            raise ValueError("insecure_reason: say why this site serves the HMI without TLS off loopback (insecure_ok = true)")
        return self

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


class LoginConfig(ConfigModel):
    """The ``[login]`` section: limits on failed sign-ins (HMI, API tokens, OPC UA), one limiter
    for all three, and the periodic report of failures."""
    max_failures: int = Field(default=5, ge=1, le=1000)  # one user name from one address, then waits
    max_address_failures: int = Field(default=20, ge=1, le=100_000)  # one address, any names (a gateway: more)
    max_user_failures: int = Field(default=50, ge=1, le=100_000)  # one name from all addresses that failed
    lock_s: float = Field(default=30.0, gt=0, le=3600)  # the first wait; each further failure doubles it
    max_lock_s: float = Field(default=900.0, gt=0, le=86_400)
    window_s: float = Field(default=300.0, gt=0, le=86_400)  # failures are forgotten after this quiet time
    summary_interval_s: float = Field(default=60.0, ge=1, le=86_400)  # log line and audit row of the failures


def _link_protocol(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "link:dlt645" if kind == "dlt645" else "link:mqtt" if kind == "mqtt" else "link:modbus"


# a [[links]] entry: its kind says the protocol (tcp, rtu_over_tcp, rtu: Modbus; dlt645; mqtt)
AnyLink = Annotated[
    Annotated[LinkConfig, Tag("link:modbus")]
    | Annotated[Dlt645LinkConfig, Tag("link:dlt645")]
    | Annotated[MqttLinkConfig, Tag("link:mqtt")],
    Discriminator(_link_protocol),
]


class ScadaConfig(ConfigModel):
    """The whole configuration, frozen and cross-checked: every section of the server."""
    site: SiteConfig
    database: DatabaseConfig = DatabaseConfig()
    logging: LoggingConfig = LoggingConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    admin: AdminConfig = AdminConfig()
    hmi: HmiConfig = HmiConfig()
    login: LoginConfig = LoginConfig()
    historian: HistorianConfig = HistorianConfig()
    prepaid: PrepaidConfig = PrepaidConfig()
    billing: BillingConfig = BillingConfig()
    payments: PaymentsConfig = PaymentsConfig()
    tenants: TenantsConfig = TenantsConfig()
    reports: ReportsConfig = ReportsConfig()
    links: list[AnyLink] = []
    opcua: OpcUaConfig | None = None  # absent: no OPC UA server
    alarms: AlarmsConfig = AlarmsConfig()
    modbus: ModbusConfig = ModbusConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    commands: CommandsConfig = CommandsConfig()
    operations: OperationsConfig = OperationsConfig()
    topology: TopologyConfig = TopologyConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()

    # not a key of the file: where relative paths in it are resolved
    base_dir: str = "."

    @model_validator(mode="after")
    def _unique_links(self) -> ScadaConfig:
        seen: set[str] = set()
        for i, link in enumerate(self.links):
            if link.name in seen:
                raise ValueError(f"links[{i}].name: duplicate link name {link.name!r}")
            seen.add(link.name)
        for i, name in enumerate(self.simulator.links):
            served = self.link(name)
            if served is None:
                raise ValueError(f"simulator.links[{i}]: unknown link {name!r} (configured: {', '.join(seen) or 'none'})")
            if isinstance(served, MqttLinkConfig):
                if served.host not in _LOOPBACK:
                    raise ValueError(
                        f"simulator.links[{i}]: MQTT link {name!r} names a broker that is not on loopback; "
                        "the demo gateway publishes only to a local broker"
                    )
                continue
            if served.kind == "rtu" or getattr(served, "transport", "tcp") != "tcp" or served.host not in _LOOPBACK:
                raise ValueError(
                    f"simulator.links[{i}]: link {name!r} is not a loopback tcp/rtu_over_tcp endpoint; "
                    "the simulator serves only those"
                )
        return self

    @model_validator(mode="after")
    def _message_channels(self) -> ScadaConfig:
        channels = {c.name for c in self.alarms.notifications.channels}
        for i, name in enumerate(self.payments.message_channels):
            if name not in channels:
                known = ", ".join(sorted(channels)) or "none configured"
                raise ValueError(f"payments.message_channels[{i}]: unknown channel {name!r} (alarms.notifications.channels: {known})")
        code = self.tenants.code_channel
        if code and self.alarms.notifications.channels and not any(c.name == code and c.kind == "sms" for c in self.alarms.notifications.channels):
            sms = ", ".join(c.name for c in self.alarms.notifications.channels if c.kind == "sms") or "none configured"
            raise ValueError(f"tenants.code_channel: {code!r} is not an SMS channel of alarms.notifications.channels (SMS channels: {sms})")
        return self

    @model_validator(mode="after")
    def _report_channels(self) -> ScadaConfig:
        channels = {c.name: c.kind for c in self.alarms.notifications.channels}
        for i, sched in enumerate(self.reports.schedules):
            kind = channels.get(sched.channel)
            if kind != "email":
                found = "not an e-mail channel" if kind else "unknown"
                email = ", ".join(n for n, k in channels.items() if k == "email") or "none configured"
                raise ValueError(f"reports.schedules[{i}].channel: {found} {sched.channel!r} "
                                 f"(e-mail channels of [alarms.notifications]: {email})")
        return self

    @property
    def simulated_links(self) -> list[LinkConfig | Dlt645LinkConfig]:
        """The links the simulator serves: ``simulator.links``, or every loopback TCP one."""
        if self.simulator.links:
            return [link for link in self.links if link.name in self.simulator.links and not isinstance(link, MqttLinkConfig)]
        return [
            link for link in self.links
            if isinstance(link, (LinkConfig, Dlt645LinkConfig)) and link.kind != "rtu"
            and getattr(link, "transport", "tcp") == "tcp" and link.host in _LOOPBACK
        ]

    def path(self, value: str) -> Path:
        """Resolve a path from the config against the config file's directory."""
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def data_dir(self) -> Path:
        return self.path(self.runtime.data_dir)

    def link(self, name: str) -> LinkConfig | Dlt645LinkConfig | MqttLinkConfig | None:
        return next((link for link in self.links if link.name == name), None)


def security_problems(config: ScadaConfig) -> list[str]:
    """What makes ``config`` unfit for production, each naming its key: OPC UA security mode
    ``None`` or anonymous sessions, and the HMI or OPC UA reachable off loopback without TLS or
    security — unless the section's ``insecure_ok = true`` gives (in ``insecure_reason``) why
    this site accepts it. ``scada check-config``, ``scada run`` and ``scada demo`` refuse these."""
    problems: list[str] = []
    opcua, hmi = config.opcua, config.hmi
    if opcua is not None and not opcua.insecure_ok:
        where = "on loopback" if opcua.loopback else f"on {opcua.host}, reachable from the network"
        if opcua.none_allowed:
            problems.append(f'opcua.security: security mode "None" ({where}) lets anyone read and send in clear; remove it,'
                            ' or set opcua.insecure_ok = true with opcua.insecure_reason saying why')
        if opcua.allow_anonymous:
            problems.append(f"opcua.allow_anonymous: sessions without a user ({where}) read every meter and tenant balance;"
                            " set it to false, or set opcua.insecure_ok = true with opcua.insecure_reason saying why")
    if not hmi.loopback and hmi.tls_cert is None and not hmi.insecure_ok:
        problems.append(f"hmi.host: the HMI on {hmi.host} is reachable from the network without TLS (passwords and"
                        " session cookies in clear); set hmi.tls_cert and hmi.tls_key, or set hmi.insecure_ok = true with"
                        " hmi.insecure_reason saying why (e.g. TLS ends at a proxy in front)")
    return problems


_OVERRIDE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?)*)=(.*)$", re.S)
_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``key.path=value`` (value in TOML syntax; a bare word is a string) to ``data``."""
    m = _OVERRIDE.match(override.strip())
    if not m:
        raise ValueError(f"override {override!r}: expected key.path=value, e.g. hmi.port=9090")
    path, raw = m.group(1), m.group(2).strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    parts = _PART.findall(path)
    node: Any = data
    for i, (key, index) in enumerate(parts):
        last = i == len(parts) - 1
        if index:
            seq = node.get(key)
            if not isinstance(seq, list) or int(index) >= len(seq):
                raise ValueError(f"override {override!r}: {key} has no element {index}")
            if last:
                seq[int(index)] = value
            else:
                node = seq[int(index)]
        elif last:
            node[key] = value
        else:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {override!r}: {key} is not a table")


def parse_config(text: str, source: str, base_dir: Path, overrides: Sequence[str] = ()) -> ScadaConfig:
    """Parse TOML text (with ``--set`` overrides) into a :class:`ScadaConfig`, or raise :class:`ConfigError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    try:
        for override in overrides:
            apply_override(data, override)
    except ValueError as exc:
        raise ConfigError(source, [str(exc)]) from None
    if "base_dir" in data:
        raise ConfigError(source, ["base_dir: unknown key (it is set from the file's location)"])
    data["base_dir"] = str(base_dir)
    try:
        return ScadaConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc, ScadaConfig)) from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ScadaConfig:
    """Load and parse a config file; relative paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_config(text, str(path), path.resolve().parent, overrides)


def demo_config_text() -> str:
    """The embedded demo configuration (``scada/defaults/demo.toml``)."""
    return resources.files("scada.defaults").joinpath("demo.toml").read_text(encoding="utf-8")


def load_demo_config(overrides: Sequence[str] = ()) -> ScadaConfig:
    """The embedded demo defaults; relative paths resolve against the current directory."""
    return parse_config(demo_config_text(), "<embedded demo.toml>", Path.cwd(), overrides)


def config_from_args(args: Any) -> ScadaConfig:
    """The config a command names with ``--config FILE`` (with its ``--set`` overrides), or the
    embedded demo configuration when it names none."""
    path = getattr(args, "config", None)
    overrides = getattr(args, "set", None) or []
    return load_config(path, overrides) if path else load_demo_config(overrides)


CONFIG: Key[ScadaConfig] = Key("config", ScadaConfig)
