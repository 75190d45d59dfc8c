"""Writes analytics snapshots to MongoDB: unordered bulk replaces by key-derived `_id`, retried with backoff.

Runs inside Spark tasks (one client per partition) and in `dlq retry`. Writing a snapshot again replaces
the same document, so retries and re-runs never duplicate. What still fails after the retries is handed
back to the caller, which puts it in the dead-letter queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
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

    def add(self, other: WriteOutcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.failed.extend(other.failed)


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
    return WriteOutcome(inserted=result.upserted_count, updated=result.matched_count)


def _bulk_swap(collection: Collection, docs: list[Mapping[str, Any]]) -> WriteOutcome:
    """Local server: every update or replace there scans the whole collection, per statement, while
    inserts are cheap. So insert all; the ones that already exist (duplicate `_id`) are deleted with one
    `$in` statement (one scan) and inserted again. Still idempotent; a snapshot being rewritten is briefly
    absent, and a crash in that gap leaves it to the next run (it is recomputed from its inputs)."""
    try:
        collection.insert_many(docs, ordered=False)
        return WriteOutcome(inserted=len(docs))
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
    return WriteOutcome(inserted=len(docs) - len(existing), updated=len(existing))


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


SINK_STATS_SCHEMA = "inserted long, updated long, failed long, dlq_file string"


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
) -> SinkReport:
    """Write a snapshot DataFrame from the executors; each task dead-letters what it could not write
    (durably, before the job reports success) and returns only its counts to the driver."""
    import pyarrow as pa

    def write_partition(batches):
        from pyspark import TaskContext

        from health_analytics.dead_letter import DeadLetterQueue
        from health_analytics.mongo_client import connect
        from health_analytics.snapshot_documents import to_document

        part = TaskContext.get().partitionId() if TaskContext.get() else 0
        outcome = WriteOutcome()

        def documents():
            for batch in batches:
                for row in batch.to_pylist():
                    doc = to_document(row)
                    doc["metadata"]["processingDurationMs"] = max(0, int(time.time() * 1000) - started_ms)
                    yield doc

        with connect(uri, timeout_ms=10_000) as client:
            outcome = write_documents(client[database][collection], documents(), secret=secret, swap=swap,
                                      bulk_size=5000 if swap else BULK_SIZE, attempts=attempts)
        dlq_file = DeadLetterQueue(dlq_directory).write(outcome.failed, batch_id=batch_id, part=part) if outcome.failed else None
        yield pa.RecordBatch.from_pydict(
            {"inserted": [outcome.inserted], "updated": [outcome.updated], "failed": [len(outcome.failed)],
             "dlq_file": [str(dlq_file) if dlq_file else None]},
            schema=pa.schema([("inserted", pa.int64()), ("updated", pa.int64()), ("failed", pa.int64()), ("dlq_file", pa.string())]),
        )

    stats = snapshots.mapInArrow(write_partition, SINK_STATS_SCHEMA).collect()  # one small row per task
    return SinkReport(
        inserted=sum(r["inserted"] for r in stats),
        updated=sum(r["updated"] for r in stats),
        dead_lettered=sum(r["failed"] for r in stats),
        dlq_files=tuple(r["dlq_file"] for r in stats if r["dlq_file"]),
    )
