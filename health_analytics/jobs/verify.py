"""`verify`: recompute a sample of users with the reference, straight from the database, and compare
with what `analytics` holds. The sample's documents are small enough for the driver by design."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from bson import ObjectId

from health_analytics.mongo_client import connect
from health_analytics.reference import ReferenceParams, compute_reference
from health_analytics.settings import Settings
from health_analytics.verification import TIME_DEPENDENT_FIELDS, Mismatch, compare_snapshots, index_snapshots

UTC = dt.timezone.utc


@dataclass
class VerifyReport:
    users: int
    expected_snapshots: int
    stored_snapshots: int
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _user_forms(user: ObjectId) -> list:
    return [user, str(user), str(user).upper()]


def verify(settings: Settings, *, sample: int | None, seed: int = 0, now: dt.datetime | None = None, limit: int = 50) -> VerifyReport:
    now = now or dt.datetime.now(UTC)
    params = ReferenceParams(
        history_days=settings.analytics_history_days,
        anomaly_threshold=settings.anomaly_threshold,
        steps_streak_threshold=settings.steps_streak_threshold,
        baseline_days=settings.baseline_days,
        baseline_min_points=settings.baseline_min_points,
    )
    with connect(settings.mongo_uri_value) as client:
        db = client[settings.mongo_db_name]
        health, analytics = db[settings.health_metrics_collection], db[settings.analytics_collection]
        users = sorted({ObjectId(str(u)) for u in health.distinct("userId") if ObjectId.is_valid(str(u)) and len(str(u)) == 24}, key=str)
        if sample is not None and sample < len(users):
            users = sorted(random.Random(seed).sample(users, sample), key=str)
        forms = [f for u in users for f in _user_forms(u)]
        docs = list(health.find({"userId": {"$in": forms}}))
        expected = compute_reference(docs, today=now.date(), batch_time=now, params=params).snapshots
        stored = index_snapshots(analytics.find({"userId": {"$in": users}}))
    mismatches = compare_snapshots(expected, stored, limit=limit, ignore=TIME_DEPENDENT_FIELDS)
    return VerifyReport(users=len(users), expected_snapshots=len(expected), stored_snapshots=len(stored), mismatches=mismatches)
