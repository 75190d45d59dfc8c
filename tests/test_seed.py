"""The synthetic data generator: pure properties first, then seeding a real local server."""

from __future__ import annotations

import collections
import datetime as dt
import math

import pytest
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from health_analytics.mongo_client import is_local_server
from health_analytics.reference import compute_reference
from health_analytics.seed import (
    INVALID_KIND_REASONS,
    INVALID_KINDS,
    METRIC_RANGES,
    METRICS,
    PATTERN_USER_ID,
    SOURCES,
    SeedPlan,
    ensure_healthmetrics_indexes,
    generate_documents,
    generate_with_kinds,
    pattern_documents,
    seed_collection,
    user_id,
)

UTC = dt.timezone.utc
TODAY = dt.date(2025, 11, 19)
DOC_FIELDS = {"_id", "userId", "date", "metrics", "source", "activities", "createdAt", "updatedAt"}
METRIC_FIELDS = set(METRICS) | {"height", "bloodPressure", "bodyTemperature"}
BATCH_TIME = dt.datetime(2025, 11, 20, 3, 0, tzinfo=UTC)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------------------
# Pure: the generator
# --------------------------------------------------------------------------------------------------


def test_same_plan_same_documents_and_another_seed_differs():
    plan = SeedPlan(users=8, days=30, invalid_share=0.2, pattern=True, today=TODAY)
    first, second = list(generate_documents(plan)), list(generate_documents(plan))
    assert first == second and len(first) > 200

    other = list(generate_documents(SeedPlan(users=8, days=30, seed=43, invalid_share=0.2, pattern=True, today=TODAY)))
    ids, other_ids = {d["_id"] for d in first}, {d["_id"] for d in other}
    assert ids & other_ids == {d["_id"] for d in pattern_documents()}  # only the fixed SPEC §2 user is shared
    valid = [d for k, d in generate_with_kinds(plan) if k is None and d["userId"] == user_id(42, 0)]
    other_plan = SeedPlan(users=8, days=30, seed=43, today=TODAY)
    other_valid = [d for k, d in generate_with_kinds(other_plan) if k is None and d["userId"] == user_id(43, 0)]
    steps, other_steps = [d["metrics"]["steps"] for d in valid], [d["metrics"]["steps"] for d in other_valid]
    assert steps != other_steps
    assert user_id(42, 0) != user_id(43, 0)


def test_a_user_day_keeps_its_values_whatever_the_window_or_the_invalid_share():
    """Values depend on (seed, user, calendar day) only: a longer window or more invalid docs change nothing."""
    short = [d for k, d in generate_with_kinds(SeedPlan(users=5, days=20, today=TODAY)) if k is None]
    longer = [d for k, d in generate_with_kinds(SeedPlan(users=5, days=40, today=TODAY + dt.timedelta(days=3),
                                                         invalid_share=0.3)) if k is None]
    by_id = {d["_id"]: d for d in longer}

    def values(doc: dict) -> dict:  # timestamps aside: they are capped at the end of each plan's today
        return {k: v for k, v in doc.items() if k not in ("createdAt", "updatedAt")}

    assert short and all(values(by_id[d["_id"]]) == values(d) for d in short)


def test_valid_documents_follow_spec_section_1():
    plan = SeedPlan(users=30, days=45, invalid_share=0.1, today=TODAY)
    items = list(generate_with_kinds(plan))
    valid = [d for k, d in items if k is None]
    first = midnight(plan.first_day)
    per_user_day = collections.Counter((d["userId"], d["date"]) for d in valid)
    assert max(per_user_day.values()) == 1  # one valid document per user and day
    assert len({d["_id"] for _, d in items}) == len(items)
    assert len(valid) + sum(k is not None for k, _ in items) == len(items)
    assert {d["userId"] for d in valid} == {user_id(42, i) for i in range(30)}
    missing = 1 - len(valid) / (30 * 45)
    assert 0.06 <= missing <= 0.14, missing  # ~10 % missing days (per-user share drawn in 5–15 %)

    for doc in valid:
        assert set(doc) == DOC_FIELDS
        assert isinstance(doc["_id"], ObjectId) and isinstance(doc["userId"], ObjectId)
        date = doc["date"]
        assert date.tzinfo is not None and date.utcoffset() == dt.timedelta(0)
        assert (date.hour, date.minute, date.second, date.microsecond) == (0, 0, 0, 0)
        assert first <= date <= midnight(TODAY)
        assert doc["source"] in SOURCES and doc["activities"] == []
        assert date <= doc["createdAt"] <= doc["updatedAt"] <= plan.timestamp_cap
        metrics = doc["metrics"]
        assert set(metrics) == METRIC_FIELDS
        for metric in ("steps", "distance", "calories", "activeMinutes", "heartPoints"):
            assert is_number(metrics[metric]), (metric, metrics)  # the backend fills these, 0 included
        for metric in METRICS:
            value = metrics[metric]
            if value is not None:
                low, high = METRIC_RANGES[metric]
                assert is_number(value) and low <= value <= high, (metric, value)
        if metrics["steps"] >= 1000:  # distance is rounded to 10 m
            assert 0.0007 * 0.9 <= metrics["distance"] / metrics["steps"] <= 0.0008 * 1.1
        if doc["source"] == "manual":
            assert metrics["heartPoints"] == 0
    coverage = {m: sum(d["metrics"][m] is not None for d in valid) / len(valid) for m in ("weight", "sleepHours", "hydration")}
    assert 0.08 <= coverage["weight"] <= 0.25  # about weekly
    assert 0.7 <= coverage["sleepHours"] <= 0.95  # most nights
    assert 0.1 <= coverage["hydration"] <= 0.6  # sometimes
    assert {d["source"] for d in valid} == set(SOURCES)


