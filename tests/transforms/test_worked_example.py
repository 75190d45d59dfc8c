"""The Spark engine against SPEC §2's worked example: SPEC's own figures, then the reference, field by field."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from health_analytics.reference import compute_reference
from health_analytics.verification import compare_snapshots
from tests.transforms.support import run_engine
from tests.worked_example import BATCH, METRICS6, RANGES, TODAY, UH, UTC, WORKED_STEPS, WORKED_TABLE, midnight, nov, worked_docs


@pytest.fixture(scope="module")
def engine(spark):
    snapshots, rejections = run_engine(spark, worked_docs(), today=TODAY, batch_time=BATCH)
    return snapshots, rejections


def test_252_snapshots_with_the_expected_keys(engine):
    snapshots, rejections = engine
    assert len(snapshots) == 252
    assert set(snapshots) == {(UH, m, r, nov(d)) for m, r, d in itertools.product(METRICS6, RANGES, WORKED_STEPS)}
    assert rejections == []


@pytest.mark.parametrize(
    "metric,rng,day,avg,trend,trend_pct,anomaly,streaks,percentile,stats",
    WORKED_TABLE,
    ids=[f"{r[0]}-{r[1]}-11-{r[2]}" for r in WORKED_TABLE],
)
def test_spec_table_row(engine, metric, rng, day, avg, trend, trend_pct, anomaly, streaks, percentile, stats):
    a = engine[0][(UH, metric, rng, nov(day))]["analytics"]
    assert round(a["rollingAverage"], 2) == avg
    assert a["trend"] == trend
    assert round(a["trendPercentage"], 2) == trend_pct
    assert a["anomalyDetected"] is (anomaly is not None)
    if anomaly is None:
        assert "anomalyDetails" not in a
    else:
        severity, z, expected = anomaly
        assert (a["anomalyDetails"]["severity"], a["anomalyDetails"]["deviation"]) == (severity, z)
        assert a["anomalyDetails"]["expectedValue"] == pytest.approx(expected, rel=1e-12)
    assert (a["streakDays"], a["longestStreak"], a["streakStartDate"]) == (streaks[0], streaks[1], midnight(nov(streaks[2])))
    assert a["percentile"] == percentile
    sd, median, count, completeness = stats
    s = a["statistics"]
    assert round(s["standardDeviation"], 2) == sd
    assert (s["medianValue"], s["dataPointsCount"], s["completenessPercentage"]) == (median, count, completeness)


def test_spike_message_and_detected_at(engine):
    snapshots, _ = engine
    doc = snapshots[(UH, "steps", "7day", nov(17))]
    details = doc["analytics"]["anomalyDetails"]
    assert details["message"] == "Steps 112% above your 30-day average"
    assert details["actualValue"] == 18000.0
    assert details["detectedAt"] == doc["calculatedAt"]


def test_types_dates_and_calculated_at_order(engine):
    snapshots, _ = engine
    batch_ms = BATCH.replace(microsecond=BATCH.microsecond // 1000 * 1000)
    for (user, metric, rng, day), doc in snapshots.items():
        assert doc["periodEnd"] == dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
        # latest periodEnd (11-19) gets the batch time; each day before it one millisecond less
        assert doc["calculatedAt"] == batch_ms - dt.timedelta(milliseconds=(nov(19) - day).days)
        assert doc["expiresAt"] == doc["calculatedAt"] + dt.timedelta(days=90)
        assert type(doc["analytics"]["statistics"]["dataPointsCount"]) is int
        assert doc["metadata"]["dataPointsProcessed"] == doc["analytics"]["statistics"]["dataPointsCount"]
    flagged = {(k[1], k[3]) for k, d in snapshots.items() if d["analytics"]["anomalyDetected"]}
    assert flagged == {(m, nov(17)) for m in ("steps", "distance", "calories", "activeMinutes")}


def test_equals_the_reference_field_by_field(engine):
    reference = compute_reference(worked_docs(), today=TODAY, batch_time=BATCH)
    assert compare_snapshots(reference.snapshots, engine[0]) == []
