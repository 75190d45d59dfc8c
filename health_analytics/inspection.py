"""What a user wants to know about their data, computed by the server.

Everything here is a count, a ``$group`` with ``$sum``/``$count`` or a one-document sorted find, so the
documents never travel to Python; those are the operations the local server (FerretDB) supports too. On
FerretDB with SQLite each query still reads the whole collection server-side (only ``{_id: …}`` is pushed
down to SQL), so ``inspect_data`` costs about a dozen collection scans there; on MongoDB the
``{date: -1}`` and ``{source: 1}`` indexes serve several of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from health_analytics.seed import METRIC_RANGES  # SPEC §1 ranges, in the dashboard's order

UTC = dt.timezone.utc

NO_SOURCE = "(none)"  # absent or null source; the engine treats it as "manual"
_HEX24 = "^[0-9a-fA-F]{24}$"
_CHUNK = 1000


@dataclass
class CollectionSummary:
    name: str
    count: int
    indexes: list[str]


@dataclass
class DataInspection:
    """A health collection at a glance.

    - ``documents``: every document, valid or not.
    - ``users``: distinct users with a usable ``userId`` (an ObjectId, or a 24-hex string counted as
      that ObjectId).
    - ``first_day`` / ``last_day``: UTC days of the earliest and latest BSON ``date`` not after ``today``
      (later dates are rejected by the engine as ``future_date``); None when there is none.
    - ``by_source``: documents per stored ``source`` value, absent/null under ``"(none)"``.
    - ``metric_coverage``: per analysed metric, documents whose value is a number within its SPEC range,
      i.e. a value the engine can use if its document passes the document-level checks. Strings,
      bools, NaN and out-of-range numbers are not counted; null/absent is "no value".
    - ``analytics_count`` / ``newest_calculated_at``: None when the analytics collection does not exist.
    """

    documents: int
    users: int
    first_day: dt.date | None
    last_day: dt.date | None
    by_source: dict[str, int]
    metric_coverage: dict[str, int]
    analytics_count: int | None
    newest_calculated_at: dt.datetime | None


def _aware(moment: dt.datetime) -> dt.datetime:
    """A BSON date as an aware UTC datetime, whether the client was opened tz-aware or not."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _count_users(collection) -> int:
    """Distinct ObjectId userIds, counted by the server, plus 24-hex string ids of no other document."""
    counted = list(collection.aggregate([
        {"$match": {"userId": {"$type": "objectId"}}},
        {"$group": {"_id": "$userId"}},
        {"$count": "n"},
    ]))
    users = counted[0]["n"] if counted else 0
    # Strings are rare (importers); only those are brought to Python, to merge them with the ObjectIds.
    strings = {
        row["_id"].lower()
        for row in collection.aggregate([
            {"$match": {"userId": {"$type": "string", "$regex": _HEX24}}},
            {"$group": {"_id": "$userId"}},
        ])
    }
    ordered = sorted(strings)
    for start in range(0, len(ordered), _CHUNK):
        chunk = [ObjectId(s) for s in ordered[start:start + _CHUNK]]
        known = {
            str(row["_id"])
            for row in collection.aggregate([
                {"$match": {"userId": {"$in": chunk}}},
                {"$group": {"_id": "$userId"}},
            ])
        }
        users += sum(1 for oid in chunk if str(oid) not in known)
    return users


def _day_bounds(collection, today: dt.date) -> tuple[dt.date | None, dt.date | None]:
    tomorrow = dt.datetime(today.year, today.month, today.day, tzinfo=UTC) + dt.timedelta(days=1)
    dated = {"date": {"$type": "date", "$lt": tomorrow}}
    bounds = []
    for direction in (1, -1):
        doc = collection.find_one(dated, projection={"_id": 0, "date": 1}, sort=[("date", direction)])
        bounds.append(_aware(doc["date"]).date() if doc else None)
    return bounds[0], bounds[1]


def _by_source(collection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in collection.aggregate([{"$group": {"_id": "$source", "n": {"$sum": 1}}}]):
        key = NO_SOURCE if row["_id"] is None else str(row["_id"])
        counts[key] = counts.get(key, 0) + int(row["n"])
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def inspect_data(
    db,
    *,
    health_collection: str,
    analytics_collection: str,
    today: dt.date | None = None,
) -> DataInspection:
    """Counts, users, day range, sources and metric coverage of the health data, and the analytics' state.

    ``today`` (a UTC day, default the current one) bounds ``last_day``.
    """
    today = today or dt.datetime.now(UTC).date()
    health = db[health_collection]
    first_day, last_day = _day_bounds(health, today)
    coverage = {
        metric: health.count_documents({f"metrics.{metric}": {"$gte": low, "$lte": high}})
        for metric, (low, high) in METRIC_RANGES.items()
    }
    analytics_count: int | None = None
    newest: dt.datetime | None = None
    if analytics_collection in db.list_collection_names():
        analytics = db[analytics_collection]
        analytics_count = analytics.count_documents({})
        doc = analytics.find_one(
            {"calculatedAt": {"$type": "date"}}, projection={"_id": 0, "calculatedAt": 1}, sort=[("calculatedAt", -1)]
        )
        newest = _aware(doc["calculatedAt"]) if doc else None
    return DataInspection(
        documents=health.count_documents({}),
        users=_count_users(health),
        first_day=first_day,
        last_day=last_day,
        by_source=_by_source(health),
        metric_coverage=coverage,
        analytics_count=analytics_count,
        newest_calculated_at=newest,
    )


def summarize_collections(db) -> list[CollectionSummary]:
    """Every user collection with its size and index names, by name.

    The count is the server's estimate (collection metadata on MongoDB, so it costs no scan); it is exact
    except after an unclean shutdown of MongoDB.
    """
    summaries = []
    for name in sorted(db.list_collection_names()):
        if name.startswith("system."):
            continue
        collection = db[name]
        indexes: list[Any] = [index["name"] for index in collection.list_indexes()]
        summaries.append(CollectionSummary(name=name, count=collection.estimated_document_count(), indexes=indexes))
    return summaries
