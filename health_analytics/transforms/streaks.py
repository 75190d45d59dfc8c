"""Activity streaks: runs of consecutive qualifying calendar days, looking back at most 365 days."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from health_analytics.transforms.params import STREAK_LOOKBACK_DAYS, AnalyticsParams
from health_analytics.transforms.window_stats import by_day


def add_streaks(df: DataFrame, params: AnalyticsParams) -> DataFrame:
    """Add `streak_days`, `streak_start` (epoch day or null) and `longest_streak`.

    A run starts on a qualifying day whose previous calendar day is missing or does not qualify; a day's
    run start is the latest start so far. The longest run in D−364…D is the larger of the run ending on D
    and the completed runs that end in D−364…D−1, each clipped to start no earlier than D−364.
    """
    qualifies = F.when(F.col("metricType") == "steps", F.col("value") > params.steps_streak_threshold).otherwise(F.col("value") > 0)
    prev_day, prev_q = F.lag("day").over(by_day()), F.lag("_q").over(by_day())
    next_day, next_q = F.lead("day").over(by_day()), F.lead("_q").over(by_day())
    first_of_run = F.col("_q") & (prev_day.isNull() | (prev_day != F.col("day") - 1) | ~prev_q)
    last_of_run = F.col("_q") & (next_day.isNull() | (next_day != F.col("day") + 1) | ~next_q)

    flagged = df.withColumn("_q", qualifies).select("*", first_of_run.alias("_first"), last_of_run.alias("_last"))
    running = by_day().rowsBetween(Window.unboundedPreceding, Window.currentRow)
    with_start = flagged.withColumn("_run_start", F.when(F.col("_q"), F.max(F.when(F.col("_first"), F.col("day"))).over(running)))

    horizon = F.col("day") - (STREAK_LOOKBACK_DAYS - 1)
    completed = F.collect_list(F.when(F.col("_last"), F.struct(F.col("day").alias("end"), F.col("_run_start").alias("start")))).over(
        by_day().rangeBetween(-(STREAK_LOOKBACK_DAYS - 1), -1)
    )
    start = F.greatest(F.col("_run_start"), horizon)
    streak_days = F.when(F.col("_q"), F.col("day") - start + 1).otherwise(F.lit(0))
    clipped = F.transform(F.col("_completed"), lambda r: r["end"] - F.greatest(r["start"], horizon) + 1)
    return (
        with_start.withColumn("_completed", completed)
        .select(
            "*",
            streak_days.cast("int").alias("streak_days"),
            F.when(F.col("_q"), start).alias("streak_start"),
        )
        .withColumn("longest_streak", F.greatest(F.col("streak_days"), F.coalesce(F.array_max(clipped), F.lit(0))).cast("int"))
        .drop("_q", "_first", "_last", "_run_start", "_completed")
    )