def test_anomalies_exist_in_the_synthetic_series():
    """~2 % spike days: with 30 users × 45 days some steps values sit far above the user's usual level."""
    valid = [d for k, d in generate_with_kinds(SeedPlan(users=30, days=45, today=TODAY)) if k is None]
    by_user: dict[ObjectId, list[int]] = collections.defaultdict(list)
    for doc in valid:
        by_user[doc["userId"]].append(doc["metrics"]["steps"])
    spikes = sum(1 for values in by_user.values() for v in values if v > 2 * sorted(values)[len(values) // 2])
    assert 5 <= spikes <= 80, spikes


def test_invalid_share_and_every_kind():
    """Invalid docs are drawn per user as valid·p/(1−p) with a Bernoulli fraction: the overall share has a
    standard deviation of about √(users·¼)/total ≈ 0.001 here, so ±0.01 is a wide margin. Kinds are dealt
    round-robin from a random start per user: each kind gets ≈ 1/11 of them (worst of 30 seeds: 0.64×)."""
    plan = SeedPlan(users=50, days=60, invalid_share=0.1, today=TODAY)
    kinds = collections.Counter(k for k, _ in generate_with_kinds(plan))
    total = sum(kinds.values())
    invalid = total - kinds[None]
    assert abs(invalid / total - 0.1) <= 0.01, invalid / total
    assert set(plan.invalid_kinds) == set(INVALID_KINDS) - {"nan_value"}
    for kind in plan.invalid_kinds:
        assert kinds[kind] >= 0.4 * invalid / len(plan.invalid_kinds), (kind, kinds)
    assert kinds["nan_value"] == 0
    assert not any(k for k, _ in generate_with_kinds(SeedPlan(users=5, days=10, today=TODAY)))


def test_every_invalid_document_is_rejected_for_its_reason_by_the_reference():
    """The project's oracle (reference.py) gives each invalid kind its ANALYTICS.md reason, and nothing else."""
    plan = SeedPlan(users=12, days=40, invalid_share=0.3, today=TODAY, nan_values=True)
    items = list(generate_with_kinds(plan))
    assert {k for k, _ in items} - {None} == set(INVALID_KINDS)
    result = compute_reference([d for _, d in items], today=TODAY, batch_time=BATCH_TIME)
    reasons = collections.defaultdict(list)
    for rejection in result.rejections:
        reasons[rejection["docId"]].append(rejection["reason"])
    for kind, doc in items:
        expected = [] if kind is None else [INVALID_KIND_REASONS[kind]]
        assert reasons.get(str(doc["_id"]), []) == expected, (kind, doc)
    assert any(math.isnan(v) for k, d in items if k == "nan_value" for v in d["metrics"].values() if isinstance(v, float))


def test_the_pattern_user_is_the_worked_example():
    docs = pattern_documents()
    assert [d for d in generate_documents(SeedPlan(users=0, days=1, pattern=True, today=TODAY))] == docs
    assert_pattern(docs)


def assert_pattern(docs: list[dict]) -> None:
    steps = [7000, 7500, 8000, 8500, 9000, 9500, 10000, 8500, 8500, 8500, 8500, 18000, 8200, 8200]
    days = [dt.date(2025, 11, d) for d in (5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19)]
    docs = sorted(docs, key=lambda d: d["date"])
    assert [d["date"] for d in docs] == [midnight(day) for day in days]
    assert len({d["_id"] for d in docs}) == 14
    for doc, day, value in zip(docs, days, steps):
        assert doc["userId"] == PATTERN_USER_ID and doc["source"] == "manual"
        m = doc["metrics"]
        assert m["steps"] == value
        assert m["distance"] == pytest.approx(value * 0.0007, abs=1e-9)
        assert m["calories"] == pytest.approx(value * 0.04, abs=1e-9)
        assert m["activeMinutes"] == (120 if day == dt.date(2025, 11, 17) else 60)
        assert m["weight"] == 72.5 and m["sleepHours"] == 7.5
        # exactly six metrics with values (SPEC §2: 14 days × 6 metrics × 3 ranges = 252 snapshots)
        assert [k for k in METRICS if m.get(k) is not None] == ["steps", "distance", "calories", "activeMinutes", "weight", "sleepHours"]


def test_the_pattern_gives_252_snapshots_in_the_reference():
    result = compute_reference(pattern_documents(), today=TODAY, batch_time=BATCH_TIME)
    assert len(result.snapshots) == 252 and result.rejections == []


def test_timestamps_never_pass_now_and_plans_are_checked():
    now = dt.datetime(2025, 11, 19, 6, 30, tzinfo=UTC)
    plan = SeedPlan(users=5, days=10, invalid_share=0.2, today=TODAY, now=now)
    for doc in generate_documents(plan):
        for field in ("createdAt", "updatedAt"):
            if field in doc:
                assert doc[field] <= now
    with pytest.raises(ValueError):
        SeedPlan(users=1, days=1, invalid_share=1.0, today=TODAY)
    with pytest.raises(ValueError):
        SeedPlan(users=1, days=1, pattern=True, today=dt.date(2025, 11, 18))
    with pytest.raises(ValueError):
        SeedPlan(users=1, days=1, today=TODAY, now=dt.datetime(2025, 11, 18, 23, tzinfo=UTC))
    with pytest.raises(ValueError):
        SeedPlan(users=1, days=0, today=TODAY)


# --------------------------------------------------------------------------------------------------
# Against the local server
# --------------------------------------------------------------------------------------------------


@pytest.mark.db
def test_seed_stores_every_document_as_generated_and_is_idempotent(db):
    plan = SeedPlan(users=50, days=60, invalid_share=0.1, pattern=True, today=TODAY)
    items = list(generate_with_kinds(plan))
    collection = db["healthmetrics"]
    done: list[int] = []
    report = seed_collection(collection, plan, batch_size=1000, progress=done.append)

    assert report.generated == len(items) == collection.count_documents({})
    assert report.inserted == report.generated and report.already_present == 0
    assert report.invalid == sum(k is not None for k, _ in items)
    assert report.users == 51 and report.duration_s > 0
    assert done == sorted(done) and done[-1] == report.generated and len(done) == -(-report.generated // 1000)

    stored = {d["_id"]: d for d in collection.find({})}
    assert stored == {d["_id"]: d for _, d in items}  # BSON types survive: ObjectIds, dates, ints, floats
    kinds = collections.Counter(k for k, _ in items if k)
    assert set(kinds) == set(plan.invalid_kinds)  # every kind made it past the unique index

    again = seed_collection(collection, plan, batch_size=700)
    assert (again.inserted, again.already_present, again.generated) == (0, report.generated, report.generated)
    assert collection.count_documents({}) == report.generated

    # The reference, reading what the server returns, rejects exactly the invalid ones.
    result = compute_reference(list(stored.values()), today=TODAY, batch_time=BATCH_TIME)
    assert {r["docId"] for r in result.rejections} == {str(d["_id"]) for k, d in items if k}


@pytest.mark.db
def test_the_pattern_user_as_stored(db):
    seed_collection(db["healthmetrics"], SeedPlan(users=2, days=5, pattern=True, today=TODAY))
    docs = list(db["healthmetrics"].find({"userId": PATTERN_USER_ID}))
    assert len(docs) == 14
    assert_pattern(docs)
    assert all(d["metrics"]["heartPoints"] is None and d["metrics"]["hydration"] is None for d in docs)


@pytest.mark.db
def test_indexes_and_the_unique_user_day(db):
    collection = db["healthmetrics"]
    names = ensure_healthmetrics_indexes(collection)
    assert names == ["userId_1_date_1", "date_-1", "source_1", "updatedAt_1"]
    assert ensure_healthmetrics_indexes(collection) == names  # idempotent
    info = collection.index_information()
    assert info["userId_1_date_1"]["key"] == [("userId", 1), ("date", 1)] and info["userId_1_date_1"].get("unique")
    assert info["date_-1"]["key"] == [("date", -1)]
    assert info["source_1"]["key"] == [("source", 1)]
    assert info["updatedAt_1"]["key"] == [("updatedAt", 1)]

    user, day = ObjectId(), midnight(TODAY)
    collection.insert_one({"userId": user, "date": day, "metrics": {"steps": 1}})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"userId": user, "date": day, "metrics": {"steps": 2}})
    collection.insert_one({"userId": user, "date": day + dt.timedelta(hours=10, minutes=30), "metrics": {"steps": 3}})
    assert collection.count_documents({"userId": user}) == 2


@pytest.mark.db
def test_nan_plans_are_refused_by_the_local_server(db):
    if not is_local_server(db.client):
        pytest.skip("MongoDB stores NaN; only FerretDB refuses it")
    with pytest.raises(ValueError, match="NaN"):
        seed_collection(db["healthmetrics"], SeedPlan(users=2, days=5, invalid_share=0.5, today=TODAY, nan_values=True))
