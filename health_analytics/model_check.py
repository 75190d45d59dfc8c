"""Checks one stored `analytics` document against the backend's Mongoose model (SPEC §2): BSON types,
enums, ranges, `anomalyDetails` present exactly when flagged, and `expiresAt`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from bson import ObjectId

METRIC_TYPES = {"steps", "distance", "calories", "activeMinutes", "weight", "sleepHours", "heartPoints", "hydration"}
TIME_RANGES = {"7day", "30day", "90day"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _date(v: Any) -> bool:
    return isinstance(v, dt.datetime)


def model_problems(doc: Mapping[str, Any]) -> list[str]:
    """Every way `doc` breaks the model; empty when it conforms."""
    p: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            p.append(what)

    need(isinstance(doc.get("userId"), ObjectId), "userId must be an ObjectId")
    need(doc.get("metricType") in METRIC_TYPES, "metricType not in the enum")
    need(doc.get("timeRange") in TIME_RANGES, "timeRange not in the enum")
    period_end = doc.get("periodEnd")
    need(_date(period_end) and (period_end.hour, period_end.minute, period_end.second, period_end.microsecond) == (0, 0, 0, 0),
         "periodEnd must be a Date at midnight UTC")
    calculated, expires = doc.get("calculatedAt"), doc.get("expiresAt")
    need(_date(calculated), "calculatedAt must be a Date")
    need(_date(expires) and _date(calculated) and expires - calculated == dt.timedelta(days=90), "expiresAt must be calculatedAt + 90 days")
    a = doc.get("analytics")
    if not isinstance(a, Mapping):
        return p + ["analytics must be a sub-document"]
    need(_number(a.get("rollingAverage")) and a["rollingAverage"] >= 0, "rollingAverage must be a number ≥ 0")
    need(a.get("trend") in {"up", "down", "stable"}, "trend not in the enum")
    need(_number(a.get("trendPercentage")) and -100 <= a["trendPercentage"] <= 1000, "trendPercentage must be in [-100, 1000]")
    flagged = a.get("anomalyDetected")
    need(isinstance(flagged, bool), "anomalyDetected must be a bool")
    details = a.get("anomalyDetails")
    if flagged:
        need(isinstance(details, Mapping), "anomalyDetails must be present when anomalyDetected")
        if isinstance(details, Mapping):
            need(details.get("severity") in {"low", "medium", "high"}, "anomalyDetails.severity not in the enum")
            for f in ("actualValue", "expectedValue", "deviation"):
                need(_number(details.get(f)), f"anomalyDetails.{f} must be a number")
            need(isinstance(details.get("message"), str) and 0 < len(details["message"]) <= 500, "anomalyDetails.message must be 1–500 chars")
            need(_date(details.get("detectedAt")), "anomalyDetails.detectedAt must be a Date")
    else:
        need("anomalyDetails" not in a, "anomalyDetails must be absent when not anomalyDetected")
    need(_int(a.get("streakDays")) and 0 <= a["streakDays"] <= 3650, "streakDays must be an int in 0–3650")
    need(_int(a.get("longestStreak")) and a["longestStreak"] >= a.get("streakDays", 0), "longestStreak must be an int ≥ streakDays")
    start = a.get("streakStartDate")
    need((start is None) == (a.get("streakDays") == 0) and (start is None or _date(start)), "streakStartDate must be a Date exactly when streakDays > 0")
    need(_number(a.get("percentile")) and 0 <= a["percentile"] <= 100, "percentile must be in 0–100")
    c = a.get("comparisonToPrevious") or {}
    need(_number(c.get("absoluteChange")), "comparisonToPrevious.absoluteChange must be a number")
    need(_number(c.get("percentageChange")) and c["percentageChange"] >= -100, "comparisonToPrevious.percentageChange must be ≥ -100")
    need(c.get("isImprovement") in (True, False, None), "comparisonToPrevious.isImprovement must be bool or null")
    s = a.get("statistics") or {}
    need(_number(s.get("standardDeviation")) and s["standardDeviation"] >= 0, "statistics.standardDeviation must be ≥ 0")
    for f in ("minValue", "maxValue", "medianValue"):
        need(_number(s.get(f)), f"statistics.{f} must be a number")
    need(_int(s.get("dataPointsCount")) and s["dataPointsCount"] >= 1, "statistics.dataPointsCount must be an int ≥ 1")
    need(_number(s.get("completenessPercentage")) and 0 <= s["completenessPercentage"] <= 100, "statistics.completenessPercentage must be in 0–100")
    m = doc.get("metadata") or {}
    need(isinstance(m.get("sparkJobId"), str) and len(m["sparkJobId"]) <= 200, "metadata.sparkJobId must be a string ≤ 200 chars")
    need(_int(m.get("processingDurationMs")) and m["processingDurationMs"] >= 0, "metadata.processingDurationMs must be ≥ 0")
    need(_int(m.get("dataPointsProcessed")) and m["dataPointsProcessed"] >= 0, "metadata.dataPointsProcessed must be ≥ 0")
    need(isinstance(m.get("sparkVersion"), str) and len(m["sparkVersion"]) <= 50, "metadata.sparkVersion must be a string ≤ 50 chars")
    return p
