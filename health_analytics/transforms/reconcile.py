"""Which stored snapshots an incremental batch must add, rewrite or delete, so that the collection equals
a full recomputation (SPEC §3).

Rewriting the snapshots from the earliest changed day on is not enough on its own: a value that turns
invalid leaves its day's snapshots behind, a new latest day pushes the oldest day out of the
`ANALYTICS_HISTORY_DAYS` window, and a latest day that turns invalid pulls earlier days back in. The
stored snapshot days of the affected users (`existing`: userId, metricType, day) settle all three.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from health_analytics.transforms.params import AnalyticsParams

DAY_KEY = ["userId", "metricType", "day"]


def snapshot_days(values: DataFrame, params: AnalyticsParams) -> DataFrame:
    """(userId, metricType, day) of every snapshot a full recomputation has: valid days within the
    history window that ends at the user's latest day of the metric."""
    latest = F.max("day").over(Window.partitionBy("userId", "metricType"))
    return (
        values.select(*DAY_KEY, latest.alias("_latest"))
        .where(F.col("day") > F.col("_latest") - params.history_days)
        .select(*DAY_KEY)
    )


def stale_days(existing: DataFrame, values: DataFrame, params: AnalyticsParams) -> DataFrame:
    """Stored snapshot days that a full recomputation no longer has: to delete (all three ranges)."""
    return existing.select(*DAY_KEY).join(snapshot_days(values, params), DAY_KEY, "left_anti")


def vanished_days(stale: DataFrame, values: DataFrame) -> DataFrame:
    """Stale days whose value is gone (turned invalid, or its document moved to another date) — not the
    days that only aged out of the history window as a new latest day came in: their value still counts
    in the windows after them, so nothing else changes."""
    return stale.select(*DAY_KEY).join(values.select(*DAY_KEY), DAY_KEY, "left_anti")


def days_to_write(daily: DataFrame, existing: DataFrame | None, first_day: int | None,
                  vanished: DataFrame | None = None) -> DataFrame:
    """Snapshot rows to (re)write. Without `first_day`: every day. Otherwise every day from the earliest
    changed day on; from a (user, metric)'s earliest vanished day on (a value that is gone changes the
    windows of the days after it; see vanished_days); earlier days of the window that are not stored
    yet (the window moved back); and the latest day, whose `calculatedAt` must stay the newest of its
    (user, metric, range). The cost follows the change: a new day writes that day only."""
    if first_day is None:
        return daily
    if existing is None:
        return daily.where(F.col("day") >= first_day)
    stored = existing.select(*DAY_KEY).withColumn("_stored", F.lit(True))
    keep = (F.col("day") >= first_day) | F.col("_stored").isNull() | (F.col("day") == F.col("latest_day"))
    out = daily.join(stored, DAY_KEY, "left")
    if vanished is not None:
        floors = vanished.groupBy("userId", "metricType").agg(F.min("day").alias("_vanished_from"))
        out = out.join(floors, ["userId", "metricType"], "left")
        keep = keep | (F.col("_vanished_from").isNotNull() & (F.col("day") >= F.col("_vanished_from")))
    return out.where(keep).drop("_stored", "_vanished_from")
