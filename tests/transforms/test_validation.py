"""Every rejection kind of SPEC §1 through the Spark engine: its reason code, and valid rows undisturbed.

All cases run in one Spark job: each bad document gets its own `_id` (and, for value-level cases, its
own user, so no two cases share a user-day).
"""

from __future__ import annotations

import datetime as dt

import pytest
from bson import ObjectId

from health_analytics.reference import compute_reference
from health_analytics.verification import compare_snapshots
from tests.test_reference import DOC_LEVEL_CASES, VALUE_CASES, bad_doc
from tests.transforms.support import rejection_set, run_engine
from tests.worked_example import BATCH, TODAY, UH, nov, oid, worked_docs

ALL_CASES = [(f"doc:{name}", overrides, reason, None) for name, overrides, reason, _u, _d in DOC_LEVEL_CASES] + [
    (f"value:{metric}:{value!r}", {"metrics": {metric: value}}, reason, metric) for metric, value, reason in VALUE_CASES
]


def _case_documents() -> dict[str, dict]:
    docs = {}
    for i, (name, overrides, _reason, field) in enumerate(ALL_CASES):
        doc = bad_doc(**overrides)
        doc["_id"] = oid(50_000 + i)
        if field is not None:  # value-level: a user of its own
            doc["userId"] = oid(70_000 + i)
        docs[name] = doc
    return docs


@pytest.fixture(scope="module")
def outcome(spark):
    cases = _case_documents()
    docs = worked_docs() + list(cases.values())
    snapshots, rejections = run_engine(spark, docs, today=TODAY, batch_time=BATCH)
    return cases, docs, snapshots, rejections


@pytest.mark.parametrize("name,reason,field", [(c[0], c[2], c[3]) for c in ALL_CASES], ids=[c[0] for c in ALL_CASES])
def test_reason_code(outcome, name, reason, field):
    cases, _docs, _snapshots, rejections = outcome
    mine = [r for r in rejections if r["docId"] == str(cases[name]["_id"])]
    assert [(r["reason"], r["field"]) for r in mine] == [(reason, field)]


def test_valid_rows_undisturbed_and_equal_to_reference(outcome, spark):
    _cases, docs, snapshots, rejections = outcome
    clean, _ = run_engine(spark, worked_docs(), today=TODAY, batch_time=BATCH)
    assert {k: v for k, v in snapshots.items() if k[0] == UH} == clean
    assert {k[0] for k in snapshots} == {UH}  # bad documents add no snapshot anywhere
    expected = compute_reference(docs, today=TODAY, batch_time=BATCH)
    assert compare_snapshots(expected.snapshots, snapshots) == []
    assert rejection_set(rejections) == rejection_set(expected.rejections)


def test_rejections_never_carry_values(outcome):
    *_, rejections = outcome
    assert all(set(r) == {"docId", "userId", "day", "reason", "field", "updated_ms"} for r in rejections)


def test_duplicate_day_later_update_wins_and_keeps_its_own_gaps(spark):
    user = ObjectId("65b000000000000000000001")
    day = dt.datetime(2025, 11, 18, tzinfo=dt.timezone.utc)
    older = {"_id": oid(1), "userId": user, "date": day, "metrics": {"steps": 5000, "weight": 80},
             "updatedAt": dt.datetime(2025, 11, 18, 20, tzinfo=dt.timezone.utc)}
    newer = {"_id": oid(2), "userId": str(user), "date": day + dt.timedelta(hours=9), "metrics": {"steps": 6000, "weight": "80kg"},
             "updatedAt": dt.datetime(2025, 11, 19, 7, tzinfo=dt.timezone.utc)}
    tie = {"_id": oid(3), "userId": user, "date": day, "metrics": {"steps": 7000},
           "updatedAt": dt.datetime(2025, 11, 19, 7, tzinfo=dt.timezone.utc)}
    snapshots, rejections = run_engine(spark, [older, newer, tie], today=TODAY, batch_time=BATCH)
    # tie on updatedAt with `newer`: the larger _id (oid 3) wins; its steps are the user's only value
    assert snapshots[(str(user), "steps", "7day", nov(18))]["analytics"]["rollingAverage"] == 7000.0
    assert not any(k[1] == "weight" for k in snapshots)  # the winner has no weight: none is borrowed
    assert sorted((r["docId"], r["reason"]) for r in rejections) == [(str(oid(1)), "duplicate_day"), (str(oid(2)), "duplicate_day")]
