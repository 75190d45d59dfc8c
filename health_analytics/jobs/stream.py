"""The streaming job: a Spark Structured Streaming query whose `rate` source is only a clock.

Every `BATCH_INTERVAL_SECONDS` the query's `foreachBatch` runs one poll (`StreamService.poll_once`):
find the `healthmetrics` documents updated since the checkpoint (minus an overlap, SPEC §3), recompute
and write the affected users' snapshots (jobs.batch.process_changes), put their events in the durable
outbox, and only then advance `last_processed_timestamp.txt`. A poll that finds nothing starts no Spark
job. A poll that fails leaves the checkpoint where it was, so the next trigger does it again; writes are
idempotent, so a repeated or interrupted batch changes nothing twice.

Why the checkpoint is the newest `updatedAt` seen and not the wall clock: writers stamp `updatedAt`
themselves, so only their own clock orders their documents. Documents seen in the overlap are
remembered (id, updatedAt) and skipped by the next polls of this process; after a restart they are
processed once more, which is harmless.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from health_analytics.backend_events import build_bodies
from health_analytics.checkpoint import TimestampCheckpoint, format_timestamp
from health_analytics.dead_letter import DeadLetterQueue
from health_analytics.event_outbox import EventOutbox
from health_analytics.event_sender import EventSender
from health_analytics.jobs.batch import process_changes
from health_analytics.mongo_client import connect, describe_error, is_local_server
from health_analytics.mongo_reader import scan_changes
from health_analytics.mongo_sink import ensure_analytics_indexes
from health_analytics.redaction import redact_text, redact_uri, uri_password
from health_analytics.service_metrics import ServiceMetrics
from health_analytics.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
FIRST_POLL_LOOKBACK = dt.timedelta(days=30)  # SPEC §3: with no checkpoint the job starts 30 days back
DB_CHECK_TTL_S = 2.0


@dataclass
class PollResult:
    """What one micro-batch did: the batch log's JSON line."""

    batch_id: str
    outcome: str  # ok | partial (some snapshots dead-lettered) | empty | failed | skipped (stopping)
    started_at: str
    duration_s: float = 0.0
    since: str | None = None
    checkpoint: str | None = None
    changed_documents: int = 0
    users: int = 0
    documents_read: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    dlq_files: list[str] = field(default_factory=list)
    events_queued: int = 0
    error: str | None = None

    def as_json(self) -> str:
        return json.dumps({"event": "batch", **asdict(self)}, separators=(",", ":"), sort_keys=False)


