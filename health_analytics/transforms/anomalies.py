"""2σ anomalies against the personal baseline of the days before D (SPEC §2; same for every range)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from health_analytics.transforms.metrics import METRICS
from health_analytics.transforms.params import AnalyticsParams
from health_analytics.transforms.window_stats import by_day, sample_sd


def _label(metric: Column) -> Column:
    return F.create_map(*[x for m in METRICS for x in (F.lit(m.name), F.lit(m.label))])[metric]


def baseline_columns(params: AnalyticsParams) -> list[Column]:
    """The baseline B: values on the `baseline_days` days before D (D excluded), their mean and count."""
    baseline = by_day().rangeBetween(-params.baseline_days, -1)
    return [
        F.collect_list("value").over(baseline).alias("b_values"),
        F.avg("value").over(baseline).alias("b_mean"),
        F.count("value").over(baseline).cast("int").alias("b_count"),
    ]


def add_anomalies(df: DataFrame, params: AnalyticsParams) -> DataFrame:
    """From the baseline columns: `z`, `anomaly` (bool), `severity`, `deviation` and `anomaly_message`."""
    b_mean, b_count = F.col("b_mean"), F.col("b_count")
    denominator = F.greatest(sample_sd(F.col("b_values"), b_mean, b_count), F.abs(b_mean) / 100)
    z = F.when((b_count >= params.baseline_min_points) & (denominator > 0), (F.col("value") - b_mean) / denominator)
    scored = df.withColumn("z", z).drop("b_values")
    abs_z = F.abs(F.col("z"))
    anomaly = F.coalesce(abs_z > F.lit(params.anomaly_threshold), F.lit(False))
    direction = F.when(F.col("value") > b_mean, F.lit("above")).otherwise(F.lit("below"))
    share = F.round(F.abs(F.col("value") - b_mean) / F.when(b_mean != 0, b_mean) * 100, 0).cast("long")
    message = F.concat(
        _label(F.col("metricType")), F.lit(" "), share.cast("string"), F.lit("% "), direction,
        F.lit(f" your {params.baseline_days}-day average"),
    )
    return scored.select(
        "*",
        anomaly.alias("anomaly"),
        F.when(abs_z < 2.5, F.lit("low")).when(abs_z < 3, F.lit("medium")).otherwise(F.lit("high")).alias("severity"),
        F.round(F.col("z"), 2).alias("deviation"),
        F.when(anomaly, F.substring(message, 1, 500)).alias("anomaly_message"),
    )
