"""Run the Spark engine on in-memory documents and bring its output into the reference's shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.types import ArrayType, DataType, StructField, StructType

from health_analytics.reference import ReferenceParams
from health_analytics.transforms.params import AnalyticsParams, BatchContext
from health_analytics.transforms.pipeline import compute_analytics
from health_analytics.transforms.raw_rows import RAW_SCHEMA, document_to_raw_row
from health_analytics.snapshot_documents import to_document
from health_analytics.verification import index_snapshots

UTC = dt.timezone.utc


def _nullable(t: DataType) -> DataType:
    """PySpark's toArrow trips over non-null fields inside a null struct; loosen nullability to read."""
    if isinstance(t, StructType):
        return StructType([StructField(f.name, _nullable(f.dataType), True) for f in t.fields])
    if isinstance(t, ArrayType):
        return ArrayType(_nullable(t.elementType), True)
    return t


def to_records(df: DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with aware UTC datetimes, independent of the Python process's time zone."""
    return df.to(_nullable(df.schema)).toArrow().to_pylist()


def run_engine(spark, docs, *, today: dt.date, batch_time: dt.datetime, params: ReferenceParams = ReferenceParams(),
               first_snapshot_day: dt.date | None = None):
    raw = spark.createDataFrame([document_to_raw_row(d) for d in docs], RAW_SCHEMA)
    batch_ms = int(batch_time.timestamp() * 1000)
    ctx = BatchContext(batch_time_ms=batch_ms, today_day=(today - dt.date(1970, 1, 1)).days,
                       first_snapshot_day=None if first_snapshot_day is None else (first_snapshot_day - dt.date(1970, 1, 1)).days)
    result = compute_analytics(
        raw,
        AnalyticsParams(
            history_days=params.history_days,
            anomaly_threshold=params.anomaly_threshold,
            steps_streak_threshold=params.steps_streak_threshold,
            baseline_days=params.baseline_days,
            baseline_min_points=params.baseline_min_points,
        ),
        ctx,
    )
    snapshots = index_snapshots(to_document(r) for r in to_records(result.snapshots))
    rejections = to_records(result.rejections)
    for r in rejections:
        r["day"] = None if r["day"] is None else dt.date(1970, 1, 1) + dt.timedelta(days=r["day"])
    return snapshots, rejections


def rejection_set(rejections) -> set[tuple]:
    return {(r["docId"], r["userId"], r["day"], r["reason"], r["field"]) for r in rejections}
