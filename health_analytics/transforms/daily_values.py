"""One value per user, metric and day: the same-day duplicate rule, then flattening with value checks."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from health_analytics.transforms.metrics import METRICS


def pick_daily_documents(checked: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Among a user-day's valid documents the later `updatedAt` wins (ties: larger `_id`).

    Returns (winners, duplicate rejections). Rejected documents take no part: they were filtered before.
    """
    valid = checked.where(F.col("reason").isNull())
    order = Window.partitionBy("userId", "day").orderBy(F.col("updated_ms").desc_nulls_last(), F.col("doc_id").desc())
    ranked = valid.withColumn("_rank", F.row_number().over(order))
    winners = ranked.where(F.col("_rank") == 1).drop("_rank")
    losers = ranked.where(F.col("_rank") > 1).select(
        F.col("doc_id").alias("docId"),
        "userId",
        "day",
        F.lit("duplicate_day").alias("reason"),
        F.lit(None).cast("string").alias("field"),
        "updated_ms",
    )
    return winners, losers


def flatten_metrics(winners: DataFrame) -> DataFrame:
    """One row per (document, metric) that holds something: userId, metricType, day, value, docId, problem.

    `problem` is null for a valid value, else `invalid_value` or `out_of_range`. null/absent values are
    no value and produce no row.
    """
    entries = F.array(
        *[
            F.struct(F.lit(m.name).alias("metricType"), F.col(f"v_{m.name}").alias("value"), F.col(f"k_{m.name}").alias("kind"),
                     F.lit(float(m.low)).alias("low"), F.lit(float(m.high)).alias("high"))
            for m in METRICS
        ]
    )
    exploded = winners.select(F.col("doc_id").alias("docId"), "userId", "day", "updated_ms", F.explode(entries).alias("e")).where(
        ~F.col("e.kind").isin("missing", "null")
    )
    value = F.col("e.value")
    problem = (
        F.when((F.col("e.kind") != "number") | F.isnan(value) | value.isNull() | (F.abs(value) == F.lit(float("inf"))), F.lit("invalid_value"))
        .when((value < F.col("e.low")) | (value > F.col("e.high")), F.lit("out_of_range"))
    )
    return exploded.select("docId", "userId", F.col("e.metricType").alias("metricType"), "day", value.alias("value"),
                           problem.alias("problem"), "updated_ms")


def valid_values(flat: DataFrame) -> DataFrame:
    return flat.where(F.col("problem").isNull()).select("userId", "metricType", "day", "value")


def value_rejections(flat: DataFrame) -> DataFrame:
    return flat.where(F.col("problem").isNotNull()).select(
        "docId", "userId", "day", F.col("problem").alias("reason"), F.col("metricType").alias("field"), "updated_ms"
    )
