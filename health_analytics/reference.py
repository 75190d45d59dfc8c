"""Plain-Python reference implementation of the analytics semantics (the test oracle).

Written from ``SPEC.md`` §1–§2 and ``docs/ANALYTICS.md`` alone, sharing no code with the Spark
transforms, so that a disagreement between the two points at a bug in one of them. It favours being
obviously right over being fast: every snapshot is computed from scratch with explicit loops.

Days are handled as integer *epoch days* (days since 1970-01-01 UTC), as ANALYTICS.md prescribes, so no
time zone can shift a result; they become ``datetime.date`` / aware UTC datetimes only on output.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bson import Decimal128, ObjectId
from bson.datetime_ms import DatetimeMS

UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_MS_PER_DAY = 86_400_000

# SPEC §1 ranges, bounds inclusive (ANALYTICS.md "out_of_range").
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "steps": (0, 100_000),
    "distance": (0, 500),
    "calories": (0, 10_000),
    "activeMinutes": (0, 1440),
    "heartPoints": (0, 500),
    "weight": (30, 300),
    "sleepHours": (0, 24),
    "hydration": (0, 10),
}
METRIC_LABELS: dict[str, str] = {
    "steps": "Steps",
    "distance": "Distance",
    "calories": "Calories",
    "activeMinutes": "Active minutes",
    "heartPoints": "Heart points",
    "weight": "Weight",
    "sleepHours": "Sleep hours",
    "hydration": "Hydration",
}
# Metrics for which a rising trend is good; weight has no direction (isImprovement null).
_UP_IS_GOOD = frozenset(METRIC_RANGES) - {"weight"}
TIME_RANGES: tuple[tuple[str, int], ...] = (("7day", 7), ("30day", 30), ("90day", 90))
WEARABLE_FIELDS = ("heartRate", "oxygenSaturation", "bloodOxygen")
SOURCES = frozenset({"manual", "googlefit", "import"})
STREAK_LOOKBACK_DAYS = 365
EXPIRY = datetime.timedelta(days=90)
MESSAGE_MAX_CHARS = 500


@dataclass(frozen=True)
class ReferenceParams:
    """The settings SPEC calls out as configurable; defaults are SPEC's."""

    history_days: int = 90
    anomaly_threshold: float = 2.0
    steps_streak_threshold: float = 1000.0
    baseline_days: int = 30
    baseline_min_points: int = 7


@dataclass
class ReferenceResult:
    """Snapshots keyed by (userId hex, metricType, timeRange, periodEnd day) plus rejection records."""

    snapshots: dict[tuple[str, str, str, datetime.date], dict] = field(default_factory=dict)
    rejections: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Days and times
# --------------------------------------------------------------------------------------------------


def _epoch_ms(value: Any) -> int | None:
    """Milliseconds since the epoch of a BSON Date as PyMongo returns it (naive means UTC), else None."""
    if isinstance(value, datetime.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, DatetimeMS):  # PyMongo's form for dates outside datetime's range
        return int(value)
    return None


def _epoch_day_of_date(day: datetime.date) -> int:
    """Epoch day of a calendar date (``today`` is given as a date)."""
    return day.toordinal() - _EPOCH_ORDINAL


def _date_of(epoch_day: int) -> datetime.date:
    """Calendar date of an epoch day, for output."""
    return datetime.date.fromordinal(epoch_day + _EPOCH_ORDINAL)


def _midnight_utc(epoch_day: int) -> datetime.datetime:
    """The BSON Date SPEC uses for a day: midnight UTC, tz-aware."""
    return _EPOCH + datetime.timedelta(days=epoch_day)


def _to_utc_ms_precision(moment: datetime.datetime) -> datetime.datetime:
    """Aware UTC datetime truncated to milliseconds, since BSON Dates carry no finer precision."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    aware = aware.astimezone(UTC)
    return aware.replace(microsecond=aware.microsecond // 1000 * 1000)


# --------------------------------------------------------------------------------------------------
# Validation (ANALYTICS.md "Validation: one reason per rejection")
# --------------------------------------------------------------------------------------------------


def _user_key(value: Any) -> str | None:
    """The user's 24-hex lowercase id, accepting an ObjectId or a 24-hex string; None if neither."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, str) and len(value) == 24 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    return None


def _doc_id(doc: Mapping[str, Any]) -> str | None:
    """The document's id as text for rejection records (ObjectId → 24-hex)."""
    raw = doc.get("_id")
    return None if raw is None else str(raw)


