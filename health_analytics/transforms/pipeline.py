"""Raw `healthmetrics` rows → (analytics snapshots, rejections): the whole engine as one pure function."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame

from health_analytics.transforms.daily_values import flatten_metrics, pick_daily_documents, valid_values, value_rejections
from health_analytics.transforms.params import AnalyticsParams, BatchContext
from health_analytics.transforms.reconcile import stale_days
from health_analytics.transforms.snapshots import build_snapshots
from health_analytics.transforms.validation import check_documents, document_rejections


@dataclass(frozen=True)
class AnalyticsResult:
    values: DataFrame  # one valid value per (userId, metricType, day)
    snapshots: DataFrame
    rejections: DataFrame  # docId, userId, day, reason, field, updated_ms — never the values
    stale: DataFrame | None = None  # stored snapshot days (userId, metricType, day) to delete


def compute_analytics(raw: DataFrame, params: AnalyticsParams, ctx: BatchContext, existing: DataFrame | None = None) -> AnalyticsResult:
    """`existing`: the stored snapshot days (userId, metricType, day) of the users in `raw`; with it the
    result also says which stored days to delete, so the collection ends equal to a full recomputation."""
    # One shuffle by user serves both the same-day duplicate rule and every per-metric window after it.
    checked = check_documents(raw, ctx.today_day).repartition("userId")
    winners, duplicates = pick_daily_documents(checked)
    flat = flatten_metrics(winners)
    values = valid_values(flat)
    rejections = document_rejections(checked).unionByName(duplicates).unionByName(value_rejections(flat))
    stale = None if existing is None else stale_days(existing, values, params)
    return AnalyticsResult(
        values=values,
        snapshots=build_snapshots(values, params, ctx, existing, stale),
        rejections=rejections,
        stale=stale,
    )
