"""Tags: the current-value table and its change stream. Depends on nothing of ours."""

from . import names
from .db import TagDB, TagWrite, UnknownTagError
from .model import (
    EARLIEST,
    LATEST,
    DataType,
    Quality,
    QualityReason,
    TagChange,
    TagMeta,
    TagValue,
    Value,
    utcnow,
)
from .subscription import (
    Subscription,
    TagFilter,
    all_tags,
    by_glob,
    by_meters,
    by_names,
    by_points,
)

__all__ = [
    "EARLIEST",
    "LATEST",
    "DataType",
    "Quality",
    "QualityReason",
    "Subscription",
    "TagChange",
    "TagDB",
    "TagFilter",
    "TagMeta",
    "TagValue",
    "TagWrite",
    "UnknownTagError",
    "Value",
    "names",
    "all_tags",
    "by_glob",
    "by_meters",
    "by_names",
    "by_points",
    "utcnow",
]
