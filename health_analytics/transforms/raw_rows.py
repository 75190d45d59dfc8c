"""Decode a BSON document into a fixed-schema row that keeps every type problem visible to validation.

Spark can't hold an arbitrary BSON value, so each checked field becomes (value, kind): the kind says
what the document really held ('number', 'string', 'bool', 'null', 'missing', ...). Validation then
decides in Spark; this decoding makes no decision. Dates become epoch milliseconds, so no time zone
can shift a day.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from bson import Decimal128, Int64, ObjectId
from bson.datetime_ms import DatetimeMS
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from health_analytics.transforms.metrics import METRIC_NAMES, WEARABLE_FIELDS

_MISSING = object()

RAW_SCHEMA = StructType(
    [
        StructField("doc_id", StringType()),
        StructField("user_id", StringType()),
        StructField("user_id_kind", StringType()),
        StructField("date_ms", LongType()),
        StructField("date_kind", StringType()),
        StructField("source", StringType()),
        StructField("source_kind", StringType()),
        StructField("metrics_kind", StringType()),
        StructField("wearable", ArrayType(StringType())),
        StructField("updated_ms", LongType()),
    ]
    + [f for m in METRIC_NAMES for f in (StructField(f"v_{m}", DoubleType()), StructField(f"k_{m}", StringType()))]
)

# The projection a reader needs from MongoDB to build a raw row.
READ_PROJECTION: dict[str, int] = {
    "userId": 1,
    "date": 1,
    "source": 1,
    "metrics": 1,
    "updatedAt": 1,
    **{f: 1 for f in WEARABLE_FIELDS},
}


def kind_of(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, Int64, Decimal128)):
        return "number"
    if isinstance(value, (dt.datetime, DatetimeMS)):
        return "date"
    if isinstance(value, ObjectId):
        return "objectId"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return "other:" + type(value).__name__


def epoch_ms(value: dt.datetime | DatetimeMS) -> int:
    """Epoch milliseconds of a BSON date; a naive datetime is UTC (PyMongo's default)."""
    if isinstance(value, DatetimeMS):
        return int(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def _number(value: Any) -> float:
    """The double a BSON number means; NaN when it has none (e.g. a signalling Decimal128 NaN)."""
    try:
        return float(value.to_decimal() if isinstance(value, Decimal128) else value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (ArithmeticError, ValueError):
        return math.nan


def document_to_raw_row(doc: Mapping[str, Any]) -> tuple:
    """One BSON document (as PyMongo returns it) → a tuple in RAW_SCHEMA order."""
    doc_id = doc.get("_id")
    user = doc.get("userId", _MISSING)
    date = doc.get("date", _MISSING)
    source = doc.get("source", _MISSING)
    metrics = doc.get("metrics", _MISSING)
    updated = doc.get("updatedAt")
    metrics_map = metrics if isinstance(metrics, Mapping) else {}

    wearable = [f for f in WEARABLE_FIELDS if doc.get(f) is not None]
    wearable += [f"metrics.{f}" for f in WEARABLE_FIELDS if metrics_map.get(f) is not None]

    row: list[Any] = [
        str(doc_id) if doc_id is not None else None,
        str(user) if isinstance(user, (ObjectId, str)) else None,
        kind_of(user),
        epoch_ms(date) if kind_of(date) == "date" else None,
        kind_of(date),
        source if isinstance(source, str) else None,
        kind_of(source),
        kind_of(metrics),
        wearable,
        epoch_ms(updated) if kind_of(updated) == "date" else None,
    ]
    for name in METRIC_NAMES:
        value = metrics_map.get(name, _MISSING)
        kind = kind_of(value)
        row.append(_number(value) if kind == "number" else None)
        row.append(kind)
    return tuple(row)
