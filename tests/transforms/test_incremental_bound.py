"""Snapshots written from a changed day on need only the history from (that day − 364 days): they must
equal a full recomputation's, also for runs longer than the 365-day streak lookback — checked here on the
Spark engine with 500 days. (Batches read a changed user's whole history, see mongo_reader.plan_read; this
bound is what the engine itself guarantees.)"""

from __future__ import annotations

import datetime as dt
import random

from bson import ObjectId

from health_analytics.reference import compute_reference
from health_analytics.verification import compare_snapshots
from tests.transforms.support import run_engine

UTC = dt.timezone.utc
TODAY = dt.date(2026, 6, 1)
BATCH = dt.datetime(2026, 6, 1, 12, tzinfo=UTC)


def _history() -> list[dict]:
    rng = random.Random(3)
    docs = []
    for u, gap_every in ((1, None), (2, 37)):  # user 1: one 500-day streak; user 2: gaps break it
        user = ObjectId(f"{u:024x}")
        for i in range(500):
            day = TODAY - dt.timedelta(days=i)
            if gap_every and i % gap_every == 5:
                continue
            docs.append({"_id": ObjectId(f"{u:08x}{i:016x}"), "userId": user, "source": "manual",
                         "date": dt.datetime(day.year, day.month, day.day, tzinfo=UTC), "updatedAt": BATCH,
                         "metrics": {"steps": rng.randint(1001, 15000), "sleepHours": round(rng.uniform(5, 9), 1)}})
    return docs


def test_bounded_history_gives_the_full_runs_snapshots(spark):
    docs = _history()
    changed = TODAY - dt.timedelta(days=20)
    bound = changed - dt.timedelta(days=364)
    full, _ = run_engine(spark, docs, today=TODAY, batch_time=BATCH)
    partial_docs = [d for d in docs if d["date"].date() >= bound]
    partial, _ = run_engine(spark, partial_docs, today=TODAY, batch_time=BATCH, first_snapshot_day=changed)
    expected = {k: v for k, v in full.items() if k[3] >= changed}
    assert set(partial) == set(expected) and len(expected) == 2 * 3 * (21 + 20)  # user 2 skips day T-5
    assert compare_snapshots(expected, partial) == []
    # and the full run matches the reference, streak cap included
    assert compare_snapshots(compute_reference(docs, today=TODAY, batch_time=BATCH).snapshots, full) == []
    latest = full[(f"{1:024x}", "steps", "7day", TODAY)]["analytics"]
    assert (latest["streakDays"], latest["longestStreak"]) == (365, 365)
    assert latest["streakStartDate"] == dt.datetime.combine(TODAY - dt.timedelta(days=364), dt.time(), UTC)
