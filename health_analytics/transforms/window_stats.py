"""Rolling windows over calendar days: the window W, its statistics, and the previous window P.

All frames are `rangeBetween` on the integer day, so a missing day is simply absent from a window. The
frames share one partitioning and ordering, so Spark computes them in one sort of each user's metric.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
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
    below = F.size(F.filter(values, lambda v: v < x))
    equal = F.size(F.filter(values, lambda v: v == x))
    return F.round(F.lit(100.0) * (below + F.lit(0.5) * equal) / count, 2)


def add_window_statistics(df: DataFrame, sizes: tuple[int, ...] = (7, 30, 90)) -> DataFrame:
    """Add, for each window size N, `wN_*` statistics of W and `pN_mean`/`pN_count` of P."""
    raw_cols = []
    for n in sizes:
        frame = by_day().rangeBetween(-(n - 1), 0)
        previous = by_day().rangeBetween(-(2 * n - 1), -n)
        raw_cols += [
            F.collect_list("value").over(frame).alias(f"w{n}_values"),
            F.avg("value").over(frame).alias(f"w{n}_mean"),
            F.min("value").over(frame).alias(f"w{n}_min"),
            F.max("value").over(frame).alias(f"w{n}_max"),
            F.count("value").over(frame).cast("int").alias(f"w{n}_count"),
            F.avg("value").over(previous).alias(f"p{n}_mean"),
            F.count("value").over(previous).cast("int").alias(f"p{n}_count"),
        ]
    with_raw = df.select("*", *raw_cols)
    derived = []
    for n in sizes:
        values, mean, count = F.col(f"w{n}_values"), F.col(f"w{n}_mean"), F.col(f"w{n}_count")
        derived += [
            sample_sd(values, mean, count).alias(f"w{n}_sd"),
            median(F.array_sort(values), count).alias(f"w{n}_median"),
            percentile_within(values, F.col("value"), count).alias(f"w{n}_percentile"),
            F.round(F.lit(100.0) * count / F.lit(n), 2).alias(f"w{n}_completeness"),
        ]
    return with_raw.select("*", *derived).drop(*[f"w{n}_values" for n in sizes])
