"""The plain-Python reference against SPEC §2's worked example and hand-derived edge cases.

Every expected number here was worked out by hand from SPEC.md / docs/ANALYTICS.md (the derivation is
in the comments), never by running the code under test.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

import pytest
from bson import Decimal128, Int64, ObjectId

from health_analytics.reference import ReferenceParams, compute_reference, round2

from tests.worked_example import (  # noqa: F401 - shared fixtures of the worked example
    UTC,
    TODAY,
    BATCH,
    BATCH_MS,
    U,
    UH,
    V,
    VH,
    METRICS6,
    RANGES,
    WORKED_STEPS,
    oid,
    nov,
    midnight,
    doc,
    worked_docs,
    WORKED_TABLE,
)


def run(docs, params=ReferenceParams(), today=TODAY):
    return compute_reference(docs, today=today, batch_time=BATCH, params=params)


@pytest.fixture(scope="module")
def base():
    return run(worked_docs())


def snap(result, metric, rng, day, user=UH):
    return result.snapshots[(user, metric, rng, day)]["analytics"]


# ---------------------------------------------------------------------------------------------------
# SPEC §2 worked example
# ---------------------------------------------------------------------------------------------------


def test_worked_example_has_252_snapshots(base):
    assert len(base.snapshots) == 252
    expected_keys = {
        (UH, m, r, nov(d)) for m, r, d in itertools.product(METRICS6, RANGES, WORKED_STEPS)
    }
    assert set(base.snapshots) == expected_keys
    assert base.rejections == []


@pytest.mark.parametrize(
    "metric,rng,day,avg,trend,trend_pct,anomaly,streaks,percentile,stats",
    WORKED_TABLE,
    ids=[f"{r[0]}-{r[1]}-11-{r[2]}" for r in WORKED_TABLE],
)
def test_worked_example_table(base, metric, rng, day, avg, trend, trend_pct, anomaly, streaks, percentile, stats):
    a = snap(base, metric, rng, nov(day))
    assert round(a["rollingAverage"], 2) == avg
    assert a["trend"] == trend
    assert round(a["trendPercentage"], 2) == trend_pct
    if anomaly is None:
        assert a["anomalyDetected"] is False
        assert "anomalyDetails" not in a
    else:
        severity, z, expected = anomaly
        assert a["anomalyDetected"] is True
        details = a["anomalyDetails"]
        assert details["severity"] == severity
        assert details["deviation"] == z  # rounded field: exact
        assert round(details["expectedValue"], 2) == expected
    streak, longest, start = streaks
    assert a["streakDays"] == streak
    assert a["longestStreak"] == longest
    assert a["streakStartDate"] == midnight(nov(start))
    assert a["percentile"] == percentile  # rounded field: exact
    sd, median, count, completeness = stats
    s = a["statistics"]
    assert round(s["standardDeviation"], 2) == sd
    assert s["medianValue"] == median
    assert s["dataPointsCount"] == count and type(s["dataPointsCount"]) is int
    assert s["completenessPercentage"] == completeness  # rounded field: exact
    assert type(a["streakDays"]) is int and type(a["longestStreak"]) is int


def test_worked_example_anomaly_details_and_comparison(base):
    # steps 11-17: B = 11-05…11-16 (11 values, sum 93500) → mean 8500; message p = 9500/8500·100 = 111.76 → 112.
    a = snap(base, "steps", "7day", nov(17))
    d = a["anomalyDetails"]
    assert d["actualValue"] == 18000.0
    assert d["expectedValue"] == 8500.0
    assert d["message"] == "Steps 112% above your 30-day average"
    # P = 11-04…11-10: 7000…9500 (6 values) → mean 8250; W mean 62000/6; change = 2083.33.
    c = a["comparisonToPrevious"]
    assert round(c["absoluteChange"], 2) == 2083.33
    assert round(c["percentageChange"], 2) == 25.25
    assert c["isImprovement"] is True
    assert a["statistics"]["minValue"] == 8500.0 and a["statistics"]["maxValue"] == 18000.0
    # activeMinutes 11-17: B = eleven 60s, sd 0 → denominator 60/100; p = 60/60·100 = 100.
    m = snap(base, "activeMinutes", "7day", nov(17))["anomalyDetails"]
    assert m["message"] == "Active minutes 100% above your 30-day average"
    assert m["actualValue"] == 120.0 and m["expectedValue"] == 60.0
    # Empty previous window: all zeros, isImprovement null.
    assert snap(base, "steps", "30day", nov(19))["comparisonToPrevious"] == {
        "absoluteChange": 0.0, "percentageChange": 0.0, "isImprovement": None,
    }


def test_worked_example_only_11_17_flags(base):
    flagged = {(k[1], k[3]) for k, v in base.snapshots.items() if v["analytics"]["anomalyDetected"]}
    assert flagged == {(m, nov(17)) for m in ("steps", "distance", "calories", "activeMinutes")}


def test_weight_and_sleep_never_flag(base):
    for (user, metric, rng, day), v in base.snapshots.items():
        if metric in ("weight", "sleepHours"):
            assert v["analytics"]["anomalyDetected"] is False
            assert "anomalyDetails" not in v["analytics"]


def test_output_document_shape(base):
    v = base.snapshots[(UH, "steps", "7day", nov(17))]
    assert set(v) == {"userId", "metricType", "timeRange", "periodEnd", "analytics", "calculatedAt", "expiresAt"}
    assert v["userId"] == U and isinstance(v["userId"], ObjectId)
    assert v["metricType"] == "steps" and v["timeRange"] == "7day"
    assert v["periodEnd"] == dt.datetime(2025, 11, 17, tzinfo=UTC)
    assert v["periodEnd"].tzinfo is not None
    assert set(v["analytics"]) == {
        "rollingAverage", "trend", "trendPercentage", "anomalyDetected", "anomalyDetails", "streakDays",
        "longestStreak", "streakStartDate", "percentile", "comparisonToPrevious", "statistics",
    }
    assert set(v["analytics"]["anomalyDetails"]) == {
        "severity", "actualValue", "expectedValue", "deviation", "message", "detectedAt",
    }
    assert set(v["analytics"]["statistics"]) == {
        "standardDeviation", "minValue", "maxValue", "medianValue", "dataPointsCount", "completenessPercentage",
    }


def test_calculated_at_grows_with_period_end(base):
    for metric, rng in itertools.product(METRICS6, RANGES):
        rows = sorted(
            (k[3], v) for k, v in base.snapshots.items() if k[1] == metric and k[2] == rng
        )
        stamps = [v["calculatedAt"] for _, v in rows]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        for day, v in rows:
            # batch time (ms precision) minus one millisecond per day before the latest (11-19)
            assert v["calculatedAt"] == BATCH_MS - dt.timedelta(milliseconds=(nov(19) - day).days)
            assert v["expiresAt"] == v["calculatedAt"] + dt.timedelta(days=90)
    assert base.snapshots[(UH, "steps", "7day", nov(19))]["calculatedAt"] == BATCH_MS
    assert base.snapshots[(UH, "steps", "7day", nov(5))]["calculatedAt"] == dt.datetime(
        2025, 11, 19, 12, 0, 0, 109000, tzinfo=UTC
    )
    v = base.snapshots[(UH, "steps", "90day", nov(17))]
    assert v["analytics"]["anomalyDetails"]["detectedAt"] == v["calculatedAt"]


# ---------------------------------------------------------------------------------------------------
# Validation: one malformed document each; the valid snapshots must not change
# ---------------------------------------------------------------------------------------------------

BAD_ID = oid(9999)


def bad_doc(**overrides) -> dict:
    """A document for the worked-example user on the missing day 11-12, with one thing wrong."""
    d = doc(nov(12), {"steps": 9000, "weight": 70}, _id=BAD_ID)
    for key, value in overrides.items():
        if value is _ABSENT:
            d.pop(key, None)
        else:
            d[key] = value
    return d


_ABSENT = object()

DOC_LEVEL_CASES = [
    ("wearable-in-metrics", dict(metrics={"steps": 9000, "heartRate": 70}), "wearable_field", UH, nov(12)),
    ("wearable-top-level", dict(oxygenSaturation=97), "wearable_field", UH, nov(12)),
    ("wearable-bloodOxygen-zero", dict(metrics={"bloodOxygen": 0}), "wearable_field", UH, nov(12)),
    ("wearable-before-user-id", dict(userId="nope", bloodOxygen=95), "wearable_field", None, nov(12)),
    ("user-missing", dict(userId=_ABSENT), "invalid_user_id", None, nov(12)),
    ("user-null", dict(userId=None), "invalid_user_id", None, nov(12)),
    ("user-not-hex", dict(userId="not-an-object-id-at-all!"), "invalid_user_id", None, nov(12)),
    ("user-23-hex", dict(userId="65a00000000000000000001"), "invalid_user_id", None, nov(12)),
    ("user-int", dict(userId=12345), "invalid_user_id", None, nov(12)),
    ("user-before-date", dict(userId=None, date="2025-11-12"), "invalid_user_id", None, None),
    ("date-missing", dict(date=_ABSENT), "invalid_date", UH, None),
    ("date-null", dict(date=None), "invalid_date", UH, None),
    ("date-string", dict(date="2025-11-12T00:00:00Z"), "invalid_date", UH, None),
    ("date-plain-date", dict(date=dt.date(2025, 11, 12)), "invalid_date", UH, None),
    ("date-epoch-int", dict(date=1762905600000), "invalid_date", UH, None),
    ("date-future", dict(date=dt.datetime(2025, 11, 20)), "future_date", UH, nov(20)),
    ("date-future-aware", dict(date=dt.datetime(2025, 11, 19, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))),
     "future_date", UH, nov(20)),
    ("future-before-source", dict(date=dt.datetime(2025, 12, 1), source="fitbit"), "future_date", UH, dt.date(2025, 12, 1)),
    ("source-unknown", dict(source="fitbit"), "invalid_source", UH, nov(12)),
    ("source-case", dict(source="Manual"), "invalid_source", UH, nov(12)),
    ("source-number", dict(source=1), "invalid_source", UH, nov(12)),
    ("metrics-missing", dict(metrics=_ABSENT), "invalid_metrics", UH, nov(12)),
    ("metrics-null", dict(metrics=None), "invalid_metrics", UH, nov(12)),
    ("metrics-array", dict(metrics=[9000]), "invalid_metrics", UH, nov(12)),
    ("metrics-string", dict(metrics="steps=9000"), "invalid_metrics", UH, nov(12)),
]


@pytest.mark.parametrize(
    "overrides,reason,user,day", [c[1:] for c in DOC_LEVEL_CASES], ids=[c[0] for c in DOC_LEVEL_CASES]
)
def test_document_level_rejection(base, overrides, reason, user, day):
    result = run(worked_docs() + [bad_doc(**overrides)])
    assert result.rejections == [
        {"docId": str(BAD_ID), "userId": user, "day": day, "reason": reason, "field": None}
    ]
    assert result.snapshots == base.snapshots


VALUE_CASES = [
    ("steps", "9000", "invalid_value"),
    ("steps", True, "invalid_value"),
    ("steps", False, "invalid_value"),
    ("steps", math.nan, "invalid_value"),
    ("steps", math.inf, "invalid_value"),
    ("distance", -math.inf, "invalid_value"),
    ("calories", {"value": 5}, "invalid_value"),
    ("activeMinutes", [60], "invalid_value"),
    ("sleepHours", Decimal128("NaN"), "invalid_value"),
    ("hydration", Decimal128("Infinity"), "invalid_value"),
    ("steps", 100001, "out_of_range"),
    ("steps", -1, "out_of_range"),
    ("distance", 500.01, "out_of_range"),
    ("calories", Int64(10001), "out_of_range"),
    ("activeMinutes", 1441, "out_of_range"),
    ("heartPoints", 501, "out_of_range"),
    ("weight", 29.9, "out_of_range"),
    ("weight", 300.5, "out_of_range"),
    ("sleepHours", 24.01, "out_of_range"),
    ("hydration", Decimal128("10.5"), "out_of_range"),
]


@pytest.mark.parametrize("metric,value,reason", VALUE_CASES, ids=[f"{c[0]}-{c[1]!r}" for c in VALUE_CASES])
def test_value_level_rejection(base, metric, value, reason):
    # The document's only metric is the bad one, so it is kept but adds no value anywhere.
    result = run(worked_docs() + [bad_doc(metrics={metric: value})])
    assert result.rejections == [
        {"docId": str(BAD_ID), "userId": UH, "day": nov(12), "reason": reason, "field": metric}
    ]
    assert result.snapshots == base.snapshots


def test_null_wearable_and_null_metric_are_not_rejections(base):
    result = run(worked_docs() + [bad_doc(metrics={"heartRate": None, "steps": None}, heartRate=None)])
    assert result.rejections == []
    assert result.snapshots == base.snapshots


def test_bad_value_keeps_rest_of_document(base):
    result = run(worked_docs() + [bad_doc(metrics={"steps": "lots", "weight": 70})])
    assert result.rejections == [
        {"docId": str(BAD_ID), "userId": UH, "day": nov(12), "reason": "invalid_value", "field": "steps"}
    ]
    assert (UH, "steps", "7day", nov(12)) not in result.snapshots
    w = snap(result, "weight", "7day", nov(12))
    # W = 11-06…11-12: six 72.5s and the new 70.
    assert w["statistics"]["dataPointsCount"] == 7
    assert w["statistics"]["minValue"] == 70.0
    assert len(result.snapshots) == 252 + 3


def test_bounds_inclusive_number_types_and_sources():
    docs = [
        doc(nov(10), {"steps": 100000, "weight": 30, "sleepHours": 0, "hydration": Decimal128("10")}, user=V,
            source=None),
        doc(nov(11), {"steps": Int64(0), "weight": 300.0, "sleepHours": 24, "distance": Decimal128("2.5")},
            user=VH, source="googlefit"),
        doc(nov(12), {"steps": 5000, "activeMinutes": 1440, "heartPoints": 500, "calories": 10000.0}, user=V,
            source="import"),
    ]
    del docs[2]["source"]  # absent source counts as manual
    result = run(docs)
    assert result.rejections == []
    # steps: 100000, 0, 5000 → 7day mean 105000/3 = 35000
    s = snap(result, "steps", "7day", nov(12), user=VH)
    assert s["rollingAverage"] == 35000.0
    assert s["statistics"]["minValue"] == 0.0 and s["statistics"]["maxValue"] == 100000.0
    assert type(s["statistics"]["minValue"]) is float
    assert snap(result, "weight", "7day", nov(11), user=VH)["rollingAverage"] == 165.0
    assert snap(result, "distance", "7day", nov(11), user=VH)["rollingAverage"] == 2.5
    assert snap(result, "hydration", "7day", nov(10), user=VH)["rollingAverage"] == 10.0
    assert snap(result, "sleepHours", "7day", nov(11), user=VH)["rollingAverage"] == 12.0
    # a recorded 0 of sleepHours has a snapshot but does not qualify for a streak
    z = snap(result, "sleepHours", "7day", nov(10), user=VH)
    assert (z["streakDays"], z["longestStreak"], z["streakStartDate"]) == (0, 0, None)
    for metric in ("activeMinutes", "heartPoints", "calories"):
        assert (VH, metric, "90day", nov(12)) in result.snapshots


def test_date_is_the_utc_day_it_falls_in():
    plus5 = dt.timezone(dt.timedelta(hours=5))
    docs = [
        doc(nov(1), {"steps": 3000}, user=V, date=dt.datetime(2025, 11, 12, 2, 0, tzinfo=plus5)),  # 11-11 21:00Z
        doc(nov(1), {"steps": 4000}, user=V, date=dt.datetime(2025, 11, 10, 23, 59, 59, 999000)),  # naive → 11-10
        doc(nov(1), {"steps": 5000}, user=V, date=dt.datetime(2025, 11, 19, 23, 59, 59, 999000, tzinfo=UTC)),
    ]
    result = run(docs)
    assert result.rejections == []
    assert {k[3] for k in result.snapshots} == {nov(10), nov(11), nov(19)}
    assert snap(result, "steps", "7day", nov(11), user=VH)["rollingAverage"] == 3500.0


def test_uppercase_hex_user_id_is_the_same_user():
    docs = [doc(nov(10), {"steps": 3000}, user=V), doc(nov(11), {"steps": 5000}, user=VH.upper())]
    result = run(docs)
    assert snap(result, "steps", "7day", nov(11), user=VH)["rollingAverage"] == 4000.0


# ---------------------------------------------------------------------------------------------------
# Duplicates
# ---------------------------------------------------------------------------------------------------


def _steps_on(result, day, user=VH):
    return snap(result, "steps", "7day", day, user=user)["rollingAverage"]


def test_duplicate_later_updated_at_wins():
    minus5 = dt.timezone(dt.timedelta(hours=-5))
    older = doc(nov(10), {"steps": 5000}, user=V, _id=oid(2), updated=dt.datetime(2025, 11, 10, 12, 0))  # 12:00Z
    newer = doc(nov(10), {"steps": 6000}, user=V, _id=oid(1),
                updated=dt.datetime(2025, 11, 10, 8, 0, tzinfo=minus5))  # 13:00Z
    for docs in ([older, newer], [newer, older]):
        result = run(docs)
        assert _steps_on(result, nov(10)) == 6000.0
        assert result.rejections == [
            {"docId": str(oid(2)), "userId": VH, "day": nov(10), "reason": "duplicate_day", "field": None}
        ]
        assert len(result.snapshots) == 3


def test_duplicate_tie_goes_to_larger_id():
    t = dt.datetime(2025, 11, 10, 12, 0)
    a = doc(nov(10), {"steps": 5000}, user=V, _id=oid(0xB), updated=t)
    b = doc(nov(10), {"steps": 6000}, user=V, _id=oid(0xA), updated=t)
    for docs in ([a, b], [b, a]):
        result = run(docs)
        assert _steps_on(result, nov(10)) == 5000.0
        assert [r["docId"] for r in result.rejections] == [str(oid(0xA))]


def test_duplicate_missing_updated_at_is_oldest():
    a = doc(nov(10), {"steps": 5000}, user=V, _id=oid(1), updated=dt.datetime(2020, 1, 1))
    b = doc(nov(10), {"steps": 6000}, user=V, _id=oid(2))
    del b["updatedAt"]
    result = run([b, a])
    assert _steps_on(result, nov(10)) == 5000.0
    assert [(r["docId"], r["reason"]) for r in result.rejections] == [(str(oid(2)), "duplicate_day")]


def test_duplicate_winner_rejected_value_not_replaced():
    newer = doc(nov(10), {"steps": "oops", "weight": 70}, user=V, _id=oid(1), updated=dt.datetime(2025, 11, 11))
    older = doc(nov(10), {"steps": 5000, "weight": 80, "calories": "bad"}, user=V, _id=oid(2),
                updated=dt.datetime(2025, 11, 10))
    result = run([older, newer])
    assert not any(k[1] == "steps" for k in result.snapshots)
    assert snap(result, "weight", "7day", nov(10), user=VH)["rollingAverage"] == 70.0
    assert not any(k[1] == "calories" for k in result.snapshots)
    # the loser's bad calories are not counted: only the winner's value-level rejection and the duplicate
    assert sorted((r["docId"], r["reason"], r["field"]) for r in result.rejections) == [
        (str(oid(1)), "invalid_value", "steps"),
        (str(oid(2)), "duplicate_day", None),
    ]


def test_document_rejected_before_duplicate_rule():
    newer = doc(nov(10), {"steps": 6000, "heartRate": 80}, user=V, _id=oid(1), updated=dt.datetime(2025, 11, 11))
    older = doc(nov(10), {"steps": 5000}, user=V, _id=oid(2), updated=dt.datetime(2025, 11, 10))
    result = run([newer, older])
    assert _steps_on(result, nov(10)) == 5000.0
    assert [(r["docId"], r["reason"]) for r in result.rejections] == [(str(oid(1)), "wearable_field")]


def test_hex_string_and_object_id_user_are_duplicates():
    a = doc(nov(10), {"steps": 5000}, user=V, _id=oid(1), updated=dt.datetime(2025, 11, 10))
    b = doc(nov(10), {"steps": 6000}, user=VH, _id=oid(2), updated=dt.datetime(2025, 11, 11))
    result = run([a, b])
    assert _steps_on(result, nov(10)) == 6000.0
    assert [(r["docId"], r["reason"]) for r in result.rejections] == [(str(oid(1)), "duplicate_day")]


# ---------------------------------------------------------------------------------------------------
# Streaks
# ---------------------------------------------------------------------------------------------------


def days_back(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


def test_streak_capped_at_365_days():
    # steps 2000 on each of the 400 days TODAY−399 … TODAY
    docs = [doc(days_back(i), {"steps": 2000}, user=V) for i in range(400)]
    result = run(docs)
    assert len(result.snapshots) == 90 * 3  # history limit
    cases = {
        0: (365, 365, days_back(364)),  # run of 400 → 365, starts at D−364
        34: (365, 365, days_back(34 + 364)),  # run of 366 → 365, starts at D−364 = first day + 1
        35: (365, 365, days_back(399)),  # run of exactly 365
        50: (350, 350, days_back(399)),  # run of 350 from the first day
    }
    for back, (streak, longest, start) in cases.items():
        for rng in RANGES:
            a = snap(result, "steps", rng, days_back(back), user=VH)
            assert (a["streakDays"], a["longestStreak"], a["streakStartDate"]) == (streak, longest, midnight(start))
    a = snap(result, "steps", "90day", TODAY, user=VH)
    assert a["statistics"]["dataPointsCount"] == 90
    assert a["statistics"]["completenessPercentage"] == 100.0
    assert a["percentile"] == 50.0  # 100·(0 + ½·90)/90
    assert a["trend"] == "stable" and a["comparisonToPrevious"]["percentageChange"] == 0.0


def straddle_docs():
    run_a = range(355, 375)  # TODAY−374 … TODAY−355: 20 days, straddles TODAY−364
    run_b = range(92, 101)  # TODAY−100 … TODAY−92: 9 days
    run_c = range(0, 8)  # TODAY−7 … TODAY: 8 days
    docs = [doc(days_back(i), {"steps": 5000}, user=V) for i in (*run_a, *run_b, *run_c)]
    docs.append(doc(days_back(8), {"steps": 1000}, user=V))  # recorded, not > 1000: breaks run C
    return docs


def test_longest_streak_counts_only_the_part_of_a_straddling_run():
    result = run(straddle_docs())
    expected = {
        # D: (streak, longest, start). D's look-back is D−364 … D.
        0: (8, 10, days_back(7)),  # run A inside TODAY−364…: TODAY−364 … TODAY−355 = 10 > 9 > 8
        1: (7, 11, days_back(7)),  # look-back from TODAY−365: 11 days of run A
        8: (0, 18, None),  # 1000 steps does not qualify; look-back TODAY−372…: 18 days of run A
    }
    for back, (streak, longest, start) in expected.items():
        a = snap(result, "steps", "30day", days_back(back), user=VH)
        assert a["streakDays"] == streak
        assert a["longestStreak"] == longest
        assert a["streakStartDate"] == (None if start is None else midnight(start))


def test_streak_threshold_is_a_setting():
    result = run(straddle_docs(), params=ReferenceParams(steps_streak_threshold=999.0))
    a = snap(result, "steps", "7day", TODAY, user=VH)
    assert (a["streakDays"], a["streakStartDate"]) == (9, midnight(days_back(8)))


def test_zero_is_a_recorded_value_that_breaks_a_streak():
    docs = [doc(days_back(i), {"activeMinutes": v}, user=V) for i, v in ((3, 30), (2, 30), (1, 0), (0, 30))]
    result = run(docs)
    zero = snap(result, "activeMinutes", "7day", days_back(1), user=VH)
    assert (zero["streakDays"], zero["longestStreak"], zero["streakStartDate"]) == (0, 2, None)
    last = snap(result, "activeMinutes", "7day", TODAY, user=VH)
    assert (last["streakDays"], last["longestStreak"], last["streakStartDate"]) == (1, 2, midnight(TODAY))
    assert last["rollingAverage"] == 22.5  # (30 + 30 + 0 + 30) / 4
    assert last["statistics"]["minValue"] == 0.0
    assert last["percentile"] == 62.5  # 100·(1 + ½·3)/4


# ---------------------------------------------------------------------------------------------------
# History limit
# ---------------------------------------------------------------------------------------------------


def test_history_days_limit_per_metric():
    docs = [doc(days_back(i), {"steps": 3000}, user=V) for i in range(120)]  # TODAY−119 … TODAY
    docs += [doc(days_back(i), {"weight": 70}, user=V) for i in (125, 150, 200)]
    result = run(docs)
    steps_days = {k[3] for k in result.snapshots if k[1] == "steps"}
    assert steps_days == {days_back(i) for i in range(90)}
    # weight's latest day is TODAY−125, so its 90-day history reaches back past TODAY−200
    weight_days = {k[3] for k in result.snapshots if k[1] == "weight"}
    assert weight_days == {days_back(125), days_back(150), days_back(200)}
    assert len(result.snapshots) == 90 * 3 + 3 * 3
    # the oldest snapshot still sees older values: 90day window TODAY−178 … TODAY−89 holds TODAY−119 … TODAY−89
    a = snap(result, "steps", "90day", days_back(89), user=VH)
    assert a["statistics"]["dataPointsCount"] == 31
    assert a["statistics"]["completenessPercentage"] == 34.44  # 3100/90 = 34.444…
    b = snap(result, "steps", "30day", days_back(89), user=VH)
    assert b["statistics"]["dataPointsCount"] == 30
    assert b["comparisonToPrevious"]["absoluteChange"] == 0.0  # P = TODAY−148 … TODAY−119: one 3000


def test_history_days_setting_on_worked_example(base):
    five = run(worked_docs(), params=ReferenceParams(history_days=5))
    assert {k[3] for k in five.snapshots} == {nov(d) for d in range(15, 20)}
    assert len(five.snapshots) == 5 * 6 * 3
    for key, value in five.snapshots.items():
        assert value == base.snapshots[key]  # older days still feed windows, baselines and streaks
    eight = run(worked_docs(), params=ReferenceParams(history_days=8))
    assert {k[3] for k in eight.snapshots} == {nov(d) for d in range(13, 20)}  # 11-12 missing → 7 days


# ---------------------------------------------------------------------------------------------------
# Rounding and anomaly edge cases
# ---------------------------------------------------------------------------------------------------


def test_round2_half_away_from_zero():
    assert round2(0.625) == 0.63  # Python's round() would give 0.62
    assert round2(-2.125) == -2.13
    assert round2(2.675) == 2.68  # shortest decimal form "2.675", not the binary 2.67499…
    assert round2(1.004999) == 1.0


def test_percentile_0_625_rounds_up():
    # 80 days TODAY−79 … TODAY; TODAY has the unique minimum.
    docs = [doc(days_back(i), {"steps": 5000}, user=V) for i in range(1, 80)]
    docs.append(doc(TODAY, {"steps": 100}, user=V))
    result = run(docs)
    assert snap(result, "steps", "90day", TODAY, user=VH)["percentile"] == 0.63  # 100·½/80 = 0.625
    assert snap(result, "steps", "30day", TODAY, user=VH)["percentile"] == 1.67  # 100·½/30 = 1.666…
    assert snap(result, "steps", "7day", TODAY, user=VH)["percentile"] == 7.14  # 100·½/7 = 7.142…
    a = snap(result, "steps", "90day", TODAY, user=VH)
    assert a["statistics"]["completenessPercentage"] == 88.89  # 8000/90 = 88.888…
    # baseline: thirty 5000s, sd 0 → denominator 50; z = (100 − 5000)/50 = −98
    d = a["anomalyDetails"]
    assert (d["severity"], d["deviation"], d["expectedValue"]) == ("high", -98.0, 5000.0)
    assert d["message"] == "Steps 98% below your 30-day average"


def calorie_docs(baseline_days: int):
    docs = [doc(days_back(i), {"calories": 800}, user=V) for i in range(1, baseline_days + 1)]
    docs.append(doc(TODAY, {"calories": 783}, user=V))
    return docs


def test_deviation_minus_2_125_rounds_away_from_zero():
    # 7 baseline values of 800: mean 800, sd 0 → denominator 8; z = −17/8 = −2.125 exactly
    result = run(calorie_docs(7))
    a = snap(result, "calories", "7day", TODAY, user=VH)
    assert a["anomalyDetected"] is True
    d = a["anomalyDetails"]
    assert d["deviation"] == -2.13
    assert d["severity"] == "low"  # |z| < 2.5
    assert (d["actualValue"], d["expectedValue"]) == (783.0, 800.0)
    assert d["message"] == "Calories 2% below your 30-day average"  # 17/800·100 = 2.125 → 2
    for rng in RANGES:  # the same anomaly for every range of the day
        assert snap(result, "calories", rng, TODAY, user=VH)["anomalyDetails"] == {
            **d, "detectedAt": result.snapshots[(VH, "calories", rng, TODAY)]["calculatedAt"],
        }


def test_anomaly_needs_min_points_and_threshold_is_a_setting():
    assert snap(run(calorie_docs(6)), "calories", "7day", TODAY, user=VH)["anomalyDetected"] is False
    strict = run(calorie_docs(7), params=ReferenceParams(anomaly_threshold=2.2))
    assert snap(strict, "calories", "7day", TODAY, user=VH)["anomalyDetected"] is False


def test_medium_severity():
    # baseline 7 × 1000 → denominator 10; x = 973 → z = −2.7
    docs = [doc(days_back(i), {"calories": 1000}, user=V) for i in range(1, 8)]
    docs.append(doc(TODAY, {"calories": 973}, user=V))
    d = snap(run(docs), "calories", "30day", TODAY, user=VH)["anomalyDetails"]
    assert (d["severity"], d["deviation"]) == ("medium", -2.7)


# ---------------------------------------------------------------------------------------------------
# Trend
# ---------------------------------------------------------------------------------------------------


def test_trend_down_improvement_and_clamp():
    docs = []
    for i in range(14):  # TODAY−13 … TODAY−7 previous week, TODAY−6 … TODAY this week
        recent = i <= 6
        docs.append(doc(days_back(i), {
            "weight": 70 if recent else 80,
            "sleepHours": 7 if recent else 8,
            "steps": 20000 if recent else 100,
            "distance": 5 if recent else 0,
        }, user=V))
    result = run(docs)
    w = snap(result, "weight", "7day", TODAY, user=VH)
    assert (w["trend"], w["trendPercentage"]) == ("down", -12.5)  # 100·(70 − 80)/80
    assert w["comparisonToPrevious"] == {"absoluteChange": -10.0, "percentageChange": -12.5, "isImprovement": None}
    s = snap(result, "sleepHours", "7day", TODAY, user=VH)
    assert (s["trend"], s["trendPercentage"], s["comparisonToPrevious"]["isImprovement"]) == ("down", -12.5, False)
    st = snap(result, "steps", "7day", TODAY, user=VH)
    assert st["trend"] == "up"
    assert st["trendPercentage"] == 1000.0  # 100·19900/100 = 19900, clamped
    assert st["comparisonToPrevious"]["percentageChange"] == 19900.0
    assert st["comparisonToPrevious"]["isImprovement"] is True
    d = snap(result, "distance", "7day", TODAY, user=VH)  # mean(P) = 0 → percentageChange 0
    assert (d["trend"], d["trendPercentage"]) == ("stable", 0.0)
    assert d["comparisonToPrevious"] == {"absoluteChange": 5.0, "percentageChange": 0.0, "isImprovement": None}