class StreamService:
    """One poll at a time, the checkpoint, the events hand-off, and what /health reports."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        *,
        metrics: ServiceMetrics | None = None,
        outbox: EventOutbox | None = None,
        sender: EventSender | None = None,
        batch_log: Callable[[str], None] = lambda line: None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC),
    ) -> None:
        self.spark = spark
        self.settings = settings
        self.metrics = metrics or ServiceMetrics()
        self.outbox = outbox
        self.sender = sender
        self.batch_log = batch_log
        self.clock = clock
        self.checkpoint = TimestampCheckpoint(spark, settings.checkpoint_location)
        self._secret = uri_password(settings.mongo_uri_value)
        self._seen: frozenset[tuple[str, int]] = frozenset()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._abandoned = threading.Event()
        self._indexes_checked = False
        self._local_server: bool | None = None
        self.last: PollResult | None = None
        self.completed = 0  # polls that ended ok, partial or empty
        self._db_check: tuple[float, bool, str] = (0.0, False, "not checked yet")
        self.query: Any = None

    # ---- one micro-batch -------------------------------------------------------------------------
    def poll_once(self) -> PollResult:
        """Run one micro-batch now (also what each trigger of the streaming query calls)."""
        with self._lock:
            result = self._poll()
        self.last = result
        if result.outcome != "failed":
            self.completed += 1
        self._observe(result)
        return result

    def _poll(self) -> PollResult:
        now = self.clock()
        batch_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        result = PollResult(batch_id=batch_id, outcome="empty", started_at=format_timestamp(now))
        if self._stop.is_set():
            result.outcome = "skipped"
            return result
        started = time.perf_counter()
        try:
            checkpoint = self.checkpoint.read()
            base = checkpoint or now - FIRST_POLL_LOOKBACK
            since = base - dt.timedelta(seconds=self.settings.poll_overlap_seconds)
            result.since = format_timestamp(since)
            result.checkpoint = format_timestamp(checkpoint) if checkpoint else None
            overlap_ms = self.settings.poll_overlap_seconds * 1000
            with connect(self.settings.mongo_uri_value, timeout_ms=10_000) as client:
                db = client[self.settings.mongo_db_name]
                if not self._indexes_checked:
                    for warning in ensure_analytics_indexes(db[self.settings.analytics_collection]):
                        log.warning("%s", warning)
                    self._local_server = is_local_server(client)
                    self._indexes_checked = True
                changes = scan_changes(db[self.settings.health_metrics_collection], since, skip=self._seen, recent_ms=overlap_ms,
                                       cap=now)
            self._remember_db(True, "ok")
            result.changed_documents = changes.documents
            result.users = len({str(u).lower() for u in changes.user_ids})
            if changes.documents == 0:  # nothing new: no Spark job at all
                if checkpoint is None:
                    self.checkpoint.write(now)  # the first poll saw everything up to now
                    result.checkpoint = format_timestamp(now)
                result.duration_s = time.perf_counter() - started
                return result
            batch_ms = int(now.timestamp() * 1000)
            events: list[int] = []
            on_events = None
            if self.outbox is not None:
                on_events = lambda df: events.append(self._queue_events(df, batch_id))  # noqa: E731
            written = process_changes(
                self.spark, self.settings, changes, since=since, incremental=True, batch_id=batch_id, batch_ms=batch_ms,
                with_highlights=False, local_server=bool(self._local_server), on_events=on_events,
                progress=lambda step: self._step(batch_id, step),
            )
            for key in ("documents_read", "rejected", "inserted", "updated", "deleted", "dead_lettered", "dlq_files"):
                setattr(result, key, written[key])
            result.events_queued = sum(events)
            # Everything is durably written, dead-lettered or queued: now the checkpoint may move.
            newest = changes.newest_update
            advanced = max(x for x in (checkpoint, newest) if x is not None) if (checkpoint or newest) else now
            log.info("batch %s: advancing checkpoint to %s", batch_id, format_timestamp(advanced))
            self.checkpoint.write(advanced)
            result.checkpoint = format_timestamp(advanced)
            floor = int(advanced.timestamp() * 1000) - overlap_ms
            self._seen = frozenset(k for k in self._seen | changes.recent_keys if k[1] >= floor)
            result.outcome = "partial" if result.dead_lettered else "ok"
            if self.sender is not None and result.events_queued:
                self.sender.notify()
        except Exception as exc:  # noqa: BLE001 - a failed batch is reported and retried at the next trigger
            result.outcome = "failed"
            result.error = _one_line(describe_error(exc, self.settings.mongo_uri_value) if _is_mongo_error(exc)
                                     else f"{type(exc).__name__}: {exc}", self._secret)
            if _is_mongo_error(exc):
                self._remember_db(False, result.error)
            log.error("batch %s failed (the checkpoint stays; retried at the next trigger): %s", batch_id, result.error)
        result.duration_s = round(time.perf_counter() - started, 3)
        return result

    def _step(self, batch_id: str, step: str) -> None:
        if self._abandoned.is_set():
            raise BatchAbandoned(f"batch {batch_id} abandoned before {step}")
        log.info("batch %s: %s", batch_id, step)

    def _queue_events(self, events: DataFrame, batch_id: str) -> int:
        """Each user's latest written snapshots → request bodies in the outbox (durable before the
        checkpoint moves). The rows stream to the driver one partition at a time, never all at once."""
        per_user = events.groupBy("userId").agg(
            F.collect_list(F.struct("metricType", "timeRange", "analytics", "operationType")).alias("elements")
        )

        def bodies():
            for row in per_user.toLocalIterator():
                elements = [
                    {"metricType": e["metricType"], "timeRange": e["timeRange"], "analytics": json.loads(e["analytics"]),
                     "operationType": e["operationType"]}
                    for e in row["elements"]
                ]
                yield from build_bodies(row["userId"], elements)

        assert self.outbox is not None
        return self.outbox.add(bodies(), batch_id)

    def _observe(self, result: PollResult) -> None:
        m = self.metrics
        m.record_batch(result.outcome if result.outcome != "skipped" else "empty",
                       result.duration_s if result.outcome in ("ok", "partial", "failed") else None,
                       documents_read=result.documents_read, rejected=result.rejected, inserted=result.inserted,
                       updated=result.updated, deleted=result.deleted, dead_lettered=result.dead_lettered)
        m.last_batch_timestamp.set(time.time())
        self.refresh_lag()
        if self.outbox is not None:
            m.events_pending.set(self.outbox.pending())
        self.batch_log(result.as_json())

    def refresh_lag(self) -> None:
        try:
            checkpoint = self.checkpoint.read()
        except Exception:  # noqa: BLE001 - a lag figure is not worth failing for
            return
        if checkpoint is not None:
            self.metrics.checkpoint_lag.set(max(0.0, (self.clock() - checkpoint).total_seconds()))

    # ---- health ----------------------------------------------------------------------------------
    def _remember_db(self, ok: bool, reason: str) -> None:
        self._db_check = (time.monotonic(), ok, reason)

    def database_reachable(self) -> tuple[bool, str]:
        checked, ok, reason = self._db_check
        if time.monotonic() - checked > DB_CHECK_TTL_S:
            try:
                with connect(self.settings.mongo_uri_value, timeout_ms=1500) as client:
                    client.admin.command("ping")
                ok, reason = True, "ok"
            except Exception as exc:  # noqa: BLE001
                ok, reason = False, _one_line(describe_error(exc, self.settings.mongo_uri_value), self._secret)
            self._remember_db(ok, reason)
        return ok, reason

    def ready(self) -> tuple[bool, str]:
        if self.completed == 0:
            return False, "no batch has completed yet" + (f" (last: {self.last.error})" if self.last and self.last.error else "")
        ok, reason = self.database_reachable()
        return (True, "ok") if ok else (False, f"database unreachable: {reason}")

    def status(self) -> dict[str, Any]:
        db_ok, db_reason = self.database_reachable()
        try:
            checkpoint = self.checkpoint.read()
            checkpoint_text = format_timestamp(checkpoint) if checkpoint else None
        except Exception as exc:  # noqa: BLE001
            checkpoint_text = f"unreadable: {type(exc).__name__}"
        dlq = DeadLetterQueue(self.settings.dlq_directory)
        last = self.last
        return {
            "status": "ok" if db_ok and (last is None or last.outcome != "failed") else "degraded",
            "database": {"reachable": db_ok, "detail": db_reason},
            "lastBatch": None if last is None else {
                "batchId": last.batch_id, "outcome": last.outcome, "startedAt": last.started_at,
                "durationSeconds": last.duration_s, "changedDocuments": last.changed_documents, "error": last.error,
            },
            "batchesCompleted": self.completed,
            "checkpoint": {"location": self.checkpoint.location, "lastProcessedTimestamp": checkpoint_text},
            "dlq": {"files": len(dlq.files())},
            "outbox": {"pending": self.outbox.pending() if self.outbox is not None else 0,
                       "eventsEnabled": self.sender is not None,
                       "forbidden": bool(self.sender is not None and self.sender.forbidden)},
        }

    # ---- the streaming query ---------------------------------------------------------------------
    def start_query(self) -> Any:
        """Start the rate-source query that triggers a poll every BATCH_INTERVAL_SECONDS."""
        clock = self.spark.readStream.format("rate").option("rowsPerSecond", 1).load()

        def on_trigger(_df: DataFrame, _epoch: int) -> None:
            if not self._stop.is_set():
                self.poll_once()  # never touches _df: an empty poll starts no Spark job

        self.query = (
            clock.writeStream.queryName("health-analytics-poll")
            .foreachBatch(on_trigger)
            .trigger(processingTime=f"{self.settings.batch_interval_seconds} seconds")
            .option("checkpointLocation", self.settings.checkpoint_location)
            .start()
        )
        return self.query

    def request_stop(self) -> None:
        """Stop after the current batch: no new poll starts."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run_until_stopped(self, poll_s: float = 0.5) -> None:
        """Block until `request_stop` (or the query dies), then let the current batch finish and stop."""
        query = self.query or self.start_query()
        while not self._stop.is_set() and query.isActive:
            query.awaitTermination(poll_s)
        self._stop.set()
        with self._lock:  # the batch in flight, if any, ends first: the checkpoint matches what was written
            query.stop()
        if query.exception() is not None:
            raise RuntimeError(f"the streaming query stopped: {query.exception()}")

    def abandon(self) -> None:
        """Second Ctrl+C: stop now. Cancelling the running jobs is safe: the checkpoint only moves after
        a batch's writes, and rewriting them is idempotent."""
        self._stop.set()
        self._abandoned.set()  # the batch stops at its next step...
        self.spark.sparkContext.cancelAllJobs()  # ...or now, if a Spark job is running


