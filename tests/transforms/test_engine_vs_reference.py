"""Property: on any mix of users, gaps, zeros, constant series, duplicates and bad values, the Spark engine
produces exactly the reference's snapshots (same keys, every field, floats to 1e-9 relative) and rejections."""

from __future__ import annotations

import datetime as dt
import math

from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from health_analytics.reference import ReferenceParams, compute_reference
from health_analytics.verification import compare_snapshots
from tests.transforms.support import rejection_set, run_engine

UTC = dt.timezone.utc
TODAY = dt.date(2026, 3, 31)
BATCH = dt.datetime(2026, 3, 31, 18, 30, 15, 250000, tzinfo=UTC)
METRICS = ("steps", "distance", "calories", "activeMinutes", "heartPoints", "weight", "sleepHours", "hydration")

# Value shapes that stress ties, zeros, constant series, streak thresholds and range edges.
_value_styles = st.sampled_from(["constant", "small_ints", "steps_like", "decimals", "threshold", "zeros"])
_bad_values = st.sampled_from(["str", "bool", "nan", "neg", "huge", "dict"])


def _value(draw, style: str, metric: str, constant: float):
    if style == "constant":
        return constant
    if style == "small_ints":
        return draw(st.integers(0, 4)) + (30 if metric == "weight" else 0)
    if style == "steps_like":
        return draw(st.integers(0, 20000)) if metric == "steps" else draw(st.integers(0, 9)) + 30 * (metric == "weight")
    if style == "decimals":
        return round(draw(st.floats(0.0, 9.0, allow_nan=False)), 1) + 30 * (metric == "weight")
    if style == "threshold":
        return draw(st.sampled_from([999, 1000, 1001, 0, 1])) + 30 * (metric == "weight")
    return 0 if metric != "weight" else 30


def _bad(kind: str):
    return {"str": "12", "bool": True, "nan": math.nan, "neg": -1, "huge": 1e9, "dict": {"v": 1}}[kind]


@st.composite
def users_documents(draw):
    docs = []
    n_users = draw(st.integers(1, 3))
    for u in range(n_users):
        user = ObjectId(f"{draw(st.integers(1, 2**40)):024x}")
        span = draw(st.integers(1, 200))
        presence = draw(st.floats(0.3, 1.0))
        metrics = draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=4, unique=True))
        styles = {m: draw(_value_styles) for m in metrics}
        constants = {m: draw(st.sampled_from([0, 1, 7.5, 72.5, 1000, 1001])) + (30 if m == "weight" else 0) for m in metrics}
        end = TODAY - dt.timedelta(days=draw(st.integers(0, 3)))
        for i in range(span):
            day = end - dt.timedelta(days=i)
            if draw(st.floats(0, 1)) > presence:
                continue
            values = {m: _value(draw, styles[m], m, constants[m]) for m in metrics}
            if draw(st.integers(0, 19)) == 0:
                values[draw(st.sampled_from(metrics))] = _bad(draw(_bad_values))
            updated = dt.datetime(day.year, day.month, day.day, 22, tzinfo=UTC)
            doc = {
                "_id": ObjectId(f"{u:08x}{i:08x}{0:08x}"),
                "userId": user if draw(st.booleans()) else str(user),
                "date": dt.datetime(day.year, day.month, day.day, tzinfo=UTC),
                "source": draw(st.sampled_from(["manual", "googlefit", "import", None])),
                "metrics": values,
                "updatedAt": updated,
            }
            twist = draw(st.integers(0, 29))
            if twist == 0:
                doc["metrics"]["heartRate"] = 70  # wearable: the whole document goes
            elif twist == 1:
                doc["source"] = "fitbit"
            elif twist in (2, 3):
                # a same-day duplicate, sometimes newer, sometimes with an equal updatedAt (larger _id wins)
                other = {m: _value(draw, styles[m], m, constants[m]) for m in metrics}
                delta = dt.timedelta(hours=draw(st.sampled_from([-3, 0, 1])))
                docs.append({**doc, "_id": ObjectId(f"{u:08x}{i:08x}{1:08x}"), "metrics": other,
                             "date": doc["date"] + dt.timedelta(hours=10), "updatedAt": updated + delta})
            docs.append(doc)
        if draw(st.integers(0, 4)) == 0:  # a document from the future
            future = TODAY + dt.timedelta(days=1)
            docs.append({"_id": ObjectId(f"{u:08x}ffffffff00000000"), "userId": user, "source": "manual",
                         "date": dt.datetime(future.year, future.month, future.day, tzinfo=UTC),
                         "metrics": {metrics[0]: constants[metrics[0]]}, "updatedAt": BATCH})
    return docs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(docs=users_documents(), history=st.sampled_from([90, 30, 7]), min_points=st.sampled_from([7, 3]))
def test_engine_equals_reference(spark, docs, history, min_points):
    params = ReferenceParams(history_days=history, baseline_min_points=min_points)
    expected = compute_reference(docs, today=TODAY, batch_time=BATCH, params=params)
    snapshots, rejections = run_engine(spark, docs, today=TODAY, batch_time=BATCH, params=params)
    mismatches = compare_snapshots(expected.snapshots, snapshots, limit=10)
    assert mismatches == [], "\n".join(map(str, mismatches))
    assert rejection_set(rejections) == rejection_set(expected.rejections)
