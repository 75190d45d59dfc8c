"""The analysed metrics and what SPEC §1/§2 says about each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    low: float
    high: float
    label: str
    higher_is_better: bool | None  # None: no direction (weight), so isImprovement is null


METRICS: tuple[Metric, ...] = (
    Metric("steps", 0, 100_000, "Steps", True),
    Metric("distance", 0, 500, "Distance", True),
    Metric("calories", 0, 10_000, "Calories", True),
    Metric("activeMinutes", 0, 1440, "Active minutes", True),
    Metric("heartPoints", 0, 500, "Heart points", True),
    Metric("weight", 30, 300, "Weight", None),
    Metric("sleepHours", 0, 24, "Sleep hours", True),
    Metric("hydration", 0, 10, "Hydration", True),
)
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
WEARABLE_FIELDS: tuple[str, ...] = ("heartRate", "oxygenSaturation", "bloodOxygen")
SOURCES: tuple[str, ...] = ("manual", "googlefit", "import")
TIME_RANGES: tuple[tuple[str, int], ...] = (("7day", 7), ("30day", 30), ("90day", 90))
