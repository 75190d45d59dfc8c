"""Engine rows → MongoDB documents of the `analytics` model, with an `_id` derived from the snapshot key.

A deterministic `_id` makes every write of a snapshot a replace by `_id`: idempotent everywhere, and a
point write on the local server, whose only indexed lookup is an exact `_id` (see docs/LOCAL_SERVER.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from bson import ObjectId


def snapshot_id(user_id: str, metric_type: str, time_range: str, period_end: dt.datetime) -> ObjectId:
    """12 bytes of a hash of the key (userId, metricType, timeRange, periodEnd day): stable across runs."""
    day = period_end.astimezone(dt.timezone.utc).date() if period_end.tzinfo else period_end.date()
    key = f"{user_id.lower()}|{metric_type}|{time_range}|{day.isoformat()}".encode()
    return ObjectId(hashlib.blake2b(key, digest_size=12).digest())


def to_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """One snapshot row (dates as aware datetimes) → the document to store.

    `userId` becomes an ObjectId and `anomalyDetails` is left out unless an anomaly was detected,
    as the model requires.
    """
    analytics = {k: v for k, v in row["analytics"].items() if not (k == "anomalyDetails" and v is None)}
    doc = {k: v for k, v in row.items() if k != "analytics"}
    doc["_id"] = snapshot_id(row["userId"], row["metricType"], row["timeRange"], row["periodEnd"])
    doc["userId"] = ObjectId(row["userId"])
    doc["analytics"] = analytics
    return doc
