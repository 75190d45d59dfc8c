"""The application checkpoint through Hadoop's FileSystem: round trip, atomic replacement, URIs."""

from __future__ import annotations

import datetime as dt

import pytest

from health_analytics.checkpoint import FILE_NAME, CheckpointError, TimestampCheckpoint, format_timestamp, parse_timestamp

UTC = dt.timezone.utc


def test_timestamps_are_iso_8601_utc_with_milliseconds():
    moment = dt.datetime(2026, 12, 3, 19, 46, 36, 929_123, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-12-03T19:46:36.929Z"
    assert parse_timestamp("2026-12-03T19:46:36.929Z\n") == dt.datetime(2026, 12, 3, 19, 46, 36, 929_000, tzinfo=UTC)
    assert parse_timestamp("2026-12-03T20:46:36+01:00") == dt.datetime(2026, 12, 3, 19, 46, 36, tzinfo=UTC)


def test_missing_then_written_then_replaced_leaves_one_file_and_no_temporaries(spark, tmp_path):
    checkpoint = TimestampCheckpoint(spark, str(tmp_path / "ck"))
    assert checkpoint.read() is None
    first = dt.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    checkpoint.write(first)
    assert (tmp_path / "ck" / FILE_NAME).read_text() == "2026-01-02T03:04:05.678Z\n"
    second = dt.datetime(2026, 1, 3, tzinfo=UTC)
    checkpoint.write(second)
    assert TimestampCheckpoint(spark, str(tmp_path / "ck")).read() == second  # a new process reads it back
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert [n for n in names if not n.endswith(".crc")] == [FILE_NAME]


def test_a_hadoop_uri_works_the_same(spark, tmp_path):
    checkpoint = TimestampCheckpoint(spark, f"file://{tmp_path}/uri-ck")
    moment = dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    checkpoint.write(moment)
    assert checkpoint.location == f"file:{tmp_path}/uri-ck/{FILE_NAME}"
    assert parse_timestamp((tmp_path / "uri-ck" / FILE_NAME).read_text()) == moment


def test_a_corrupt_checkpoint_is_a_clear_error(spark, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / FILE_NAME).write_text("yesterday-ish")
    with pytest.raises(CheckpointError, match="does not hold an ISO-8601 timestamp"):
        TimestampCheckpoint(spark, str(tmp_path / "bad")).read()
