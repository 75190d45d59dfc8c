"""Comparison with the previous window and the trend it implies (SPEC §2)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from health_analytics.transforms.metrics import METRICS

TREND_BAND_PERCENT = 5.0
_DIRECTIONAL = [m.name for m in METRICS if m.higher_is_better is not None]


def comparison_columns(mean_w: Column, mean_p: Column, count_p: Column, metric: Column) -> dict[str, Column]:
    """absoluteChange, percentageChange, trend, trendPercentage and isImprovement for one window size."""
    has_previous = count_p > 0
    absolute = F.when(has_previous, mean_w - mean_p).otherwise(F.lit(0.0))
    percentage = F.when(has_previous & (mean_p != 0), F.lit(100.0) * (mean_w - mean_p) / mean_p).otherwise(F.lit(0.0))
    trend = (
        F.when(percentage > TREND_BAND_PERCENT, F.lit("up"))
        .when(percentage < -TREND_BAND_PERCENT, F.lit("down"))
        .otherwise(F.lit("stable"))
    )
    improvement = F.when(metric.isin(*_DIRECTIONAL) & (trend != "stable"), trend == "up")
    return {
        "absoluteChange": absolute,
        "percentageChange": percentage,
        "trend": trend,
        "trendPercentage": F.least(F.greatest(percentage, F.lit(-100.0)), F.lit(1000.0)),
        "isImprovement": improvement,
    }
