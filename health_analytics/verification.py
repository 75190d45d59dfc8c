"""Field-by-field comparison of analytics snapshots (engine or database) with the reference.

Used by the tests and by `health-analytics verify`. Floats are equal within a relative tolerance (with a
tiny absolute floor for values near 0); everything else must be identical. `metadata` is not compared.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

IGNORED_FIELDS = frozenset({"metadata", "_id"})
SnapshotKey = tuple[str, str, str, dt.date]


@dataclass(frozen=True)
class Mismatch:
    key: SnapshotKey
    path: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        user, metric, rng, day = self.key
        return f"{user} {metric} {rng} {day}: {self.path} expected {self.expected!r}, got {self.actual!r}"


def snapshot_key(doc: Mapping[str, Any]) -> SnapshotKey:
    period_end = doc["periodEnd"]
    day = _as_utc(period_end).date() if isinstance(period_end, dt.datetime) else period_end
    return (str(doc["userId"]), doc["metricType"], doc["timeRange"], day)


def index_snapshots(docs: Iterable[Mapping[str, Any]]) -> dict[SnapshotKey, Mapping[str, Any]]:
    return {snapshot_key(d): d for d in docs}


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


# Fields that depend on when a batch ran, not on the data: `verify` leaves them out.
TIME_DEPENDENT_FIELDS = frozenset({"calculatedAt", "expiresAt", "analytics.anomalyDetails.detectedAt"})


def _diff(expected: Any, actual: Any, path: str, rel: float, out: list[tuple[str, Any, Any]], ignore: frozenset[str] = frozenset()) -> None:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for name in sorted(set(expected) | set(actual)):
            sub = f"{path}.{name}" if path else name
            if (name in IGNORED_FIELDS and not path) or sub in ignore:
                continue
            _diff(expected.get(name, "<absent>"), actual.get(name, "<absent>"), sub, rel, out, ignore)
        return
    if isinstance(expected, bool) or isinstance(actual, bool):
        if expected is not actual:
            out.append((path, expected, actual))
        return
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if isinstance(expected, int) != isinstance(actual, int):
            out.append((path, expected, actual))  # an int where a double belongs, or the reverse, is a type error
        elif not math.isclose(expected, actual, rel_tol=rel, abs_tol=1e-9):
            out.append((path, expected, actual))
        return
    if isinstance(expected, dt.datetime) and isinstance(actual, dt.datetime):
        if _as_utc(expected) != _as_utc(actual):
            out.append((path, expected, actual))
        return
    if isinstance(expected, ObjectId) or isinstance(actual, ObjectId):
        if str(expected) != str(actual) or type(expected) is not type(actual):
            out.append((path, expected, actual))
        return
    if expected != actual or type(expected) is not type(actual):
        out.append((path, expected, actual))


def compare_snapshots(
    expected: Mapping[SnapshotKey, Mapping[str, Any]],
    actual: Mapping[SnapshotKey, Mapping[str, Any]],
    *,
    rel: float = 1e-9,
    limit: int | None = None,
    ignore: frozenset[str] = frozenset(),
) -> list[Mismatch]:
    """Every difference between two keyed sets of snapshots, missing and extra keys included."""
    mismatches: list[Mismatch] = []
    for key in sorted(set(expected) | set(actual), key=lambda k: (k[0], k[1], k[2], k[3])):
        if key not in actual:
            mismatches.append(Mismatch(key, "<snapshot>", "present", "missing"))
        elif key not in expected:
            mismatches.append(Mismatch(key, "<snapshot>", "absent", "extra"))
        else:
            found: list[tuple[str, Any, Any]] = []
            _diff(expected[key], actual[key], "", rel, found, ignore)
            mismatches.extend(Mismatch(key, p, e, a) for p, e, a in found)
        if limit is not None and len(mismatches) >= limit:
            break
    return mismatches
