"""Activity streaks: runs of consecutive qualifying calendar days, looking back at most 365 days.

A run starts on a qualifying day whose previous calendar day is missing or does not qualify; a day's run
start is the latest start so far. The longest run in D−364…D is the larger of the run ending on D and the
completed runs that end in D−364…D−1, each clipped to start no earlier than D−364.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from health_analytics.transforms.params import STREAK_LOOKBACK_DAYS, AnalyticsParams
from health_analytics.transforms.window_stats import by_day


def _qualifies(value: Column, params: AnalyticsParams) -> Column:
    return F.when(F.col("metricType") == "steps", value > params.steps_streak_threshold).otherwise(value > 0)


def run_edge_columns(params: AnalyticsParams) -> list[Column]:
    """`_q` (the day qualifies), `_first` / `_last` (it starts / ends a run): neighbours via lag and lead."""
    q = _qualifies(F.col("value"), params)
    prev_day, prev_value = F.lag("day").over(by_day()), F.lag("value").over(by_day())
    next_day, next_value = F.lead("day").over(by_day()), F.lead("value").over(by_day())
    first = q & (prev_day.isNull() | (prev_day != F.col("day") - 1) | ~_qualifies(prev_value, params))
    last = q & (next_day.isNull() | (next_day != F.col("day") + 1) | ~_qualifies(next_value, params))
    return [q.alias("_q"), first.alias("_first"), last.alias("_last")]


def add_run_starts(df: DataFrame) -> DataFrame:
    """`_run_start` of each qualifying day, and `_completed`: (end, start) of runs ending in D−364…D−1.

    Needs the full history of the user's metric, so it runs before rows are cut to snapshot days.
    """
    running = by_day().rowsBetween(Window.unboundedPreceding, Window.currentRow)
    with_start = df.withColumn("_run_start", F.when(F.col("_q"), F.max(F.when(F.col("_first"), F.col("day"))).over(running)))
    completed = F.collect_list(F.when(F.col("_last"), F.struct(F.col("day").alias("end"), F.col("_run_start").alias("start")))).over(
        by_day().rangeBetween(-(STREAK_LOOKBACK_DAYS - 1), -1)
    )
    return with_start.withColumn("_completed", completed)


def add_streaks(df: DataFrame) -> DataFrame:
    """From the run columns: `streak_days`, `streak_start` (epoch day or null) and `longest_streak`."""
    horizon = F.col("day") - (STREAK_LOOKBACK_DAYS - 1)
    start = F.greatest(F.col("_run_start"), horizon)
    streak_days = F.when(F.col("_q"), F.col("day") - start + 1).otherwise(F.lit(0)).cast("int")
    clipped = F.transform(F.col("_completed"), lambda r: r["end"] - F.greatest(r["start"], horizon) + 1)
    longest = F.greatest(streak_days, F.coalesce(F.array_max(clipped), F.lit(0))).cast("int")
    return df.select(
        "*",
        streak_days.alias("streak_days"),
        F.when(F.col("_q"), start).alias("streak_start"),
        longest.alias("longest_streak"),
    ).drop("_q", "_first", "_last", "_run_start", "_completed")
