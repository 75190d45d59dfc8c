"""What a user wants to know about their data: how much, whose, which days, from where, which metrics.

Two ways to compute the same ``DataInspection``, chosen by the server:

- ``"server"`` (MongoDB): counts, a ``$group`` with ``$sum``/``$count`` and two one-document sorted finds;
  the documents never leave the server and the ``{date: -1}`` index serves the day range.
- ``"stream"`` (FerretDB, the local server): one pass over a projected cursor, folded in Python with
  memory bounded by the number of users. FerretDB on SQLite pushes no filter but ``{_id: …}`` down, so
  *every* query above reads and decodes the whole collection (measured: ~25 s per query for 160 000
  documents, ~6 minutes for the dozen of them); one pass costs the same as one count.

Collection sizes come from ``$collStats`` (collection metadata on MongoDB, ``COUNT(*)`` on FerretDB), so
they cost no scan on either.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bson import Decimal128, ObjectId
from bson.codec_options import DatetimeConversion
from pymongo.errors import OperationFailure

from health_analytics.mongo_client import is_local_server
from health_analytics.seed import METRIC_RANGES

UTC = dt.timezone.utc
NO_SOURCE = "(none)"  # absent or null source; the engine treats it as "manual"
_HEX24 = "^[0-9a-fA-F]{24}$"
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_CHUNK = 1000
_YEAR_ONE = dt.datetime(1, 1, 1, tzinfo=UTC)  # earlier BSON dates are no calendar day

Strategy = Literal["auto", "server", "stream"]


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
    - ``by_source``: documents per stored ``source`` value, absent/null under ``"(none)"``, largest first.
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


def _tolerant(collection):
    """The collection read with dates outside datetime's range as ``DatetimeMS`` instead of an error."""
    options = collection.codec_options.with_options(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
    return collection.with_options(codec_options=options)


def _collection_size(collection) -> int:
    """Documents in the collection without a scan; a counted fallback where ``$collStats`` is refused."""
    try:
        rows = list(collection.aggregate([{"$collStats": {"count": {}}}]))
        return int(sum(row.get("count", 0) for row in rows))
    except OperationFailure:
        return collection.count_documents({})


def _sort_sources(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _source_key(value: Any) -> str:
    return NO_SOURCE if value is None else str(value)


# --------------------------------------------------------------------------------------------------
# "server": counted by the server
# --------------------------------------------------------------------------------------------------


def _count_users(collection) -> int:
    """Distinct ObjectId userIds, counted by the server, plus 24-hex string ids of no ObjectId user."""
    counted = list(collection.aggregate([
        {"$match": {"userId": {"$type": "objectId"}}},
        {"$group": {"_id": "$userId"}},
        {"$count": "n"},
    ]))
    users = counted[0]["n"] if counted else 0
    # String ids are rare (importers); only they come to Python, to be merged with the ObjectIds.
    strings = sorted({
        row["_id"].lower()
        for row in collection.aggregate([
            {"$match": {"userId": {"$type": "string", "$regex": _HEX24}}},
            {"$group": {"_id": "$userId"}},
        ])
    })
    for start in range(0, len(strings), _CHUNK):
        chunk = [ObjectId(s) for s in strings[start:start + _CHUNK]]
        known = {
            row["_id"]
            for row in collection.aggregate([
                {"$match": {"userId": {"$in": chunk}}},
                {"$group": {"_id": "$userId"}},
            ])
        }
        users += sum(1 for oid in chunk if oid not in known)
    return users


def _day_bounds(collection, tomorrow: dt.datetime) -> tuple[dt.date | None, dt.date | None]:
    dated = {"date": {"$type": "date", "$gte": _YEAR_ONE, "$lt": tomorrow}}
    bounds = []
    for direction in (1, -1):
        doc = collection.find_one(dated, projection={"_id": 0, "date": 1}, sort=[("date", direction)])
        bounds.append(_aware(doc["date"]).date() if doc else None)
    return bounds[0], bounds[1]


def _inspect_on_server(health, tomorrow: dt.datetime) -> dict[str, Any]:
    sources: dict[str, int] = {}
    for row in health.aggregate([{"$group": {"_id": "$source", "n": {"$sum": 1}}}]):
        key = _source_key(row["_id"])
        sources[key] = sources.get(key, 0) + int(row["n"])
    first_day, last_day = _day_bounds(health, tomorrow)
    return {
        "documents": health.count_documents({}),
        "users": _count_users(health),
        "first_day": first_day,
        "last_day": last_day,
        "by_source": _sort_sources(sources),
        "metric_coverage": {
            metric: health.count_documents({f"metrics.{metric}": {"$gte": low, "$lte": high}})
            for metric, (low, high) in METRIC_RANGES.items()
        },
    }


# --------------------------------------------------------------------------------------------------
# "stream": one projected pass, folded in Python (same results as "server")
# --------------------------------------------------------------------------------------------------


def _user_key(value: Any) -> str | None:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, str) and len(value) == 24 and _HEX_DIGITS.issuperset(value):
        return value.lower()
    return None


def _in_range(value: Any, low: float, high: float) -> bool:
    """What ``{$gte: low, $lte: high}`` matches: a number of any BSON type (bool is none), NaN excluded."""
    if isinstance(value, bool):
        return False
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        return not number.is_nan() and low <= number <= high
    if isinstance(value, (int, float)):
        return not (isinstance(value, float) and math.isnan(value)) and low <= value <= high
    return False


def _inspect_by_streaming(health, tomorrow: dt.datetime) -> dict[str, Any]:
    documents = 0
    users: set[str] = set()
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    sources: dict[str, int] = {}
    coverage = dict.fromkeys(METRIC_RANGES, 0)
    projection = {"_id": 0, "userId": 1, "date": 1, "source": 1, **{f"metrics.{m}": 1 for m in METRIC_RANGES}}
    for doc in health.find({}, projection=projection, batch_size=10_000):
        documents += 1
        user = _user_key(doc.get("userId"))
        if user is not None:
            users.add(user)
        date = doc.get("date")
        if isinstance(date, dt.datetime):  # DatetimeMS only outside year 1 … 9999: no calendar day
            date = _aware(date)
            if date < tomorrow:
                first = date if first is None or date < first else first
                last = date if last is None or date > last else last
        key = _source_key(doc.get("source"))
        sources[key] = sources.get(key, 0) + 1
        metrics = doc.get("metrics")
        if isinstance(metrics, Mapping):
            for metric, (low, high) in METRIC_RANGES.items():
                if _in_range(metrics.get(metric), low, high):
                    coverage[metric] += 1
    return {
        "documents": documents,
        "users": len(users),
        "first_day": first.date() if first else None,
        "last_day": last.date() if last else None,
        "by_source": _sort_sources(sources),
        "metric_coverage": coverage,
    }


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def inspect_data(
    db,
    *,
    health_collection: str,
    analytics_collection: str,
    today: dt.date | None = None,
    strategy: Strategy = "auto",
) -> DataInspection:
    """Counts, users, day range, sources and metric coverage of the health data, and the analytics' state.

    ``today`` (a UTC day, default the current one) bounds ``last_day``. ``strategy`` "auto" streams on
    FerretDB and lets MongoDB count (see the module's docstring); both give the same result.
    """
    today = today or dt.datetime.now(UTC).date()
    tomorrow = dt.datetime(today.year, today.month, today.day, tzinfo=UTC) + dt.timedelta(days=1)
    if strategy == "auto":
        strategy = "stream" if is_local_server(db.client) else "server"
    if strategy not in ("server", "stream"):
        raise ValueError(f"unknown strategy {strategy!r}")
    health = _tolerant(db[health_collection])
    found = _inspect_by_streaming(health, tomorrow) if strategy == "stream" else _inspect_on_server(health, tomorrow)

    analytics_count: int | None = None
    newest: dt.datetime | None = None
    if analytics_collection in db.list_collection_names():
        analytics = _tolerant(db[analytics_collection])
        analytics_count = _collection_size(analytics)
        # One sorted find: index-served on MongoDB where calculatedAt is indexed, one scan on FerretDB.
        doc = analytics.find_one(
            {"calculatedAt": {"$type": "date", "$gte": _YEAR_ONE}},
            projection={"_id": 0, "calculatedAt": 1},
            sort=[("calculatedAt", -1)],
        )
        newest = _aware(doc["calculatedAt"]) if doc and isinstance(doc["calculatedAt"], dt.datetime) else None
    return DataInspection(**found, analytics_count=analytics_count, newest_calculated_at=newest)


def summarize_collections(db) -> list[CollectionSummary]:
    """Every collection but ``system.*``, by name, with its document count and index names.

    The count comes from ``$collStats`` (no scan; on MongoDB it is the collection's metadata, exact except
    after an unclean shutdown).
    """
    summaries = []
    for name in sorted(db.list_collection_names()):
        if name.startswith("system."):
            continue
        collection = db[name]
        indexes = [index["name"] for index in collection.list_indexes()]
        summaries.append(CollectionSummary(name=name, count=_collection_size(collection), indexes=indexes))
    return summaries
