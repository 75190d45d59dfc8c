"""Which days an incremental batch rewrites (transforms/reconcile.py): the cost must follow the change.

A new latest day pushes the oldest day out of the history window; that day's snapshots are deleted, but
its value still counts in the later days' windows, so nothing else is rewritten. A value that vanished
changes the windows after it, so its (user, metric) is rewritten from that day on.
"""

from __future__ import annotations

from pyspark.sql import functions as F

from health_analytics.transforms.params import AnalyticsParams
from health_analytics.transforms.reconcile import days_to_write, snapshot_days, stale_days, vanished_days

PARAMS = AnalyticsParams(history_days=90)
USER = "655eed000000000000000001"


def _values(spark, days):
    return spark.createDataFrame([(USER, "steps", d, 5000.0) for d in days], "userId string, metricType string, day int, value double")


def _stored(spark, days):
    return spark.createDataFrame([(USER, "steps", d) for d in days], "userId string, metricType string, day int")


def _written(spark, values_days, stored_days, first_day):
    values = _values(spark, values_days)
    existing = _stored(spark, stored_days)
    daily = snapshot_days(values, PARAMS).withColumn("latest_day", F.lit(max(values_days)))  # the window's rows
    stale = stale_days(existing, values, PARAMS)
    written = days_to_write(daily, existing, first_day, vanished_days(stale, values))
    return sorted(r.day for r in written.collect()), sorted(r.day for r in stale.collect())


def test_a_new_latest_day_writes_only_that_day(spark):
    # Stored: the window 1..90 of the previous batch. Day 91 arrives: day 1 ages out (deleted, not a rewrite floor).
    written, stale = _written(spark, range(1, 92), range(1, 91), first_day=91)
    assert stale == [1]
    assert written == [91]


def test_a_vanished_value_rewrites_the_days_after_it(spark):
    # Day 50's value turned invalid (not in the values any more) in the same batch as day 91 arrived.
    days = [d for d in range(1, 92) if d != 50]
    written, stale = _written(spark, days, range(1, 91), first_day=91)
    assert stale == [1, 50]
    assert written == list(range(51, 92))


def test_a_vanished_value_below_the_window_still_rewrites_the_window(spark):
    # Day 1 (stored, then aged out) had its value removed: the days within 90 days after it change.
    days = list(range(2, 92))
    written, stale = _written(spark, days, range(1, 91), first_day=91)
    assert stale == [1]
    assert written == list(range(2, 92))
