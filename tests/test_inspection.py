"""What `inspect` reports, on hand-written and on seeded collections of a real local server."""

from __future__ import annotations

import collections
import datetime as dt

import pytest
from bson import Int64, ObjectId

from health_analytics.inspection import NO_SOURCE, inspect_data, summarize_collections
from health_analytics.mongo_client import is_local_server
from health_analytics.seed import METRIC_RANGES, SeedPlan, generate_documents, seed_collection

UTC = dt.timezone.utc
TODAY = dt.date(2025, 11, 19)
STRATEGIES = ("server", "stream")


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=UTC)


U1, U2 = ObjectId("6560000000000000000000a1"), ObjectId("6560000000000000000000a2")
HEX_NEW_USER = "0123456789abcdef01234567"
HAND_WRITTEN = [
    {"userId": U1, "date": at(2025, 11, 1), "source": "manual", "metrics": {"steps": 1000, "weight": 70, "sleepHours": None}},
    # U1 again, as an upper-case 24-hex string: the same user
    {"userId": str(U1).upper(), "date": at(2025, 11, 2), "source": "googlefit", "metrics": {"steps": "5", "distance": 2.5}},
    # a new user known only by a hex string; no source; two values out of range
    {"userId": HEX_NEW_USER, "date": at(2025, 11, 3), "metrics": {"steps": 100_001, "weight": 500, "hydration": Int64(1)}},
    # a future date does not move last_day; a bool is no number; a 0 is a value
    {"userId": U2, "date": at(2025, 12, 24), "source": None, "metrics": {"steps": True, "calories": 0}},
    {"userId": "bob", "date": "2025-11-04", "source": "fitbit", "metrics": "n/a"},
    # bounds are inclusive; a date off midnight belongs to its UTC day
    {"userId": U2, "date": at(2025, 10, 30, 10, 30), "source": "import",
     "metrics": {"steps": 0, "activeMinutes": 1440, "heartPoints": 500.0, "sleepHours": 24}},
    {"source": "manual"},
]


@pytest.mark.db
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exact_answers_on_a_hand_written_collection(db, strategy):
    db["healthmetrics"].insert_many([dict(d) for d in HAND_WRITTEN])
    info = inspect_data(db, health_collection="healthmetrics", analytics_collection="analytics", today=TODAY, strategy=strategy)
    assert info.documents == 7
    assert info.users == 3  # U1 (ObjectId and hex string), U2, the hex-only user; "bob" and none are no users
    assert (info.first_day, info.last_day) == (dt.date(2025, 10, 30), dt.date(2025, 11, 3))
    assert info.by_source == {"manual": 2, NO_SOURCE: 2, "fitbit": 1, "googlefit": 1, "import": 1}
    assert list(info.by_source) == [NO_SOURCE, "manual", "fitbit", "googlefit", "import"]  # largest first, then by name
    assert info.metric_coverage == {
        "steps": 2, "distance": 1, "calories": 1, "activeMinutes": 1,
        "heartPoints": 1, "weight": 1, "sleepHours": 1, "hydration": 1,
    }
    assert list(info.metric_coverage) == list(METRIC_RANGES)
    assert (info.analytics_count, info.newest_calculated_at) == (None, None)


@pytest.mark.db
def test_an_empty_database(db):
    for strategy in STRATEGIES:
        info = inspect_data(db, health_collection="healthmetrics", analytics_collection="analytics", today=TODAY, strategy=strategy)
        assert (info.documents, info.users, info.first_day, info.last_day, info.by_source) == (0, 0, None, None, {})
        assert info.metric_coverage == dict.fromkeys(METRIC_RANGES, 0)
    assert summarize_collections(db) == []


@pytest.mark.db
def test_a_seeded_collection_and_its_analytics(db):
    plan = SeedPlan(users=12, days=30, invalid_share=0.15, pattern=True, today=TODAY)
    docs = list(generate_documents(plan))
    report = seed_collection(db["healthmetrics"], plan)
    assert report.inserted == len(docs)

    # Expected values straight from the generated documents.
    dated = [d["date"] for d in docs if isinstance(d.get("date"), dt.datetime) and d["date"].date() <= TODAY]
    sources = collections.Counter(NO_SOURCE if d.get("source") is None else d["source"] for d in docs)
    coverage = {
        m: sum(
            1 for d in docs
            if isinstance(d.get("metrics"), dict) and type(d["metrics"].get(m)) in (int, float)
            and low <= d["metrics"][m] <= high
        )
        for m, (low, high) in METRIC_RANGES.items()
    }
    results = {
        strategy: inspect_data(db, health_collection="healthmetrics", analytics_collection="analytics", today=TODAY, strategy=strategy)
        for strategy in STRATEGIES
    }
    assert results["server"] == results["stream"]
    info = results["stream"]
    assert info.documents == len(docs) == report.generated
    assert info.users == 13  # the plan's users and the SPEC §2 user; invalid userIds are nobody's
    assert (info.first_day, info.last_day) == (min(dated).date(), max(dated).date())
    assert info.last_day == TODAY
    assert info.by_source == dict(sources)
    assert info.metric_coverage == coverage
    assert coverage["steps"] > coverage["sleepHours"] > coverage["weight"] > 0

    analytics = db["analytics"]
    newest = at(2025, 11, 20, 3, 0)
    analytics.insert_many([
        {"metricType": "steps", "calculatedAt": newest - dt.timedelta(milliseconds=2)},
        {"metricType": "steps", "calculatedAt": newest},
        {"metricType": "weight", "calculatedAt": newest - dt.timedelta(days=1)},
    ])
    info = inspect_data(db, health_collection="healthmetrics", analytics_collection="analytics", today=TODAY)
    assert (info.analytics_count, info.newest_calculated_at) == (3, newest)
    assert info.newest_calculated_at.utcoffset() == dt.timedelta(0)

    summaries = {s.name: s for s in summarize_collections(db)}
    assert list(summaries) == ["analytics", "healthmetrics"]
    assert summaries["healthmetrics"].count == len(docs)
    assert sorted(summaries["healthmetrics"].indexes) == ["_id_", "date_-1", "source_1", "updatedAt_1", "userId_1_date_1"]
    assert (summaries["analytics"].count, summaries["analytics"].indexes) == (3, ["_id_"])


@pytest.mark.db
def test_auto_streams_on_the_local_server(db, monkeypatch):
    """On FerretDB every query is a full scan, so "auto" must pick the single streamed pass."""
    import health_analytics.inspection as inspection

    db["healthmetrics"].insert_one({"userId": U1, "date": at(2025, 11, 1), "metrics": {"steps": 1}})
    called = []
    monkeypatch.setattr(inspection, "_inspect_by_streaming", lambda *a: called.append("stream") or _stub())
    monkeypatch.setattr(inspection, "_inspect_on_server", lambda *a: called.append("server") or _stub())
    inspect_data(db, health_collection="healthmetrics", analytics_collection="analytics", today=TODAY)
    assert called == (["stream"] if is_local_server(db.client) else ["server"])
    with pytest.raises(ValueError):
        inspect_data(db, health_collection="healthmetrics", analytics_collection="analytics", strategy="guess")


def _stub() -> dict:
    return {"documents": 0, "users": 0, "first_day": None, "last_day": None, "by_source": {}, "metric_coverage": {}}
