"""The tag model: a frozen value snapshot with quality and timestamps, and tag metadata."""

from __future__ import annotations

import enum
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

__all__ = [
    "DataType",
    "Quality",
    "QualityReason",
    "TagMeta",
    "TagValue",
    "TagChange",
    "Value",
    "EARLIEST",
    "LATEST",
    "utcnow",
]

Value = bool | int | float | str | None


_C = TypeVar("_C")


def _fast_init(cls: type[_C]) -> type[_C]:
    """Give a frozen, slotted dataclass an ``__init__`` that fills its slots directly.

    The generated one goes through ``object.__setattr__`` for each field (the price of
    ``frozen``), about four times slower; these classes are built for every tag write (and
    the metadata for every tag registered: half a million at 50,000 meters). The signature,
    defaults, ``__post_init__`` checks and frozenness stay the dataclass's own."""
    params, body = [], []
    namespace: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        else:
            params.append(f.name)
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's descriptor
        body.append(f"    _set_{f.name}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")  # its checks run as the dataclass's own __init__ runs them
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body), namespace)  # noqa: S102 - as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def utcnow() -> datetime:
    return datetime.now(UTC)


# The moments the system accepts from outside (query ranges, dates in requests, effective
# times): wide enough for any meter's life, narrow enough that every date step (a day, a
# month), epoch arithmetic and pandas' nanosecond timestamps (until 2262) stay valid.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive


class Quality(enum.IntEnum):
    """OPC UA style quality. Ordered so that ``min()`` gives the worst."""

    BAD = 0
    UNCERTAIN = 1
    GOOD = 2


class QualityReason(str, enum.Enum):
    """Why a value is not good. Maps 1:1 to an OPC UA status code in ``protocols.opcua``."""

    NONE = "none"
    NO_VALUE = "no_value"  # registered, never read yet
    COMM_FAILURE = "comm_failure"  # device or link does not answer
    TIMEOUT = "timeout"
    DEVICE_EXCEPTION = "device_exception"  # Modbus exception response
    BAD_FRAME = "bad_frame"  # undecodable or garbled answer
    OUT_OF_RANGE = "out_of_range"
    CONFIG_ERROR = "config_error"
    STALE = "stale"  # last known value, source no longer updating
    OUT_OF_SERVICE = "out_of_service"
    NOT_FED = "not_fed"  # the producing component has not started yet


class DataType(str, enum.Enum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STRING = "string"


@_fast_init
@dataclass(frozen=True, slots=True)
class TagMeta:
    """Static description of a tag. ``name`` is ``<meter_id>.<point>`` for meter tags."""

    name: str
    data_type: DataType = DataType.FLOAT
    unit: str = ""
    description: str = ""
    meter_id: str | None = None
    room_id: str | None = None
    point: str | None = None
    deadband: float | None = None  # absolute; changes smaller than this are not published

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"invalid tag name {self.name!r}")
        if self.deadband is not None and self.deadband < 0:
            raise ValueError(f"tag {self.name}: deadband must be >= 0, got {self.deadband}")


@_fast_init
@dataclass(frozen=True, slots=True)
class TagValue:
    """One immutable observation of a tag.

    ``source_ts`` is when the device produced (or we read) the value; ``server_ts`` when the
    TagDB accepted it. A value with ``quality`` other than GOOD keeps the last known value so
    that displays can show it greyed out; consumers that act on values (billing) must check
    ``quality`` first.
    """

    value: Value
    quality: Quality
    source_ts: datetime
    server_ts: datetime
    reason: QualityReason = QualityReason.NONE
    detail: str = ""

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD


@_fast_init
@dataclass(frozen=True, slots=True)
class TagChange:
    """An event from the TagDB: ``changed`` is False for a fresh report of the same state.

    ``late`` marks an observation older than the tag's current value (a reading a gateway
    replays after an outage): ``new`` is that observation, ``old`` the current value, which it
    did not replace. Only subscriptions that ask for late observations get them (history,
    billing); displays see the newest value only.
    """

    name: str
    old: TagValue | None
    new: TagValue
    changed: bool = field(default=True)
    late: bool = field(default=False)
