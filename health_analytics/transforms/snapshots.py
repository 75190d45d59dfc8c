"""Assembly of analytics snapshots exactly as the `analytics` model of SPEC §2.

`userId` stays a 24-hex string here (Spark has no ObjectId); the sink writes it as an ObjectId. Every
date is a Spark timestamp made from epoch milliseconds, so no session time zone enters it.
`metadata.processingDurationMs` is left null for the sink to fill when it writes.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from health_analytics.transforms.anomalies import add_anomalies, baseline_columns
from health_analytics.transforms.comparison import comparison_columns
from health_analytics.transforms.metrics import TIME_RANGES
from health_analytics.transforms.reconcile import days_to_write, vanished_days
from health_analytics.transforms.params import MS_PER_DAY, SNAPSHOT_TTL_DAYS, AnalyticsParams, BatchContext
from health_analytics.transforms.streaks import add_run_starts, add_streaks, run_edge_columns
from health_analytics.transforms.window_stats import by_day, statistics_columns, window_columns

WINDOW_SIZES = tuple(n for _name, n in TIME_RANGES)

SNAPSHOT_KEY = ("userId", "metricType", "timeRange", "periodEnd")


def _day_to_timestamp(day: Column) -> Column:
    return F.timestamp_millis(day.cast("long") * MS_PER_DAY)


def daily_analytics(values: DataFrame, params: AnalyticsParams) -> DataFrame:
    """Per (user, metric, day): every window, baseline and streak figure, for the days that get snapshots.

    One pass computes every frame over one sort; the run starts of streaks need two more passes over the
    same sorted data. Array statistics are computed only after rows are cut to snapshot days.
    """
    latest = F.max("day").over(by_day().rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing))
    framed = values.select(
        "*",
        latest.alias("latest_day"),
        *window_columns(WINDOW_SIZES),
        *baseline_columns(params),
        *run_edge_columns(params),
    )
    runs = add_run_starts(framed)
    snapshot_days = runs.where(F.col("day") > F.col("latest_day") - params.history_days)
    with_stats = snapshot_days.select("*", *statistics_columns(WINDOW_SIZES)).drop(*[f"w{n}_values" for n in WINDOW_SIZES])
    return add_streaks(add_anomalies(with_stats, params))


def _range_analytics(name: str, n: int, calculated_at: Column) -> Column:
    cmp = comparison_columns(F.col(f"w{n}_mean"), F.col(f"p{n}_mean"), F.col(f"p{n}_count"), F.col("metricType"))
    details = F.when(
        F.col("anomaly"),
        F.struct(
            F.col("severity").alias("severity"),
            F.col("value").alias("actualValue"),
            F.col("b_mean").alias("expectedValue"),
            F.col("deviation").alias("deviation"),
            F.col("anomaly_message").alias("message"),
            calculated_at.alias("detectedAt"),
        ),
    )
    analytics = F.struct(
        F.col(f"w{n}_mean").alias("rollingAverage"),
        cmp["trend"].alias("trend"),
        cmp["trendPercentage"].alias("trendPercentage"),
        F.col("anomaly").alias("anomalyDetected"),
        details.alias("anomalyDetails"),
        F.col("streak_days").alias("streakDays"),
        F.col("longest_streak").alias("longestStreak"),
        _day_to_timestamp(F.col("streak_start")).alias("streakStartDate"),
        F.col(f"w{n}_percentile").alias("percentile"),
        F.struct(
            cmp["absoluteChange"].alias("absoluteChange"),
            cmp["percentageChange"].alias("percentageChange"),
            cmp["isImprovement"].alias("isImprovement"),
        ).alias("comparisonToPrevious"),
        F.struct(
            F.col(f"w{n}_sd").alias("standardDeviation"),
            F.col(f"w{n}_min").alias("minValue"),
            F.col(f"w{n}_max").alias("maxValue"),
            F.col(f"w{n}_median").alias("medianValue"),
            F.col(f"w{n}_count").alias("dataPointsCount"),
            F.col(f"w{n}_completeness").alias("completenessPercentage"),
        ).alias("statistics"),
    )
    return F.struct(F.lit(name).alias("timeRange"), analytics.alias("analytics"))


def build_snapshots(values: DataFrame, params: AnalyticsParams, ctx: BatchContext, existing: DataFrame | None = None,
                    stale: DataFrame | None = None) -> DataFrame:
    """Valid daily values (userId, metricType, day, value) → one snapshot row per key of SPEC §2.

    With `ctx.first_snapshot_day`, only the days an incremental batch must write (see reconcile.py);
    `existing` holds the affected users' stored snapshot days, `stale` those to delete.
    """
    vanished = None if stale is None else vanished_days(stale, values)
    daily = days_to_write(daily_analytics(values, params), existing, ctx.first_snapshot_day, vanished)
    calculated_ms = F.lit(ctx.batch_time_ms) - (F.col("latest_day") - F.col("day")).cast("long")
    calculated_at = F.timestamp_millis(calculated_ms)
    ranges = F.array(*[_range_analytics(name, n, calculated_at) for name, n in TIME_RANGES])
    exploded = daily.select("userId", "metricType", "day", calculated_ms.alias("_calc_ms"), F.explode(ranges).alias("r"))
    return exploded.select(
        "userId",
        "metricType",
        F.col("r.timeRange").alias("timeRange"),
        _day_to_timestamp(F.col("day")).alias("periodEnd"),
        F.col("r.analytics").alias("analytics"),
        F.timestamp_millis(F.col("_calc_ms")).alias("calculatedAt"),
        F.timestamp_millis(F.col("_calc_ms") + SNAPSHOT_TTL_DAYS * MS_PER_DAY).alias("expiresAt"),
        F.struct(
            F.lit(ctx.job_id[:200]).alias("sparkJobId"),
            F.lit(None).cast("long").alias("processingDurationMs"),
            F.col("r.analytics.statistics.dataPointsCount").alias("dataPointsProcessed"),
            F.lit(ctx.spark_version[:50]).alias("sparkVersion"),
        ).alias("metadata"),
    )
