"""The batch job: `healthmetrics` → analytics snapshots → `analytics`, with a summary of what happened.

Exit status (see `BatchSummary.exit_code`): 0 all written, 2 some snapshots went to the dead-letter
queue, 1 the job failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from health_analytics.mongo_client import connect, is_local_server
from health_analytics.mongo_reader import ChangeSet, plan_read, read_existing_days, read_raw, scan_changes
from health_analytics.mongo_sink import delete_snapshot_days, ensure_analytics_indexes, write_snapshots
from health_analytics.redaction import uri_password
from health_analytics.settings import Settings
from health_analytics.transforms.params import AnalyticsParams, BatchContext
from health_analytics.transforms.pipeline import compute_analytics

log = logging.getLogger(__name__)
UTC = dt.timezone.utc


@dataclass
class BatchSummary:
    batch_id: str
    mode: str
    documents_read: int = 0
    changed_documents: int = 0
    users: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    snapshots: int = 0
    inserted: int = 0
    updated: int = 0
    dead_lettered: int = 0
    deleted: int = 0
    dlq_files: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    streaks: list[dict[str, Any]] = field(default_factory=list)
    trends: list[dict[str, Any]] = field(default_factory=list)
    newest_update: str | None = None

    @property
    def exit_code(self) -> int:
        return 2 if self.dead_lettered else 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def run_batch(
    spark: SparkSession,
    settings: Settings,
    *,
    since: dt.datetime | None,
    users: Sequence[Any] | None = None,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> BatchSummary:
    """Compute and write the snapshots of every user with a document updated since `since` (None: all)."""
    started = time.perf_counter()
    now = now or dt.datetime.now(UTC)
    batch_ms = int(now.timestamp() * 1000)
    batch_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    incremental = since is not None
    summary = BatchSummary(batch_id=batch_id, mode="incremental" if incremental else "full")

    with connect(settings.mongo_uri_value) as client:
        db = client[settings.mongo_db_name]
        summary.warnings += ensure_analytics_indexes(db[settings.analytics_collection])
        local_server = is_local_server(client)
        progress("finding changed documents")
        changes = scan_changes(db[settings.health_metrics_collection], since, users)
    summary.changed_documents = changes.documents
    summary.users = len({str(u).lower() for u in changes.user_ids})
    summary.newest_update = changes.newest_update.isoformat() if changes.newest_update else None
    if changes.documents == 0:
        summary.duration_s = time.perf_counter() - started
        return summary

    written = process_changes(spark, settings, changes, since=since, incremental=incremental, batch_id=batch_id,
                              batch_ms=batch_ms, progress=progress, local_server=local_server)
    for key, value in written.items():
        setattr(summary, key, value)
    summary.duration_s = time.perf_counter() - started
    return summary


def process_changes(
    spark: SparkSession,
    settings: Settings,
    changes: ChangeSet,
    *,
    since: dt.datetime | None,
    incremental: bool,
    batch_id: str,
    batch_ms: int,
    progress: Callable[[str], None] = lambda _msg: None,
    with_highlights: bool = True,
    local_server: bool = False,
    on_events: Callable[[DataFrame], None] | None = None,
) -> dict[str, Any]:
    """Read the affected users' history and stored snapshot days, compute, write, delete what a full
    recomputation no longer has; returns the summary fields it measured.

    Shared by the batch job and each micro-batch of the streaming job (which passes `on_events` to
    receive the users' latest written snapshots, see mongo_sink.write_snapshots).
    """
    partitions = max(1, spark.sparkContext.defaultParallelism)
    plan = plan_read(
        uri=settings.mongo_uri_value,
        database=settings.mongo_db_name,
        collection=settings.health_metrics_collection,
        changes=changes,
        since=since,
        partitions=partitions,
        incremental=incremental,
        analytics_collection=settings.analytics_collection,
    )
    ctx = BatchContext.at(batch_ms, job_id=f"{spark.sparkContext.applicationId}/{batch_id}", spark_version=spark.version,
                          first_snapshot_day=plan.first_snapshot_day)
    progress("reading documents")
    raw = read_raw(spark, plan).persist(StorageLevel.MEMORY_AND_DISK)
    existing = read_existing_days(spark, plan).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        documents_read = raw.count()
        existing.count()  # read the stored days now, before this batch's own writes change them
        result = compute_analytics(raw, AnalyticsParams.from_settings(settings), ctx, existing)
        snapshots = result.snapshots.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            progress("computing and writing snapshots")
            report = write_snapshots(
                snapshots,
                uri=settings.mongo_uri_value,
                database=settings.mongo_db_name,
                collection=settings.analytics_collection,
                dlq_directory=str(settings.dlq_directory),
                batch_id=batch_id,
                started_ms=batch_ms,
                secret=uri_password(settings.mongo_uri_value),
                swap=local_server,
                attempts=settings.mongo_write_attempts,
                on_events=on_events,
            )
            deleted = 0
            if result.stale is not None:
                progress("deleting stale snapshots")
                deleted = delete_snapshot_days(
                    result.stale,
                    uri=settings.mongo_uri_value,
                    database=settings.mongo_db_name,
                    collection=settings.analytics_collection,
                    attempts=settings.mongo_write_attempts,
                    secret=uri_password(settings.mongo_uri_value),
                )
            progress("summarising")
            rejections = result.rejections
            if since is not None:  # the reloaded history's old rejections were counted by earlier batches
                rejections = rejections.where(F.col("updated_ms") >= int(since.timestamp() * 1000))
            rejections = rejections.drop("updated_ms")
            rejected = {r["reason"]: r["count"] for r in rejections.groupBy("reason").count().collect()}
            if rejected:
                _write_quarantine(rejections, settings, batch_id)
            out: dict[str, Any] = {
                "documents_read": documents_read,
                "rejected": dict(sorted(rejected.items())),
                "snapshots": report.inserted + report.updated + report.dead_lettered,
                "inserted": report.inserted,
                "updated": report.updated,
                "dead_lettered": report.dead_lettered,
                "deleted": deleted,
                "dlq_files": list(report.dlq_files),
            }
            if with_highlights:
                out.update(highlights(snapshots))
            return out
        finally:
            snapshots.unpersist()
    finally:
        raw.unpersist()
        existing.unpersist()


def _write_quarantine(rejections: DataFrame, settings: Settings, batch_id: str) -> None:
    """Ids and reasons of every rejected document or value (never the values), as JSON lines."""
    path = f"{str(settings.dlq_directory).rstrip('/')}/quarantine/batch={batch_id}"
    rejections.coalesce(1).write.mode("overwrite").json(path)


def highlights(snapshots: DataFrame, limit: int = 10) -> dict[str, list[dict[str, Any]]]:
    """The few lines a person wants to see: anomalies, the longest current streaks, the strongest trends."""
    day = F.date_format(F.col("periodEnd"), "yyyy-MM-dd")
    seven = snapshots.where(F.col("timeRange") == "7day")
    anomalies = (
        seven.where(F.col("analytics.anomalyDetected"))
        .orderBy(F.abs(F.col("analytics.anomalyDetails.deviation")).desc(), "userId", "metricType", "periodEnd")
        .select("userId", "metricType", day.alias("day"),
                F.col("analytics.anomalyDetails.actualValue").alias("value"),
                F.col("analytics.anomalyDetails.expectedValue").alias("expected"),
                F.col("analytics.anomalyDetails.deviation").alias("z"),
                F.col("analytics.anomalyDetails.severity").alias("severity"))
        .limit(limit * 2)
    )
    latest = seven.withColumn("_latest", F.max("periodEnd").over(_user_metric())).where(F.col("periodEnd") == F.col("_latest"))
    streaks = (
        latest.where(F.col("analytics.streakDays") > 0)
        .orderBy(F.col("analytics.streakDays").desc(), "userId", "metricType")
        .select("userId", "metricType", F.col("analytics.streakDays").alias("days"),
                F.date_format(F.col("analytics.streakStartDate"), "yyyy-MM-dd").alias("since"))
        .limit(limit)
    )
    trends = (
        latest.where(F.col("analytics.trend") != "stable")
        .orderBy(F.abs(F.col("analytics.trendPercentage")).desc(), "userId", "metricType")
        .select("userId", "metricType", F.col("analytics.trend").alias("trend"),
                F.col("analytics.trendPercentage").alias("percent"), F.col("analytics.rollingAverage").alias("average"))
        .limit(limit)
    )
    return {name: [r.asDict() for r in df.collect()] for name, df in (("anomalies", anomalies), ("streaks", streaks), ("trends", trends))}


def _user_metric():
    from pyspark.sql import Window

    return Window.partitionBy("userId", "metricType")
