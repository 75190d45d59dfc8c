"""Parameters of one analytics computation, taken from Settings by the job and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from health_analytics.settings import Settings

MS_PER_DAY = 86_400_000
STREAK_LOOKBACK_DAYS = 365
SNAPSHOT_TTL_DAYS = 90


@dataclass(frozen=True)
class AnalyticsParams:
    history_days: int = 90
    anomaly_threshold: float = 2.0
    steps_streak_threshold: float = 1000.0
    baseline_days: int = 30
    baseline_min_points: int = 7

    @classmethod
    def from_settings(cls, settings: Settings) -> AnalyticsParams:
        return cls(
            history_days=settings.analytics_history_days,
            anomaly_threshold=settings.anomaly_threshold,
            steps_streak_threshold=settings.steps_streak_threshold,
            baseline_days=settings.baseline_days,
            baseline_min_points=settings.baseline_min_points,
        )


@dataclass(frozen=True)
class BatchContext:
    """What a transform needs to know about the run: the clock it runs under and who it is."""

    batch_time_ms: int  # epoch milliseconds; calculatedAt derives from it
    today_day: int  # epoch day of "today" (UTC); later dates are rejected
    job_id: str = "local"
    spark_version: str = ""
    # Earliest periodEnd to produce (epoch day); None = all. An incremental read loads only the history
    # that snapshots from this day on need, so earlier ones would not be exact.
    first_snapshot_day: int | None = None

    @classmethod
    def at(cls, batch_time_ms: int, *, job_id: str = "local", spark_version: str = "", first_snapshot_day: int | None = None) -> BatchContext:
        return cls(
            batch_time_ms=batch_time_ms,
            today_day=batch_time_ms // MS_PER_DAY,
            job_id=job_id,
            spark_version=spark_version,
            first_snapshot_day=first_snapshot_day,
        )