def _has_wearable_field(doc: Mapping[str, Any]) -> bool:
    """Phone-only rule: any non-null wearable field, top level or inside ``metrics``."""
    places = [doc]
    metrics = doc.get("metrics")
    if isinstance(metrics, Mapping):
        places.append(metrics)
    return any(place.get(name) is not None for place in places for name in WEARABLE_FIELDS)


def _document_reason(doc: Mapping[str, Any], user: str | None, day: int | None, today: int) -> str | None:
    """The first document-level reason that applies, in ANALYTICS.md's order, or None if valid."""
    if _has_wearable_field(doc):
        return "wearable_field"
    if user is None:
        return "invalid_user_id"
    if day is None:
        return "invalid_date"
    if day > today:
        return "future_date"
    source = doc.get("source")
    if source is not None and not (isinstance(source, str) and source in SOURCES):
        return "invalid_source"
    if not isinstance(doc.get("metrics"), Mapping):
        return "invalid_metrics"
    return None


def _as_number(raw: Any) -> float | None:
    """A BSON number (int32/int64/double/Decimal128) as a finite float; None when it is not one."""
    if isinstance(raw, bool):  # bool is an int subclass but not a number here
        return None
    if isinstance(raw, int):  # includes bson.Int64
        try:
            return float(raw)
        except OverflowError:
            return math.inf  # cannot come from BSON; treat as out of range below
    if isinstance(raw, float):
        return raw if not math.isnan(raw) and not math.isinf(raw) else None
    if isinstance(raw, Decimal128):
        dec = raw.to_decimal()
        return None if (dec.is_nan() or dec.is_infinite()) else float(dec)
    return None


def _parse_value(raw: Any, metric: str) -> tuple[float | None, str | None]:
    """(value, rejection reason) of one metric; (None, None) means simply no value (null/absent)."""
    if raw is None:
        return None, None
    number = _as_number(raw)
    if number is None:
        return None, "invalid_value"
    low, high = METRIC_RANGES[metric]
    if not (low <= number <= high):
        return None, "out_of_range"
    return number, None


def _rejection(doc: Mapping[str, Any], user: str | None, day: int | None, reason: str, metric: str | None = None) -> dict:
    """A quarantine record: ids and the reason, never the values."""
    return {
        "docId": _doc_id(doc),
        "userId": user,
        "day": _record_day(day),
        "reason": reason,
        "field": metric,
    }


def _record_day(day: int | None) -> datetime.date | None:
    """The day for a rejection record; None when unknown or beyond what ``datetime.date`` can hold."""
    if day is None or not (1 <= day + _EPOCH_ORDINAL <= datetime.date.max.toordinal()):
        return None
    return _date_of(day)


def _safe_day(ms: int | None) -> int | None:
    """Epoch day of a timestamp, or None when it can't be a calendar date (before year 1)."""
    if ms is None:
        return None
    day = ms // _MS_PER_DAY
    return day if day + _EPOCH_ORDINAL >= 1 else None


def _winner_order(doc: Mapping[str, Any]) -> tuple:
    """Sort key of the duplicate rule: later updatedAt wins, missing is oldest, ties to larger _id."""
    updated = _epoch_ms(doc.get("updatedAt"))
    raw_id = doc.get("_id")
    id_text = "" if raw_id is None else str(raw_id)
    return (updated is not None, updated if updated is not None else 0, id_text)


def _valid_values(
    docs: Iterable[Mapping[str, Any]], today: int, rejections: list[dict]
) -> dict[tuple[str, str], dict[int, float]]:
    """Validate and de-duplicate; return {(user, metric): {epoch day: value}} and fill ``rejections``."""
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for doc in docs:
        user = _user_key(doc.get("userId"))
        day = _safe_day(_epoch_ms(doc.get("date")))
        reason = _document_reason(doc, user, day, today)
        if reason is not None:
            rejections.append(_rejection(doc, user, day, reason))
            continue
        groups.setdefault((user, day), []).append(doc)

    series: dict[tuple[str, str], dict[int, float]] = {}
    for (user, day), group in groups.items():
        ranked = sorted(group, key=_winner_order, reverse=True)
        winner, losers = ranked[0], ranked[1:]
        for loser in losers:
            rejections.append(_rejection(loser, user, day, "duplicate_day"))
        metrics = winner["metrics"]
        for metric in METRIC_RANGES:
            value, reason = _parse_value(metrics.get(metric), metric)
            if reason is not None:
                rejections.append(_rejection(winner, user, day, reason, metric))
            elif value is not None:
                series.setdefault((user, metric), {})[day] = value
    return series


