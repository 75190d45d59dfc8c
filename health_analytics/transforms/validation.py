"""SPEC §1 document-level validation and the phone-only rule: one reason code per rejected document.

Reasons are checked in the order of docs/ANALYTICS.md; the first that applies is the document's reason.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from health_analytics.transforms.metrics import SOURCES
from health_analytics.transforms.params import MS_PER_DAY

# `updated_ms` says when the rejected document was written (so a batch counts only its own changes).
REJECTION_COLUMNS = ("docId", "userId", "day", "reason", "field", "updated_ms")

DOCUMENT_REASONS: tuple[str, ...] = (
    "wearable_field",
    "invalid_user_id",
    "invalid_date",
    "future_date",
    "invalid_source",
    "invalid_metrics",
)
VALUE_REASONS: tuple[str, ...] = ("invalid_value", "out_of_range")
ALL_REASONS: tuple[str, ...] = DOCUMENT_REASONS + ("duplicate_day",) + VALUE_REASONS

_HEX24 = r"^[0-9a-fA-F]{24}$"


def normalized_user_id() -> Column:
    """An ObjectId, or a 24-hex string taken as that ObjectId, as lowercase hex; null otherwise."""
    ok = (F.col("user_id_kind") == "objectId") | ((F.col("user_id_kind") == "string") & F.col("user_id").rlike(_HEX24))
    return F.when(ok, F.lower(F.col("user_id")))


def epoch_day(ms: Column) -> Column:
    """UTC calendar day of epoch milliseconds, as an integer (floor division, also before 1970)."""
    return F.floor(ms / F.lit(MS_PER_DAY)).cast("int")


def document_reason(today_day: int) -> Column:
    source_ok = F.col("source_kind").isin("missing", "null") | (
        (F.col("source_kind") == "string") & F.col("source").isin(*SOURCES)
    )
    return (
        F.when(F.size("wearable") > 0, F.lit("wearable_field"))
        .when(normalized_user_id().isNull(), F.lit("invalid_user_id"))
        .when(F.col("date_kind") != "date", F.lit("invalid_date"))
        .when(epoch_day(F.col("date_ms")) > F.lit(today_day), F.lit("future_date"))
        .when(~source_ok, F.lit("invalid_source"))
        .when(F.col("metrics_kind") != "object", F.lit("invalid_metrics"))
    )


def check_documents(raw: DataFrame, today_day: int) -> DataFrame:
    """Raw rows + `userId`, `day` and `reason` (null for a document that passes every document check)."""
    return raw.select(
        "*",
        normalized_user_id().alias("userId"),
        epoch_day(F.col("date_ms")).alias("day"),
        document_reason(today_day).alias("reason"),
    )


def document_rejections(checked: DataFrame) -> DataFrame:
    return checked.where(F.col("reason").isNotNull()).select(
        F.col("doc_id").alias("docId"), "userId", "day", "reason", F.lit(None).cast("string").alias("field"), "updated_ms"
    )
