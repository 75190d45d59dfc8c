"""Bodies of the `analytics:batch_update` events the backend pushes to open dashboards (SPEC §4).

Pure functions, no I/O: the job builds bodies from snapshots, the outbox stores them, the sender posts
them. Sizes are measured on the exact bytes the sender posts (`encode_body`), so a body that fits here
fits on the wire.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from bson import ObjectId

EVENT_TYPE = "analytics:batch_update"
MAX_ELEMENTS = 50
MAX_BODY_BYTES = 100_000  # largest body posted; the backend refuses bodies over 100 kB
_USER_ID = re.compile(r"^[0-9a-f]{24}$")
_UTC = dt.timezone.utc


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The bytes on the wire (and in the outbox): compact UTF-8 JSON, no NaN, so sizes are exact."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def build_bodies(user_id: str, elements: list[dict]) -> list[dict]:
    """One user's changed snapshots as request bodies of at most MAX_ELEMENTS elements and
    MAX_BODY_BYTES bytes each.

    Elements are sorted by (metricType, timeRange) so the same snapshots always give the same bodies.
    Chunks are filled greedily; an element too large to fit even alone gets a body of its own (the
    sender then sets it aside as rejected instead of posting it), so one bad element never drops others.
    """
    uid = str(user_id).lower()
    if not _USER_ID.match(uid):
        raise ValueError("user_id must be a 24-hex ObjectId string")
    if not elements:
        return []
    ordered = sorted(elements, key=lambda e: (str(e.get("metricType", "")), str(e.get("timeRange", ""))))
    # Overhead of an empty body, with counters as wide as they can get (count ≤ 50, index/total ≤ n).
    widest = max(len(ordered), MAX_ELEMENTS)
    overhead = len(encode_body(_body(uid, [], batch_index=widest, total=widest, count=widest)))
    chunks: list[list[dict]] = []
    current: list[dict] = []
    size = overhead
    for element in ordered:
        element_size = len(encode_body(element))
        added = element_size + (1 if current else 0)  # the comma between list items
        if current and (len(current) >= MAX_ELEMENTS or size + added > MAX_BODY_BYTES):
            chunks.append(current)
            current, size, added = [], overhead, element_size
        current.append(element)
        size += added
    chunks.append(current)
    return [_body(uid, chunk, batch_index=i, total=len(chunks)) for i, chunk in enumerate(chunks)]


def _body(user_id: str, chunk: list[dict], *, batch_index: int, total: int, count: int | None = None) -> dict:
    return {
        "userId": user_id,
        "eventType": EVENT_TYPE,
        "data": {
            "analytics": chunk,
            "count": len(chunk) if count is None else count,
            "batchIndex": batch_index,
            "totalBatches": total,
        },
    }


def iso_utc(value: dt.datetime | dt.date) -> str:
    """What the backend's JavaScript `Date.toJSON()` gives: UTC, milliseconds, 'Z'.

    A naive datetime is taken as UTC (Spark hands out UTC wall times); a date is its midnight UTC,
    as BSON stores it.
    """
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=_UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    value = value.astimezone(_UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def json_safe(value: Any) -> Any:
    """A snapshot's analytics (dicts, Spark Rows, datetimes, ObjectIds…) as plain JSON values.

    NaN and ±Infinity become None: JSON has no such numbers and the backend's model would refuse them.
    Anything else unknown raises TypeError rather than being stringified behind the caller's back.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date)):
        return iso_utc(value)
    if isinstance(value, ObjectId):
        return str(value)
    as_dict = getattr(value, "asDict", None)  # pyspark Row: a tuple, so checked before sequences
    if callable(as_dict):
        return {str(k): json_safe(v) for k, v in as_dict(recursive=False).items()}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    raise TypeError(f"not convertible to JSON: {type(value).__name__}")
