"""The streaming service's Prometheus metrics, in a registry of their own (no process-global state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from health_analytics.event_sender import DeliveryReport

PREFIX = "health_analytics"
BATCH_SECONDS_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batches = Counter(f"{PREFIX}_batches", "Micro-batches by outcome (ok, partial: some snapshots dead-lettered, empty, failed)",
                               ["outcome"], registry=r)
        self.batch_duration = Histogram(f"{PREFIX}_batch_duration_seconds", "Duration of micro-batches that found changes",
                                        buckets=BATCH_SECONDS_BUCKETS, registry=r)
        self.documents_read = Counter(f"{PREFIX}_documents_read", "healthmetrics documents read by micro-batches", registry=r)
        self.rejections = Counter(f"{PREFIX}_rejections", "Rejected documents and values, by reason", ["reason"], registry=r)
        self.snapshots_written = Counter(f"{PREFIX}_snapshots_written", "Snapshots written, by operation", ["operation"], registry=r)
        self.snapshots_deleted = Counter(f"{PREFIX}_snapshots_deleted", "Stale snapshots deleted", registry=r)
        self.dlq_records = Counter(f"{PREFIX}_dlq_records", "Snapshots put in the dead-letter queue", registry=r)
        self.events_sent = Counter(f"{PREFIX}_events_sent", "Event requests the backend accepted", registry=r)
        self.events_failed = Counter(f"{PREFIX}_events_failed", "Event requests that failed, by reason (kept for later unless rejected)",
                                     ["reason"], registry=r)
        self.events_pending = Gauge(f"{PREFIX}_events_pending", "Event requests waiting in the outbox", registry=r)
        self.events_rejected = Counter(f"{PREFIX}_events_rejected", "Event requests the backend refused as malformed (set aside)", registry=r)
        self.checkpoint_lag = Gauge(f"{PREFIX}_checkpoint_lag_seconds", "Seconds between now and the checkpoint's timestamp", registry=r)
        self.last_batch_timestamp = Gauge(f"{PREFIX}_last_batch_timestamp_seconds", "Unix time the last micro-batch ended", registry=r)

    def record_batch(self, outcome: str, duration_s: float | None = None, *, documents_read: int = 0,
                     rejected: dict[str, int] | None = None, inserted: int = 0, updated: int = 0, deleted: int = 0,
                     dead_lettered: int = 0) -> None:
        self.batches.labels(outcome).inc()
        if duration_s is not None:
            self.batch_duration.observe(duration_s)
        self.documents_read.inc(documents_read)
        for reason, count in (rejected or {}).items():
            self.rejections.labels(reason).inc(count)
        self.snapshots_written.labels("inserted").inc(inserted)
        self.snapshots_written.labels("updated").inc(updated)
        self.snapshots_deleted.inc(deleted)
        self.dlq_records.inc(dead_lettered)

    def record_delivery(self, report: DeliveryReport) -> None:
        self.events_sent.inc(report.sent)
        for reason, count in report.failed.items():
            self.events_failed.labels(reason).inc(count)
        self.events_rejected.inc(report.rejected)
        self.events_pending.set(report.pending)
