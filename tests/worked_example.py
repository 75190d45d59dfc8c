"""SPEC §2's worked example, as documents and as the figures SPEC's table gives (shared by the tests)."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

UTC = dt.timezone.utc
TODAY = dt.date(2025, 11, 19)
BATCH = dt.datetime(2025, 11, 19, 12, 0, 0, 123456, tzinfo=UTC)
BATCH_MS = dt.datetime(2025, 11, 19, 12, 0, 0, 123000, tzinfo=UTC)  # truncated to milliseconds

U = ObjectId("65a000000000000000000001")  # the worked-example user
UH = str(U)
V = ObjectId("65a000000000000000000002")  # a second user for isolated scenarios
VH = str(V)
METRICS6 = ("steps", "distance", "calories", "activeMinutes", "weight", "sleepHours")
RANGES = ("7day", "30day", "90day")

WORKED_STEPS = {
    5: 7000, 6: 7500, 7: 8000, 8: 8500, 9: 9000, 10: 9500, 11: 10000,
    13: 8500, 14: 8500, 15: 8500, 16: 8500, 17: 18000, 18: 8200, 19: 8200,
}


def oid(n: int) -> ObjectId:
    return ObjectId(f"{n:024x}")


def nov(day: int) -> dt.date:
    return dt.date(2025, 11, day)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def doc(day: dt.date, metrics, *, user=U, _id=None, updated=None, **extra) -> dict:
    """A healthmetrics document as PyMongo returns it (naive datetimes mean UTC)."""
    d = {
        "_id": _id if _id is not None else ObjectId(),
        "userId": user,
        "date": dt.datetime(day.year, day.month, day.day),
        "source": "manual",
        "metrics": metrics,
        "updatedAt": updated if updated is not None else dt.datetime(2025, 11, 19, 1, 0),
    }
    d.update(extra)
    return d


def worked_docs() -> list[dict]:
    """SPEC §2 worked example: 14 days, six metrics (heartPoints and hydration null)."""
    docs = []
    for day, steps in WORKED_STEPS.items():
        docs.append(
            doc(
                nov(day),
                {
                    "steps": steps,
                    "distance": steps * 0.0007,
                    "calories": steps * 0.04,
                    "activeMinutes": 120 if day == 17 else 60,
                    "heartPoints": None,
                    "weight": 72.5,
                    "sleepHours": 7.5,
                    "hydration": None,
                },
                _id=oid(1000 + day),
            )
        )
    return docs


# metric, range, D, rollingAverage, trend, trend%, anomaly (severity, z, expected) | None,
# (streak, longest, start day), percentile, (sd, median, count, completeness)
WORKED_TABLE = [
    ("steps", "7day", 11, 8500.0, "stable", 0.0, None, (7, 7, 5), 92.86, (1080.12, 8500.0, 7, 100.0)),
    ("steps", "7day", 17, 10333.33, "up", 25.25, ("high", 11.35, 8500.0), (5, 7, 13), 91.67,
     (3803.51, 8500.0, 6, 85.71)),
    ("steps", "7day", 19, 9771.43, "up", 11.67, None, (7, 7, 13), 14.29, (3631.21, 8500.0, 7, 100.0)),
    ("steps", "30day", 19, 9135.71, "stable", 0.0, None, (7, 7, 13), 28.57, (2656.95, 8500.0, 14, 46.67)),
    ("steps", "90day", 17, 9291.67, "stable", 0.0, ("high", 11.35, 8500.0), (5, 7, 13), 95.83,
     (2856.08, 8500.0, 12, 13.33)),
    ("activeMinutes", "7day", 17, 70.0, "up", 16.67, ("high", 100.0, 60.0), (5, 7, 13), 91.67,
     (24.49, 60.0, 6, 85.71)),
    ("activeMinutes", "30day", 19, 64.29, "stable", 0.0, None, (7, 7, 13), 46.43,
     (16.04, 60.0, 14, 46.67)),
]