class BatchAbandoned(RuntimeError):
    """The operator asked to stop now: the batch ends without moving the checkpoint."""


def _one_line(text: str, secret: str | None) -> str:
    """The first meaningful line of an error (Spark's carry Java stack traces), without the password."""
    lines = [line.strip() for line in redact_text(text, secret).splitlines() if line.strip()]
    return (lines[0] if lines else "unknown error")[:500]


def _is_mongo_error(exc: BaseException) -> bool:
    from pymongo.errors import PyMongoError

    return isinstance(exc, PyMongoError)


def serve(settings: Settings, *, say: Callable[[str], None], batch_log: Callable[[str], None]) -> int:
    """The `stream` command: Spark, the service, its endpoints and the event sender, until SIGTERM/Ctrl+C.

    `say` gets the human lines (start, events off, shutdown), `batch_log` one JSON line per batch.
    Returns the exit code: 0 after a requested stop, 1 when the streaming query died.
    """
    import signal

    from health_analytics.health_server import HealthServer
    from health_analytics.spark_session import build_spark_session

    spark = build_spark_session(settings)
    metrics = ServiceMetrics()
    outbox = EventOutbox(settings.outbox_directory)
    sender: EventSender | None = None
    if settings.events_enabled:
        assert settings.service_token is not None
        sender = EventSender(settings.backend_api_url, settings.service_token, outbox,
                             concurrency=settings.events_concurrency, timeout_s=settings.events_timeout_seconds,
                             on_report=metrics.record_delivery)
    service = StreamService(spark, settings, metrics=metrics, outbox=outbox if sender else None, sender=sender, batch_log=batch_log)
    server = HealthServer(settings.health_check_host, settings.health_check_port, status=service.status, ready=service.ready,
                          registry=metrics.registry).start()
    interrupts = 0

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            say(f"{signal.Signals(signum).name}: stopping after the current batch (again to stop now)")
            service.request_stop()
        else:
            say("stopping now: the running batch is abandoned; it runs again at the next start")
            service.abandon()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        say(f"streaming {settings.mongo_db_name}.{settings.health_metrics_collection} every {settings.batch_interval_seconds}s "
            f"(server {settings.mongo_uri_redacted}); checkpoint {service.checkpoint.location}")
        say(f"health on {server.url}/health, readiness {server.url}/health/ready, metrics {server.url}/metrics")
        if sender is None:
            say("events are off: SERVICE_TOKEN is not set")
        else:
            say(f"events to {redact_uri(settings.backend_api_url).rstrip('/')}/events/emit; outbox {settings.outbox_directory}")
            sender.start()
            sender.notify()  # deliver what an earlier run left in the outbox
        service.start_query()
        service.run_until_stopped()
        say("stopped; the checkpoint matches what was written")
    except Exception as exc:  # noqa: BLE001 - one line, exit 1
        say(f"error: {_one_line(str(exc), uri_password(settings.mongo_uri_value))}")
        code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if sender is not None:
            sender.stop()
        server.stop()
        spark.stop()
    return code
