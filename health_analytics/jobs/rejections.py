"""Invalid documents by kind, for `inspect`: the engine's own validation over the whole collection."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from health_analytics.mongo_client import connect
from health_analytics.mongo_reader import plan_read, read_raw, scan_changes
from health_analytics.settings import Settings
from health_analytics.transforms.params import AnalyticsParams, BatchContext
from health_analytics.transforms.pipeline import compute_analytics


def count_rejections(spark: SparkSession, settings: Settings, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Rejections by reason code over every document, exactly as a full batch would count them."""
    now = now or dt.datetime.now(dt.timezone.utc)
    with connect(settings.mongo_uri_value) as client:
        changes = scan_changes(client[settings.mongo_db_name][settings.health_metrics_collection], None)
    plan = plan_read(uri=settings.mongo_uri_value, database=settings.mongo_db_name, collection=settings.health_metrics_collection,
                     changes=changes, since=None, partitions=max(1, spark.sparkContext.defaultParallelism), incremental=False)
    result = compute_analytics(read_raw(spark, plan), AnalyticsParams.from_settings(settings), BatchContext.at(int(now.timestamp() * 1000)))
    return {r["reason"]: r["count"] for r in result.rejections.groupBy("reason").count().collect()}
