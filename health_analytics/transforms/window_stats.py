"""Rolling windows over calendar days: the window W, its statistics, and the previous window P.

All frames are `rangeBetween` on the integer day, so a missing day is simply absent from a window. Every
frame shares one partitioning and ordering (`by_day`), so Spark computes them all in one pass over one
sort of each user's metric. Array statistics (sd, median, percentile) are computed afterwards, and only
for the rows that get a snapshot.
"""

from __future__ import annotations

from pyspark.sql import Column, Window
from pyspark.sql import functions as F


def user_metric() -> Window:
    """All of one user's values of one metric (Window specs need a live session, so they are built late)."""
    return Window.partitionBy("userId", "metricType")


def by_day() -> Window:
    return user_metric().orderBy("day")


def sample_sd(values: Column, mean: Column, count: Column) -> Column:
    """Two-pass sample standard deviation of an array (0 for a single value), as docs/ANALYTICS.md says."""
    squares = F.aggregate(values, F.lit(0.0), lambda acc, v: acc + (v - mean) * (v - mean))
    return F.when(count <= 1, F.lit(0.0)).otherwise(F.sqrt(squares / (count - 1)))


def median(sorted_values: Column, count: Column) -> Column:
    """Middle value, or the mean of the two middle values for an even count."""
    half = (count / 2).cast("int")
    lower = F.element_at(sorted_values, half)
    upper = F.element_at(sorted_values, half + 1)
    return F.when(count % 2 == 1, F.element_at(sorted_values, half + 1)).otherwise((lower + upper) / 2)


def percentile_within(values: Column, x: Column, count: Column) -> Column:
    """Where x stands within the window: 100·(count(v < x) + ½·count(v = x)) / |W|, rounded to 2 decimals."""
    rank = F.aggregate(
        values, F.lit(0.0), lambda acc, v: acc + F.when(v < x, 1.0).when(v == x, 0.5).otherwise(0.0)
    )
    return F.round(F.lit(100.0) * rank / count, 2)


def window_columns(sizes: tuple[int, ...]) -> list[Column]:
    """For each window size N: W's values (day order), mean, min, max, count; P's mean and count."""
    cols = []
    for n in sizes:
        frame = by_day().rangeBetween(-(n - 1), 0)
        previous = by_day().rangeBetween(-(2 * n - 1), -n)
        cols += [
            F.collect_list("value").over(frame).alias(f"w{n}_values"),
            F.avg("value").over(frame).alias(f"w{n}_mean"),
            F.min("value").over(frame).alias(f"w{n}_min"),
            F.max("value").over(frame).alias(f"w{n}_max"),
            F.count("value").over(frame).cast("int").alias(f"w{n}_count"),
            F.avg("value").over(previous).alias(f"p{n}_mean"),
            F.count("value").over(previous).cast("int").alias(f"p{n}_count"),
        ]
    return cols


def statistics_columns(sizes: tuple[int, ...]) -> list[Column]:
    """sd, median, percentile of x and completeness of each window, from the columns of window_columns."""
    cols = []
    for n in sizes:
        values, mean, count = F.col(f"w{n}_values"), F.col(f"w{n}_mean"), F.col(f"w{n}_count")
        cols += [
            sample_sd(values, mean, count).alias(f"w{n}_sd"),
            median(F.array_sort(values), count).alias(f"w{n}_median"),
            percentile_within(values, F.col("value"), count).alias(f"w{n}_percentile"),
            F.round(F.lit(100.0) * count / F.lit(n), 2).alias(f"w{n}_completeness"),
        ]
    return cols
