"""Writes analytics snapshots to MongoDB: unordered bulk replaces by key-derived `_id`, retried with backoff.

Runs inside Spark tasks (one client per partition) and in `dlq retry`. Writing a snapshot again replaces
the same document, so retries and re-runs never duplicate. What still fails after the retries is handed
back to the caller, which puts it in the dead-letter queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)

from health_analytics.redaction import redact_text

log = logging.getLogger(__name__)

BULK_SIZE = 1000
TRANSIENT_ERRORS = (AutoReconnect, ConnectionFailure, NetworkTimeout, NotPrimaryError, ServerSelectionTimeoutError,
                    ExecutionTimeout, WTimeoutError)
# Server error codes worth retrying: interrupted, host unreachable/not found, network timeout, shutdown,
# not primary variants, write conflicts.
TRANSIENT_CODES = frozenset({6, 7, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


@dataclass
class WriteOutcome:
    inserted: int = 0
    updated: int = 0
    failed: list[tuple[Mapping[str, Any], str]] = field(default_factory=list)
    inserted_ids: set[Any] = field(default_factory=set)  # new documents (the rest replaced existing ones)

    def add(self, other: WriteOutcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.failed.extend(other.failed)
        self.inserted_ids |= other.inserted_ids


ANALYTICS_INDEXES = [
    IndexModel([("userId", ASCENDING), ("metricType", ASCENDING), ("timeRange", ASCENDING)], name="userId_metricType_timeRange"),
    IndexModel([("userId", ASCENDING), ("calculatedAt", DESCENDING)], name="userId_calculatedAt"),
    IndexModel([("metricType", ASCENDING)], name="metricType"),
    IndexModel(
        [("userId", ASCENDING), ("metricType", ASCENDING), ("timeRange", ASCENDING), ("periodEnd", ASCENDING)],
        name="snapshot_key",
        unique=True,
    ),
]
TTL_INDEX = IndexModel([("expiresAt", ASCENDING)], name="expiresAt_ttl", expireAfterSeconds=0)


def ensure_analytics_indexes(collection: Collection) -> list[str]:
    """The backend model's indexes plus the unique snapshot key; warnings for what the server refuses.

    The local server refuses TTL indexes (NotImplemented): then a plain `{expiresAt: 1}` index is made
    and a warning returned, so the job goes on. Existing indexes are left alone (asking the local server
    for a second index on the same key with other options crashes its connection).
    """
    existing = {tuple(ix["key"].items()): ix for ix in collection.list_indexes()}
    missing = [m for m in ANALYTICS_INDEXES if tuple(m.document["key"].items()) not in existing]
    if missing:
        collection.create_indexes(missing)
    ttl_key = tuple(TTL_INDEX.document["key"].items())
    current = existing.get(ttl_key)
    if current is not None:
        if "expireAfterSeconds" in current:
            return []
        return ["the index on expiresAt has no TTL (the server refused one earlier); old snapshots will not expire by themselves"]
    try:
        collection.create_indexes([TTL_INDEX])
        return []
    except OperationFailure as exc:
        collection.create_indexes([IndexModel([("expiresAt", ASCENDING)], name="expiresAt")])
        return [
            f"the server refused the TTL index on expiresAt ({exc.code}: {str(exc.details.get('errmsg', exc))[:120]}); "
            "old snapshots will not expire by themselves"
        ]


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return bool(errors) and all(e.get("code") in TRANSIENT_CODES for e in errors)
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


def _bulk(collection: Collection, docs: list[Mapping[str, Any]]) -> WriteOutcome:
    """MongoDB: one unordered bulk of replace-by-`_id` upserts (each atomic, each an index lookup)."""
    result = collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)
    return WriteOutcome(inserted=result.upserted_count, updated=result.matched_count, inserted_ids=set(result.upserted_ids.values()))


def _bulk_swap(collection: Collection, docs: list[Mapping[str, Any]]) -> WriteOutcome:
    """Local server: every update or replace there scans the whole collection, per statement, while
    inserts are cheap. So insert all; the ones that already exist (duplicate `_id`) are deleted with one
    `$in` statement (one scan) and inserted again. Still idempotent; a snapshot being rewritten is briefly
    absent, and a crash in that gap leaves it to the next run (it is recomputed from its inputs)."""
    try:
        collection.insert_many(docs, ordered=False)
        return WriteOutcome(inserted=len(docs), inserted_ids={d["_id"] for d in docs})
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise
    positions = [e["index"] for e in errors]  # chunk positions of the documents that already exist
    existing = [docs[i] for i in positions]
    collection.delete_many({"_id": {"$in": [d["_id"] for d in existing]}})
    try:
        collection.insert_many(existing, ordered=False)
    except BulkWriteError as exc:
        # Report failures at their positions in the chunk, as the caller expects of a bulk error.
        details = dict(exc.details)
        details["writeErrors"] = [{**e, "index": positions[e["index"]]} for e in details.get("writeErrors", [])]
        details["nInserted"] = len(docs) - len(existing) + details.get("nInserted", 0)
        raise BulkWriteError(details) from None
    fresh = set(positions)
    return WriteOutcome(inserted=len(docs) - len(existing), updated=len(existing),
                        inserted_ids={d["_id"] for i, d in enumerate(docs) if i not in fresh})


def write_documents(
    collection: Collection,
    docs: Iterable[Mapping[str, Any]],
    *,
    bulk_size: int = BULK_SIZE,
    attempts: int = 5,
    backoff_s: float = 0.2,
    secret: str | None = None,
    swap: bool = False,
) -> WriteOutcome:
    """Replace every document by `_id` (upsert; `swap`: the local server's insert-then-swap). Transient errors are retried with exponential backoff;
    documents that still fail are returned in `failed` with a one-line, password-free reason."""
    outcome = WriteOutcome()
    unreachable: str | None = None  # once the server is gone, don't wait for it again chunk after chunk
    chunk: list[Mapping[str, Any]] = []

    def flush() -> None:
        nonlocal unreachable
        if unreachable is not None:
            outcome.failed.extend((d, unreachable) for d in chunk)
            return
        result = _write_chunk(collection, chunk, attempts, backoff_s, secret, _bulk_swap if swap else _bulk)
        outcome.add(result)
        gave_up = [e for _d, e in result.failed if e.startswith("gave up")]
        if gave_up:
            unreachable = gave_up[0]

    for doc in docs:
        chunk.append(doc)
        if len(chunk) >= bulk_size:
            flush()
            chunk = []
    if chunk:
        flush()
    return outcome


def _write_chunk(collection: Collection, chunk: list[Mapping[str, Any]], attempts: int, backoff_s: float, secret: str | None,
                 bulk: Any = _bulk) -> WriteOutcome:
    pending = chunk
    done = WriteOutcome()
    for attempt in range(1, attempts + 1):
        try:
            done.add(bulk(collection, pending))
            return done
        except BulkWriteError as exc:
            # Unordered: everything except the reported indexes was written.
            errors = exc.details.get("writeErrors", [])
            failed_idx = {e["index"]: e for e in errors}
            done.inserted += exc.details.get("nUpserted", 0) + exc.details.get("nInserted", 0)
            done.updated += exc.details.get("nMatched", 0)
            done.inserted_ids |= {u["_id"] for u in exc.details.get("upserted", [])}
            retryable = [pending[i] for i, e in failed_idx.items() if e.get("code") in TRANSIENT_CODES]
            for i, e in failed_idx.items():
                if e.get("code") not in TRANSIENT_CODES:
                    done.failed.append((pending[i], redact_text(f"write error {e.get('code')}: {e.get('errmsg', '')}"[:300], secret)))
            if not retryable:
                return done
            pending = retryable
            reason = "transient write errors"
        except PyMongoError as exc:
            if not _is_transient(exc):
                done.failed.extend((d, redact_text(f"{type(exc).__name__}: {exc}"[:300], secret)) for d in pending)
                return done
            reason = redact_text(f"{type(exc).__name__}: {str(exc)[:200]}", secret)
        if attempt < attempts:
            delay = backoff_s * (2 ** (attempt - 1))
            log.warning("write attempt %d/%d failed (%s); retrying in %.1fs", attempt, attempts, reason, delay)
            time.sleep(delay)
    done.failed.extend((d, f"gave up after {attempts} attempts: {reason}") for d in pending)
    return done


@dataclass(frozen=True)
class SinkReport:
    inserted: int
    updated: int
    dead_lettered: int
    dlq_files: tuple[str, ...]


SINK_OUTPUT_SCHEMA = (
    "kind string, inserted long, updated long, failed long, dlq_file string, "
    "userId string, metricType string, timeRange string, analytics string, operationType string"
)
EVENT_COLUMNS = ("userId", "metricType", "timeRange", "analytics", "operationType")


def write_snapshots(
    snapshots: Any,
    *,
    uri: str,
    database: str,
    collection: str,
    dlq_directory: str,
    batch_id: str,
    started_ms: int,
    secret: str | None = None,
    swap: bool = False,
    attempts: int = 5,
    on_events: Callable[[Any], None] | None = None,
) -> SinkReport:
    """Write a snapshot DataFrame from the executors; each task dead-letters what it could not write
    (durably, before the job reports success) and returns only its counts to the driver.

    With `on_events`, each task also reports every written snapshot that is its user's latest of its
    (metricType, timeRange) — `calculatedAt` equal to the batch time — with its analytics as JSON and
    whether it was inserted or replaced; `on_events` gets those rows as a DataFrame (EVENT_COLUMNS)
    while the written result is still cached, so the writes run exactly once.
    """
    import pyarrow as pa
    from pyspark import StorageLevel

    notify = on_events is not None

    def write_partition(batches):
        import json

        from pyspark import TaskContext

        from health_analytics.dead_letter import DeadLetterQueue
        from health_analytics.mongo_client import connect
        from health_analytics.snapshot_documents import to_document

        part = TaskContext.get().partitionId() if TaskContext.get() else 0
        outcome = WriteOutcome()
        latest: dict[Any, tuple[str, str, str, str]] = {}

        def documents():
            for batch in batches:
                for row in batch.to_pylist():
                    doc = to_document(row)
                    doc["metadata"]["processingDurationMs"] = max(0, int(time.time() * 1000) - started_ms)
                    if notify and int(row["calculatedAt"].timestamp() * 1000) == started_ms:
                        from health_analytics.backend_events import json_safe

                        latest[doc["_id"]] = (row["userId"], row["metricType"], row["timeRange"],
                                              json.dumps(json_safe(doc["analytics"]), separators=(",", ":")))
                    yield doc

        with connect(uri, timeout_ms=10_000) as client:
            outcome = write_documents(client[database][collection], documents(), secret=secret, swap=swap,
                                      bulk_size=5000 if swap else BULK_SIZE, attempts=attempts)
        dlq_file = DeadLetterQueue(dlq_directory).write(outcome.failed, batch_id=batch_id, part=part) if outcome.failed else None
        failed_ids = {d["_id"] for d, _e in outcome.failed}
        events = [(k, v) for k, v in latest.items() if k not in failed_ids]
        yield pa.RecordBatch.from_pydict(
            {
                "kind": ["stats"] + ["event"] * len(events),
                "inserted": [outcome.inserted] + [None] * len(events),
                "updated": [outcome.updated] + [None] * len(events),
                "failed": [len(outcome.failed)] + [None] * len(events),
                "dlq_file": [str(dlq_file) if dlq_file else None] + [None] * len(events),
                "userId": [None] + [v[0] for _k, v in events],
                "metricType": [None] + [v[1] for _k, v in events],
                "timeRange": [None] + [v[2] for _k, v in events],
                "analytics": [None] + [v[3] for _k, v in events],
                "operationType": [None] + ["insert" if k in outcome.inserted_ids else "update" for k, _v in events],
            },
            schema=pa.schema([("kind", pa.string()), ("inserted", pa.int64()), ("updated", pa.int64()), ("failed", pa.int64()),
                              ("dlq_file", pa.string()), ("userId", pa.string()), ("metricType", pa.string()),
                              ("timeRange", pa.string()), ("analytics", pa.string()), ("operationType", pa.string())]),
        )

    out = snapshots.mapInArrow(write_partition, SINK_OUTPUT_SCHEMA)
    if notify:
        out = out.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = out.where("kind = 'stats'").select("inserted", "updated", "failed", "dlq_file").collect()  # one row per task
        if on_events is not None:
            on_events(out.where("kind = 'event'").select(*EVENT_COLUMNS))
    finally:
        if notify:
            out.unpersist()
    return SinkReport(
        inserted=sum(r["inserted"] for r in stats),
        updated=sum(r["updated"] for r in stats),
        dead_lettered=sum(r["failed"] for r in stats),
        dlq_files=tuple(r["dlq_file"] for r in stats if r["dlq_file"]),
    )


DELETE_CHUNK = 3000


def delete_snapshot_days(
    stale_days: Any,
    *,
    uri: str,
    database: str,
    collection: str,
    attempts: int = 5,
    secret: str | None = None,
) -> int:
    """Delete the snapshots (all three ranges) of stored days a full recomputation no longer has, by
    their key-derived `_id`s, from the executors. A delete that still fails after the retries fails the
    job, so the batch is not checkpointed and runs again."""
    import pyarrow as pa

    def delete_partition(batches):
        import datetime as dt

        from health_analytics.mongo_client import connect
        from health_analytics.snapshot_documents import snapshot_id
        from health_analytics.transforms.metrics import TIME_RANGES

        ids = []
        for batch in batches:
            for row in batch.to_pylist():
                end = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=row["day"])
                ids.extend(snapshot_id(row["userId"], row["metricType"], name, end) for name, _n in TIME_RANGES)
        deleted = 0
        if ids:
            with connect(uri, timeout_ms=10_000) as client:
                coll = client[database][collection]
                for i in range(0, len(ids), DELETE_CHUNK):
                    deleted += _delete_chunk(coll, ids[i:i + DELETE_CHUNK], attempts, secret)
        yield pa.RecordBatch.from_pydict({"deleted": [deleted]}, schema=pa.schema([("deleted", pa.int64())]))

    return sum(r["deleted"] for r in stale_days.mapInArrow(delete_partition, "deleted long").collect())


def _delete_chunk(collection: Collection, ids: list[Any], attempts: int, secret: str | None, backoff_s: float = 0.2) -> int:
    for attempt in range(1, attempts + 1):
        try:
            return collection.delete_many({"_id": {"$in": ids}}).deleted_count
        except PyMongoError as exc:
            if attempt == attempts or not _is_transient(exc):
                raise RuntimeError(redact_text(f"deleting stale snapshots failed: {type(exc).__name__}: {str(exc)[:200]}", secret)) from None
            time.sleep(backoff_s * (2 ** (attempt - 1)))
    return 0
