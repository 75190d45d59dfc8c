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
from health_analytics.transforms.params import STREAK_LOOKBACK_DAYS
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


@dataclass(frozen=True)
class ChangeSet:
    """What changed since a moment: affected users (as stored), the earliest changed day, the newest update."""

    documents: int
    user_ids: frozenset[Any]
    first_day: dt.date | None
    newest_update: dt.datetime | None


@dataclass(frozen=True)
class ReadPlan:
    uri: str
    database: str
    collection: str
    filters: tuple[str, ...]  # one Extended JSON filter per Spark partition
    first_snapshot_day: int | None  # epoch day: snapshots before it are not exact with this read, so not written


def scan_changes(collection: Collection, since: dt.datetime | None, users: Sequence[Any] | None = None) -> ChangeSet:
    """Stream the changed documents' ids, dates and update times (nothing else) to find who changed."""
    query: dict[str, Any] = {}
    if since is not None:
        query["updatedAt"] = {"$gte": since}
    if users:
        query["userId"] = {"$in": _both_forms(users)}
    ids: set[Any] = set()
    first: dt.date | None = None
    newest: dt.datetime | None = None
    count = 0
    for doc in collection.find(query, {"userId": 1, "date": 1, "updatedAt": 1, "_id": 0}, batch_size=10_000):
        count += 1
        user = doc.get("userId")
        if isinstance(user, (ObjectId, str)):
            ids.add(user)
        day = doc.get("date")
        if isinstance(day, dt.datetime):
            d = day.astimezone(UTC).date() if day.tzinfo else day.date()
            first = d if first is None or d < first else first
        updated = doc.get("updatedAt")
        if isinstance(updated, dt.datetime) and (newest is None or updated > newest):
            newest = updated
    return ChangeSet(documents=count, user_ids=frozenset(ids), first_day=first, newest_update=newest)


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
) -> ReadPlan:
    """One filter per partition: the affected users' history (from the earliest changed day's lookback
    when incremental, everything otherwise), plus the changed documents without a usable userId."""
    # Chunk by user (not by stored form), so all of one user's documents land in one partition.
    forms: dict[str, list[Any]] = {}
    for u in changes.user_ids:
        forms.setdefault(_user_key(u), []).append(u)
    users = sorted(forms)
    n = max(1, min(partitions, len(users))) if users else 0
    chunk = math.ceil(len(users) / n) if n else 0
    date_clause: dict[str, Any] | None = None
    first_snapshot_day: int | None = None
    if incremental and changes.first_day is not None:
        # Every snapshot on or after the earliest changed day looks back at most a year (streaks) —
        # more than the 2×90 days of the previous window or the 30 days of the baseline.
        first_snapshot_day = (changes.first_day - EPOCH).days
        bound = dt.datetime.combine(changes.first_day - dt.timedelta(days=STREAK_LOOKBACK_DAYS - 1), dt.time(), UTC)
        date_clause = {"$or": [{"date": {"$gte": bound}}, {"date": {"$not": {"$type": "date"}}}]}
    filters: list[dict[str, Any]] = []
    for i in range(n):
        chunk_forms = [form for key in users[i * chunk:(i + 1) * chunk] for form in forms[key]]
        f: dict[str, Any] = {"userId": {"$in": _both_forms(chunk_forms)}}
        if date_clause:
            f.update(date_clause)
        filters.append(f)
    unusable = dict(UNUSABLE_USER_ID)
    if since is not None:
        unusable["updatedAt"] = {"$gte": since}
    filters.append(unusable)
    return ReadPlan(
        uri=uri,
        database=database,
        collection=collection,
        filters=tuple(json_util.dumps(f, json_options=json_util.CANONICAL_JSON_OPTIONS) for f in filters),
        first_snapshot_day=first_snapshot_day,
    )


def read_raw(spark: SparkSession, plan: ReadPlan) -> DataFrame:
    """The planned documents as raw rows (RAW_SCHEMA), read by the executors, one partition per filter."""
    from pyspark.sql.types import StringType, StructField, StructType

    specs = spark.createDataFrame([(f,) for f in plan.filters], StructType([StructField("filter", StringType())]))
    specs = specs.repartition(len(plan.filters))
    uri, database, collection = plan.uri, plan.database, plan.collection

    def read_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for query in batch.column("filter").to_pylist():
                yield from _fetch_batches(uri, database, collection, json_util.loads(query))

    return specs.mapInArrow(read_partition, RAW_SCHEMA)


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
