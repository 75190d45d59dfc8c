"""Reads `healthmetrics` into Spark: PyMongo runs inside the tasks, one query per partition.

The driver only plans: it scans what changed (user ids and the earliest changed day, never the
documents) and splits the affected users into chunks; each Spark task then reads its chunk's history
with one `$in` query and decodes it into raw rows. On MongoDB the `{userId, date}` index serves those
queries; on the local server every query is a scan, so the number of partitions is kept small.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bson import ObjectId, json_util
from pymongo.errors import PyMongoError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from health_analytics.mongo_client import connect
from health_analytics.transforms.raw_rows import RAW_SCHEMA, READ_PROJECTION, document_to_raw_row

if TYPE_CHECKING:
    import pyarrow as pa
    from pymongo.collection import Collection
    from pyspark.sql import DataFrame, SparkSession

UTC = dt.timezone.utc
EPOCH = dt.date(1970, 1, 1)
ARROW_BATCH_ROWS = 10_000
# Documents whose userId can't name a user (missing, a number, ...) still need reading: they are rejections.
UNUSABLE_USER_ID = {"userId": {"$not": {"$type": ["objectId", "string"]}}}
MIN_USERS_PER_PARTITION = 250
EXISTING_DAYS_SCHEMA = "userId string, metricType string, day int"


@dataclass(frozen=True)
class ChangeSet:
    """What changed since a moment: affected users (as stored), the earliest changed day, the newest update."""

    documents: int
    user_ids: frozenset[Any]
    first_day: dt.date | None
    newest_update: dt.datetime | None
    # (document id, updatedAt ms) of the changed documents updated within `recent_ms` of the newest one:
    # a poll that looks back over an overlap skips these instead of processing them again.
    recent_keys: frozenset[tuple[str, int]] = frozenset()
    # Changed documents whose `date` is not a date: their old day is unknown, so their users are rewritten whole.
    undated: int = 0


@dataclass(frozen=True)
class ReadPlan:
    uri: str
    database: str
    collection: str
    filters: tuple[str, ...]  # one Extended JSON filter per Spark partition
    first_snapshot_day: int | None  # epoch day: earliest changed day; earlier snapshots are written only if missing
    analytics_collection: str | None = None
    existing_filters: tuple[str, ...] = ()  # one filter per partition over the stored snapshots


def scan_changes(
    collection: Collection,
    since: dt.datetime | None,
    users: Sequence[Any] | None = None,
    *,
    skip: frozenset[tuple[str, int]] = frozenset(),
    recent_ms: int | None = None,
    cap: dt.datetime | None = None,
) -> ChangeSet:
    """Stream the changed documents' ids, dates and update times (nothing else) to find who changed.

    `skip`: (id, updatedAt ms) pairs already processed, not counted as changes. With `recent_ms`, the
    result names the documents updated within that many ms of the newest change (`recent_keys`).
    `cap`: `newest_update` is never later than this (a document stamped in the future by a wrong clock
    must not move a checkpoint past changes still to come).
    """
    query: dict[str, Any] = {}
    if since is not None:
        query["updatedAt"] = {"$gte": since}
    if users:
        query["userId"] = {"$in": _both_forms(users)}
    fields = {"userId": 1, "date": 1, "updatedAt": 1} | ({} if recent_ms is not None else {"_id": 0})
    ids: set[Any] = set()
    first: dt.date | None = None
    newest: dt.datetime | None = None
    recent: dict[tuple[str, int], int] = {}
    count = 0
    undated = 0
    for doc in collection.find(query, fields, batch_size=10_000):
        updated = doc.get("updatedAt")
        if recent_ms is not None:
            key = (str(doc.get("_id")), _ms(updated) if isinstance(updated, dt.datetime) else -1)
            if key in skip:
                continue
            recent[key] = key[1]
            if len(recent) > 200_000:  # keep only what can still be within recent_ms of the newest
                top = max(recent.values())
                floor = (min(top, _ms(cap)) if cap is not None else top) - recent_ms
                recent = {k: v for k, v in recent.items() if v >= floor}
        count += 1
        user = doc.get("userId")
        if isinstance(user, (ObjectId, str)):
            ids.add(user)
        day = doc.get("date")
        if isinstance(day, dt.datetime):
            d = day.astimezone(UTC).date() if day.tzinfo else day.date()
            first = d if first is None or d < first else first
        else:
            undated += 1
        if isinstance(updated, dt.datetime):
            if updated.tzinfo is None:
                updated = updated.replace(tzinfo=UTC)
            if cap is not None and updated > cap:
                updated = cap
            if newest is None or updated > newest:
                newest = updated
    recent_keys: frozenset[tuple[str, int]] = frozenset()
    if recent_ms is not None and newest is not None:
        floor = _ms(newest) - recent_ms
        recent_keys = frozenset(k for k, v in recent.items() if v >= floor)
    return ChangeSet(documents=count, user_ids=frozenset(ids), first_day=first, newest_update=newest, recent_keys=recent_keys,
                     undated=undated)


def _ms(moment: dt.datetime) -> int:
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _user_key(user: Any) -> str:
    """One key per user however it is stored: an ObjectId and its hex string (any case) are the same user."""
    text = str(user)
    return text.lower() if len(text) == 24 and all(c in "0123456789abcdefABCDEF" for c in text) else text


def _both_forms(user_ids: Iterable[Any]) -> list[Any]:
    """A user may be stored as an ObjectId or as its 24-hex string: ask for every form we know."""
    out: set[Any] = set()
    for u in user_ids:
        out.add(u)
        key = _user_key(u)
        if len(key) == 24 and ObjectId.is_valid(key):
            out.update((ObjectId(key), key))
    return sorted(out, key=str)


def plan_read(
    *,
    uri: str,
    database: str,
    collection: str,
    changes: ChangeSet,
    since: dt.datetime | None,
    partitions: int,
    incremental: bool,
    analytics_collection: str | None = None,
) -> ReadPlan:
    """One filter per partition: the affected users' whole history, plus (in the first partition) the
    changed documents without a usable userId; and, with `analytics_collection`, one filter per partition
    for the same users' stored snapshot days.

    An incremental batch writes snapshots from the earliest changed day on, but reads all of the users'
    history: a latest day that turns invalid moves the history window back, and the days it brings back
    need their own year of streak history (reconcile.py). The cost follows the number of changed users.
    """
    # Chunk by user (not by stored form), so all of one user's documents land in one partition.
    forms: dict[str, list[Any]] = {}
    for u in changes.user_ids:
        forms.setdefault(_user_key(u), []).append(u)
    users = sorted(forms)
    # Every query scans the collection on the local server: few users need no more than one partition.
    n = max(1, min(partitions, math.ceil(len(users) / MIN_USERS_PER_PARTITION)))
    chunk = math.ceil(len(users) / n) if users else 0
    first_snapshot_day = (changes.first_day - EPOCH).days if incremental and changes.first_day is not None and not changes.undated else None
    unusable = dict(UNUSABLE_USER_ID)
    if since is not None:
        unusable["updatedAt"] = {"$gte": since}
    filters: list[dict[str, Any]] = []
    existing: list[dict[str, Any]] = []
    for i in range(n):
        chunk_users = users[i * chunk:(i + 1) * chunk]
        chunk_forms = [form for key in chunk_users for form in forms[key]]
        f: dict[str, Any] = {"userId": {"$in": _both_forms(chunk_forms)}}
        filters.append({"$or": [f, unusable]} if i == 0 else f)
        if chunk_users:
            existing.append({"userId": {"$in": [ObjectId(u) for u in chunk_users if ObjectId.is_valid(u)]}, "timeRange": "7day"})
    return ReadPlan(
        uri=uri,
        database=database,
        collection=collection,
        filters=tuple(json_util.dumps(f, json_options=json_util.CANONICAL_JSON_OPTIONS) for f in filters),
        first_snapshot_day=first_snapshot_day,
        analytics_collection=analytics_collection,
        existing_filters=tuple(json_util.dumps(f, json_options=json_util.CANONICAL_JSON_OPTIONS) for f in existing)
        if analytics_collection else (),
    )


def read_raw(spark: SparkSession, plan: ReadPlan) -> DataFrame:
    """The planned documents as raw rows (RAW_SCHEMA), read by the executors, one partition per filter."""
    filters, uri, database, collection = plan.filters, plan.uri, plan.database, plan.collection

    def read_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for index in batch.column("id").to_pylist():
                yield from _fetch_batches(uri, database, collection, json_util.loads(filters[index]))

    return _one_task_per_filter(spark, len(filters)).mapInArrow(read_partition, RAW_SCHEMA)


def _one_task_per_filter(spark: SparkSession, n: int) -> DataFrame:
    """Rows 0…n-1, one per partition, without a shuffle: task i runs filter i."""
    return spark.range(0, n, 1, numPartitions=n)


def read_existing_days(spark: SparkSession, plan: ReadPlan) -> DataFrame:
    """The affected users' stored snapshot days (userId, metricType, day), read by the executors.

    Only `7day` snapshots are read: the three ranges of a day are always written and deleted together.
    """
    filters = plan.existing_filters or (json_util.dumps({"_id": {"$exists": False}}),)
    uri, database, collection = plan.uri, plan.database, plan.analytics_collection

    def read_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for index in batch.column("id").to_pylist():
                yield from _fetch_days(uri, database, collection, json_util.loads(filters[index]))

    return _one_task_per_filter(spark, len(filters)).mapInArrow(read_partition, EXISTING_DAYS_SCHEMA)


@retry(
    retry=retry_if_exception_type(PyMongoError),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.5, max=8),
    reraise=True,
)
def _fetch_days(uri: str, database: str, collection: str, query: dict[str, Any]) -> list[pa.RecordBatch]:
    import pyarrow as pa

    users: list[str] = []
    metrics: list[str] = []
    days: list[int] = []
    with connect(uri, timeout_ms=10_000) as client:
        for doc in client[database][collection].find(query, {"_id": 0, "userId": 1, "metricType": 1, "periodEnd": 1}, batch_size=10_000):
            end = doc.get("periodEnd")
            if not isinstance(end, dt.datetime):
                continue
            users.append(str(doc.get("userId")).lower())
            metrics.append(str(doc.get("metricType")))
            days.append(((end.astimezone(UTC).date() if end.tzinfo else end.date()) - EPOCH).days)
    schema = pa.schema([("userId", pa.string()), ("metricType", pa.string()), ("day", pa.int32())])
    return [pa.RecordBatch.from_arrays([pa.array(users, pa.string()), pa.array(metrics, pa.string()), pa.array(days, pa.int32())], schema=schema)]


@retry(
    retry=retry_if_exception_type(PyMongoError),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.5, max=8),
    reraise=True,
)
def _fetch_batches(uri: str, database: str, collection: str, query: dict[str, Any]) -> list[pa.RecordBatch]:
    """All of one query's rows, or an error: a partial read is never emitted, so a retry can't duplicate."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(RAW_SCHEMA)
    out: list[pa.RecordBatch] = []
    rows: list[tuple] = []
    with connect(uri, timeout_ms=10_000) as client:
        for doc in client[database][collection].find(query, READ_PROJECTION, batch_size=5_000):
            rows.append(document_to_raw_row(doc))
            if len(rows) >= ARROW_BATCH_ROWS:
                out.append(_to_batch(rows, schema))
                rows = []
    if rows:
        out.append(_to_batch(rows, schema))
    return out


def _to_batch(rows: list[tuple], schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    columns = list(zip(*rows))
    return pa.RecordBatch.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema)