# --------------------------------------------------------------------------------------------------
# Arithmetic (ANALYTICS.md "Arithmetic": plain IEEE double, fixed summation order)
# --------------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    """Left-to-right sum in day order divided by the count, so both implementations agree bit for bit."""
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def _sample_sd(values: list[float]) -> float:
    """Two-pass sample standard deviation; 0 for a single value."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = _mean(values)
    squares = 0.0
    for v in values:
        squares += (v - mean) ** 2
    return math.sqrt(squares / (n - 1))


def _median(values: list[float]) -> float:
    """Middle value, or the mean of the two middle values for an even count."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def _round_half_up(x: float, places: str) -> float:
    """Half away from zero on the shortest decimal form of x, like Spark's round()."""
    return float(Decimal(repr(x)).quantize(Decimal(places), ROUND_HALF_UP))


def round2(x: float) -> float:
    """SPEC's "rounded to 2 decimals" (0.625 → 0.63, −2.125 → −2.13)."""
    return _round_half_up(x, "0.01")


# --------------------------------------------------------------------------------------------------
# The per-snapshot figures (SPEC §2 "What each number means")
# --------------------------------------------------------------------------------------------------


def _values_between(by_day: Mapping[int, float], first: int, last: int) -> list[float]:
    """Values on days first … last inclusive, in day order; missing days are simply absent."""
    return [by_day[d] for d in range(first, last + 1) if d in by_day]


def _statistics(window: list[float], n_days: int) -> dict:
    """The ``statistics`` sub-document of a window of N calendar days."""
    return {
        "standardDeviation": _sample_sd(window),
        "minValue": min(window),
        "maxValue": max(window),
        "medianValue": _median(window),
        "dataPointsCount": len(window),
        "completenessPercentage": round2(100.0 * len(window) / n_days),
    }


def _percentile(window: list[float], x: float) -> float:
    """Mid-rank percentile of x within its window, rounded to 2 decimals."""
    below = sum(1 for v in window if v < x)
    equal = sum(1 for v in window if v == x)
    return round2(100.0 * (below + 0.5 * equal) / len(window))


def _comparison(metric: str, window: list[float], previous: list[float]) -> tuple[str, float, dict]:
    """(trend, trendPercentage, comparisonToPrevious) of the window against the previous window."""
    if not previous:
        return "stable", 0.0, {"absoluteChange": 0.0, "percentageChange": 0.0, "isImprovement": None}
    mean_w, mean_p = _mean(window), _mean(previous)
    absolute = mean_w - mean_p
    percentage = 0.0 if mean_p == 0 else 100.0 * absolute / mean_p
    if percentage > 5:
        trend = "up"
    elif percentage < -5:
        trend = "down"
    else:
        trend = "stable"
    improvement = None if (trend == "stable" or metric not in _UP_IS_GOOD) else trend == "up"
    trend_percentage = min(max(percentage, -100.0), 1000.0)
    return trend, trend_percentage, {
        "absoluteChange": absolute,
        "percentageChange": percentage,
        "isImprovement": improvement,
    }


def _severity(z: float) -> str:
    """Severity bands of SPEC, on the unrounded z."""
    size = abs(z)
    if size < 2.5:
        return "low"
    if size < 3:
        return "medium"
    return "high"


def _anomaly_message(metric: str, x: float, expected: float, baseline_days: int) -> str:
    """One-line message in ANALYTICS.md's format, e.g. "Steps 112% above your 30-day average"."""
    label = METRIC_LABELS[metric]
    if expected == 0:
        text = f"{label} {x!r} vs a {baseline_days}-day average of 0"
    else:
        percent = int(_round_half_up(abs(x - expected) / expected * 100, "1"))
        direction = "above" if x > expected else "below"
        text = f"{label} {percent}% {direction} your {baseline_days}-day average"
    return text[:MESSAGE_MAX_CHARS]


