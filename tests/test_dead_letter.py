"""Dead-letter queue: exact round trip, private durable files, retry semantics, corrupt lines, real server."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat

import pytest
from bson import Int64, ObjectId

from health_analytics.dead_letter import DeadLetterError, DeadLetterQueue
from health_analytics.mongo_client import is_local_server
from health_analytics.mongo_sink import WriteOutcome, write_documents

UTC = dt.timezone.utc


def snapshot(n: int = 0) -> dict:
    """A realistic analytics document, with an anomaly (datetime inside a nested dict), None, int vs float."""
    return {
        "_id": ObjectId(f"{n + 1:024x}"),
        "userId": ObjectId("65a000000000000000000001"),
        "metricType": "steps",
        "timeRange": "7day",
        "periodEnd": dt.datetime(2025, 11, 17, tzinfo=UTC),
        "calculatedAt": dt.datetime(2025, 11, 19, 12, 0, 0, 123000, tzinfo=UTC),
        "expiresAt": dt.datetime(2026, 2, 17, 12, 0, tzinfo=UTC),
        "isOutdated": False,
        "analytics": {
            "rollingAverage": 10333.33,
            "trend": "up",
            "trendPercentage": 25.25,
            "anomalyDetected": True,
            "anomalyDetails": {
                "severity": "high",
                "zScore": 11.35,
                "expected": 8500.0,
                "actual": 18000,
                "detectedAt": dt.datetime(2025, 11, 17, 0, 0, 0, 5000, tzinfo=UTC),
            },
            "streakCount": 5,
            "streakStartDate": None,
            "percentile": 91.67,
            "statistics": {"standardDeviation": 1080.12, "median": 8500.0, "dataPointsCount": 7, "completeness": 100.0},
            "asInt": 7,
            "asFloat": 7.0,
            "big": 2**40,
            "list": [1, 1.0, None, "x"],
        },
    }


def types_of(value):
    """The value with every leaf replaced by (type, value): equality alone would accept 7 == 7.0.

    An int beyond 32 bits comes back as bson.Int64, an int subclass stored as the same BSON int64."""
    if isinstance(value, dict):
        return {k: types_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [types_of(v) for v in value]
    return (int if type(value) is Int64 else type(value), value)


@pytest.fixture
def dlq(tmp_path):
    return DeadLetterQueue(tmp_path / "dlq")


def test_round_trip_is_exact(dlq):
    doc = snapshot()
    path = dlq.write([(doc, "write error 11000: E11000 duplicate key")], batch_id="b1")
    [(back, error)] = list(dlq.read(path))
    assert back == doc
    assert types_of(back) == types_of(doc)
    assert type(back["analytics"]["asInt"]) is int and type(back["analytics"]["asFloat"]) is float
    assert [type(v) for v in back["analytics"]["list"]] == [int, float, type(None), str]
    assert back["analytics"]["anomalyDetails"]["detectedAt"].tzinfo is not None
    assert back["analytics"]["anomalyDetails"]["detectedAt"].utcoffset() == dt.timedelta(0)
    assert list(back) == list(doc)  # field order kept
    assert error == "write error 11000: E11000 duplicate key"


def test_file_and_directory_modes_and_name(dlq):
    before = dt.datetime.now(UTC).replace(microsecond=0)
    path = dlq.write([(snapshot(), "boom")], batch_id="batch 42/x", part=3)
    after = dt.datetime.now(UTC)
    assert stat.S_IMODE(os.stat(dlq.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    m = re.fullmatch(r"dlq-(\d{8}T\d{6}\.\d{3}Z)-batch_42_x-p3\.jsonl", path.name)
    assert m, path.name
    created = dt.datetime.strptime(m[1], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    assert before <= created <= after
    assert path.parent == dlq.directory
    assert [p.name for p in dlq.directory.iterdir()] == [path.name]  # no temp file left behind
    assert dlq.summary()[0].created == created


def test_write_nothing_creates_nothing(dlq):
    assert dlq.write([], batch_id="b") is None
    assert dlq.write(iter(()), batch_id="b") is None
    assert not dlq.directory.exists()
    assert dlq.files() == [] and dlq.summary() == [] and dlq.pending_records() == 0


def test_same_batch_same_millisecond_does_not_overwrite(dlq):
    a = dlq.write([(snapshot(1), "e")], batch_id="b")
    b = dlq.write([(snapshot(2), "e")], batch_id="b")
    assert a != b and set(dlq.files()) == {a, b}
    assert dlq.pending_records() == 2


def test_summary_counts_and_groups_errors(dlq):
    first = dlq.write([(snapshot(i), "timeout" if i % 3 else "dup key") for i in range(7)], batch_id="a")
    second = dlq.write([(snapshot(10), "timeout")], batch_id="b", part=0)
    infos = dlq.summary()
    assert [i.path for i in infos] == [first, second] == dlq.files()
    assert infos[0].records == 7 and infos[0].errors == {"dup key": 3, "timeout": 4}
    assert infos[1].records == 1 and infos[1].errors == {"timeout": 1}
    assert all(i.created.tzinfo is UTC for i in infos)
    assert dlq.pending_records() == 8


def test_retry_keeps_exactly_the_still_failed(dlq):
    docs = [snapshot(i) for i in range(5)]
    path = dlq.write([(d, "old error") for d in docs], batch_id="b")
    seen = []

    def flaky(batch):
        seen.append(batch)
        failing = {docs[1]["_id"], docs[3]["_id"]}
        return WriteOutcome(inserted=3, failed=[(d, f"new error {d['_id']}") for d in batch if d["_id"] in failing])

    report = dlq.retry(None, flaky)
    assert seen == [docs]
    assert (report.files, report.written, report.still_failed) == (1, 3, 2)
    assert report.processed == [] and report.remaining == [path]
    assert dlq.files() == [path] and not (dlq.directory / "processed").exists()
    assert list(dlq.read(path)) == [(docs[1], f"new error {docs[1]['_id']}"), (docs[3], f"new error {docs[3]['_id']}")]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in dlq.directory.iterdir()) == [path.name]

    report = dlq.retry([path], lambda batch: WriteOutcome(updated=len(batch)))
    assert (report.files, report.written, report.still_failed) == (1, 2, 0)
    moved = dlq.directory / "processed" / path.name
    assert report.processed == [moved] and report.remaining == []
    assert dlq.files() == [] and dlq.pending_records() == 0
    assert stat.S_IMODE(os.stat(moved.parent).st_mode) == 0o700
    assert [d for d, _ in dlq.read(moved)] == [docs[1], docs[3]]


def test_retry_accepts_bare_names_and_refuses_foreign_paths(dlq, tmp_path):
    path = dlq.write([(snapshot(), "e")], batch_id="b")
    report = dlq.retry([path.name], lambda batch: WriteOutcome(inserted=len(batch)))
    assert report.written == 1
    with pytest.raises(ValueError):
        dlq.retry([report.processed[0]], lambda batch: WriteOutcome())
    with pytest.raises(ValueError):
        dlq.retry([tmp_path / "elsewhere.jsonl"], lambda batch: WriteOutcome())


def test_write_callable_raising_leaves_file_untouched(dlq):
    path = dlq.write([(snapshot(), "e")], batch_id="b")
    content = path.read_bytes()

    def down(batch):
        raise ConnectionError("server down")

    with pytest.raises(ConnectionError):
        dlq.retry(None, down)
    assert dlq.files() == [path] and path.read_bytes() == content


@pytest.mark.parametrize("bad", [
    b'{"snapshot": {"name": "Secret Patient", "hr": 190',  # truncated
    b'{"snapshot": {"_id": {"$oid": "Secret Patient"}}, "error": "e"}',  # bson's own error would quote it
    b'["Secret Patient"]',  # valid JSON, not a record
])
def test_corrupt_line_names_file_and_line_not_content(dlq, bad):
    path = dlq.write([(snapshot(i), "e") for i in range(3)], batch_id="b")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + bad + b"\n" + lines[1] + lines[2])
    calls = []
    with pytest.raises(DeadLetterError) as info:
        dlq.retry(None, calls.append)
    message = str(info.value)
    assert str(path) in message and "line 2" in message and info.value.line == 2
    assert "Secret" not in message and "Patient" not in message
    assert info.value.__suppress_context__
    assert calls == []  # nothing written, nothing dropped: the file is untouched
    assert path.read_bytes().count(b"\n") == 4 and dlq.files() == [path]
    with pytest.raises(DeadLetterError):
        dlq.summary()
    assert dlq.pending_records() == 4


@pytest.mark.db
def test_retry_to_real_server_is_idempotent(dlq, db):
    base = snapshot()
    docs = []
    for i in range(2500):
        d = {**base, "_id": ObjectId(f"{i + 1:024x}"), "userId": ObjectId(f"{i // 10 + 1:024x}")}
        d["analytics"] = {**base["analytics"], "streakCount": i}
        docs.append(d)
    path = dlq.write(((d, "gave up after 5 attempts: AutoReconnect") for d in docs), batch_id="2025-11-19T12", part=1)
    assert dlq.pending_records() == 2500

    # As the sink does: on the local server every replace scans the collection, so it inserts then swaps.
    swap = is_local_server(db.client)

    def write(batch):
        return write_documents(db["analytics"], batch, swap=swap, bulk_size=5000 if swap else 1000)

    report = dlq.retry(None, write)
    assert (report.files, report.written, report.still_failed) == (1, 2500, 0)
    moved = dlq.directory / "processed" / path.name
    assert report.processed == [moved] and dlq.files() == []
    assert db["analytics"].count_documents({}) == 2500
    assert db["analytics"].find_one({"_id": docs[1234]["_id"]}) == docs[1234]

    shutil.copy2(moved, path)  # the same file pending again, e.g. an operator re-running it
    report = dlq.retry(None, write)
    assert (report.written, report.still_failed) == (2500, 0)
    assert db["analytics"].count_documents({}) == 2500
    assert dlq.files() == [] and moved.exists()