def _anomaly(metric: str, by_day: Mapping[int, float], day: int, params: ReferenceParams) -> dict | None:
    """anomalyDetails without detectedAt when day D is anomalous against its baseline, else None."""
    baseline = _values_between(by_day, day - params.baseline_days, day - 1)
    if len(baseline) < params.baseline_min_points or not baseline:
        return None
    expected = _mean(baseline)
    denominator = max(_sample_sd(baseline), abs(expected) / 100)
    if not denominator > 0:
        return None
    x = by_day[day]
    z = (x - expected) / denominator
    if not abs(z) > params.anomaly_threshold:
        return None
    return {
        "severity": _severity(z),
        "actualValue": x,
        "expectedValue": expected,
        "deviation": round2(z),
        "message": _anomaly_message(metric, x, expected, params.baseline_days),
    }


def _qualifies(metric: str, value: float, params: ReferenceParams) -> bool:
    """A streak day: steps above the steps threshold, any other metric above 0."""
    threshold = params.steps_streak_threshold if metric == "steps" else 0.0
    return value > threshold


def _streaks(metric: str, by_day: Mapping[int, float], day: int, params: ReferenceParams) -> tuple[int, int, int | None]:
    """(streakDays, longestStreak, streak start day) looking back at most 365 days (D−364 … D)."""
    first = day - STREAK_LOOKBACK_DAYS + 1
    longest = run = 0
    for d in range(first, day + 1):
        if d in by_day and _qualifies(metric, by_day[d], params):
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    # ``run`` is now the run ending on D, already clipped to D−364 (so capped at 365).
    start = day - run + 1 if run else None
    return run, longest, start


# --------------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------------


def _snapshot_days(by_day: Mapping[int, float], history_days: int) -> list[int]:
    """Days with a value that lie within the history_days days ending at the latest day."""
    latest = max(by_day)
    return sorted(d for d in by_day if d > latest - history_days)


def _snapshot(
    user: str,
    metric: str,
    range_name: str,
    n_days: int,
    by_day: Mapping[int, float],
    day: int,
    shared: dict,
    calculated_at: datetime.datetime,
) -> dict:
    """The full output document of one (user, metric, range, D) as it would be stored in MongoDB."""
    window = _values_between(by_day, day - n_days + 1, day)
    previous = _values_between(by_day, day - 2 * n_days + 1, day - n_days)
    trend, trend_percentage, comparison = _comparison(metric, window, previous)
    analytics: dict[str, Any] = {
        "rollingAverage": _mean(window),
        "trend": trend,
        "trendPercentage": trend_percentage,
        "anomalyDetected": shared["anomaly"] is not None,
    }
    if shared["anomaly"] is not None:
        analytics["anomalyDetails"] = {**shared["anomaly"], "detectedAt": calculated_at}
    streak, longest, start = shared["streaks"]
    analytics.update(
        {
            "streakDays": streak,
            "longestStreak": longest,
            "streakStartDate": None if start is None else _midnight_utc(start),
            "percentile": _percentile(window, by_day[day]),
            "comparisonToPrevious": comparison,
            "statistics": _statistics(window, n_days),
        }
    )
    return {
        "userId": ObjectId(user),
        "metricType": metric,
        "timeRange": range_name,
        "periodEnd": _midnight_utc(day),
        "analytics": analytics,
        "calculatedAt": calculated_at,
        "expiresAt": calculated_at + EXPIRY,
    }


def compute_reference(
    docs: Iterable[Mapping[str, Any]],
    *,
    today: datetime.date,
    batch_time: datetime.datetime,
    params: ReferenceParams = ReferenceParams(),
) -> ReferenceResult:
    """Every snapshot and every rejection a full recomputation over ``docs`` must produce."""
    result = ReferenceResult()
    batch = _to_utc_ms_precision(batch_time)
    series = _valid_values(docs, _epoch_day_of_date(today), result.rejections)
    for (user, metric), by_day in series.items():
        days = _snapshot_days(by_day, params.history_days)
        latest = days[-1]
        for day in days:
            # calculatedAt grows with periodEnd: one millisecond less per day before the latest.
            calculated_at = batch - datetime.timedelta(milliseconds=latest - day)
            shared = {
                "anomaly": _anomaly(metric, by_day, day, params),
                "streaks": _streaks(metric, by_day, day, params),
            }
            for range_name, n_days in TIME_RANGES:
                key = (user, metric, range_name, _date_of(day))
                result.snapshots[key] = _snapshot(user, metric, range_name, n_days, by_day, day, shared, calculated_at)
    return result
