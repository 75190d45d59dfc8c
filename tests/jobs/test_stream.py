"""The streaming job in-process against the real local server: incremental polls equal a full
recomputation, out-of-order commits are not missed, empty polls start no Spark job, events reach a
real HTTP backend even after it was down, and the endpoints answer as specified."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, Phase, example, given, settings as hsettings, strategies as st
from prometheus_client.parser import text_string_to_metric_families

from health_analytics.event_outbox import EventOutbox
from health_analytics.event_sender import EventSender
from health_analytics.health_server import HealthServer
from health_analytics.jobs.stream import StreamService
from health_analytics.mongo_client import connect
from health_analytics.reference import compute_reference
from health_analytics.seed import SeedPlan, seed_collection, user_id
from health_analytics.service_metrics import ServiceMetrics
from health_analytics.settings import Settings
from health_analytics.verification import TIME_DEPENDENT_FIELDS, compare_snapshots, index_snapshots
from tests.http_receiver import Receiver, free_port

pytestmark = pytest.mark.db
UTC = dt.timezone.utc
TODAY = dt.datetime.now(UTC).date()
SEED = 21
TOKEN = "stream-t0ken-never-printed"


def _settings(uri: str, db_name: str, root: Path, **extra: object) -> Settings:
    return Settings(_env_file=None, MONGO_URI=uri, MONGO_DB_NAME=db_name, DLQ_DIRECTORY=str(root / "dlq"),
                    CHECKPOINT_LOCATION=str(root / "checkpoint"), OUTBOX_DIRECTORY=str(root / "outbox"),
                    SPARK_MASTER="local[2]", MONGO_WRITE_ATTEMPTS=2, BATCH_INTERVAL_SECONDS=1, **extra)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), UTC)


def _doc(user: ObjectId, day: dt.date, steps: float, updated: dt.datetime) -> dict:
    return {"_id": ObjectId(), "userId": user, "date": _midnight(day), "source": "manual",
            "metrics": {"steps": steps, "calories": 1800 + steps / 10, "weight": 70.5},
            "createdAt": updated, "updatedAt": updated}


def _put(coll, doc: dict) -> None:
    """Insert the day's document, or rewrite it when the user already has one (unique userId+date)."""
    fields = {k: v for k, v in doc.items() if k != "_id"}
    coll.update_one({"userId": doc["userId"], "date": doc["date"]}, {"$set": fields}, upsert=True)


def _assert_equals_full_recomputation(db) -> None:
    docs = list(db["healthmetrics"].find({}))
    expected = compute_reference(docs, today=TODAY, batch_time=dt.datetime.now(UTC)).snapshots
    stored = index_snapshots(db["analytics"].find({}))
    assert db["analytics"].count_documents({}) == len(stored)  # no duplicate keys
    assert set(stored) == set(expected)
    assert compare_snapshots(expected, stored, ignore=TIME_DEPENDENT_FIELDS) == []
    # What the backend reads as "the latest": the newest calculatedAt must be on the newest periodEnd.
    newest: dict[tuple, dict] = {}
    for doc in db["analytics"].find({}, {"userId": 1, "metricType": 1, "timeRange": 1, "periodEnd": 1, "calculatedAt": 1}):
        key = (doc["userId"], doc["metricType"], doc["timeRange"])
        if key not in newest or doc["calculatedAt"] > newest[key]["calculatedAt"]:
            newest[key] = doc
    latest_day = {}
    for (user, metric, _range, day) in expected:
        k = (ObjectId(user), metric)
        latest_day[k] = max(latest_day.get(k, day), day)
    for (user, metric, _range), doc in newest.items():
        assert doc["periodEnd"].date() == latest_day[(user, metric)], (user, metric, _range)


@contextmanager
def _fresh_db(mongo_client):
    name = f"s_{uuid.uuid4().hex[:12]}"
    try:
        yield mongo_client[name], name
    finally:
        mongo_client.drop_database(name)


# ---- incremental equals full ----------------------------------------------------------------------

USERS = [user_id(SEED, i) for i in range(3)]
OPS = st.tuples(
    st.sampled_from(["new_day", "late_day", "change", "invalid_value", "invalid_document", "latest_invalid"]),
    st.integers(0, len(USERS) - 1),
    st.integers(0, 10_000),
)


# No shrinking: each example is a few Spark batches, and a failure prints its sequence as generated.
@hsettings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
           database=None)
@given(steps=st.lists(st.lists(OPS, min_size=1, max_size=3), min_size=1, max_size=3))
@example(steps=[[("latest_invalid", 0, 0)], [("new_day", 0, 1), ("latest_invalid", 1, 2)]])  # the window moves back
@example(steps=[[("invalid_document", 1, 7), ("new_day", 2, 3)]])  # a day vanishes while another user moves on
def test_any_sequence_of_incremental_polls_equals_a_full_recomputation(spark, mongo_client, mongo_uri, steps):
    """Random inserts and updates (new days, late days weeks back, changed values, values and whole
    documents turning invalid, the latest day turning invalid), one to three per poll."""
    with _fresh_db(mongo_client) as (db, name), tempfile.TemporaryDirectory() as tmp:
        start = TODAY - dt.timedelta(days=12)
        seed_collection(db["healthmetrics"], SeedPlan(users=3, days=30, seed=SEED, today=start,
                                                       now=dt.datetime.now(UTC) - dt.timedelta(hours=1)))
        service = StreamService(spark, _settings(mongo_uri, name, Path(tmp)))
        assert service.poll_once().outcome == "ok"
        coll = db["healthmetrics"]
        for step in steps:
            for kind, u, n in step:
                user = USERS[u]
                now = dt.datetime.now(UTC)
                mine = sorted(coll.find({"userId": user, "date": {"$type": "date"}}), key=lambda d: d["date"])
                if kind == "new_day":
                    last = mine[-1]["date"].date() if mine else start
                    if last < TODAY:
                        _put(coll, _doc(user, last + dt.timedelta(days=1), 3000 + n, now))
                elif kind == "late_day":
                    _put(coll, _doc(user, start - dt.timedelta(days=35 + n % 20), 500 + n, now))
                elif kind == "change" and mine:
                    target = mine[n % len(mine)]
                    coll.update_one({"_id": target["_id"]}, {"$set": {"metrics.steps": 100 + n, "updatedAt": now}})
                elif kind == "invalid_value" and mine:
                    target = mine[n % len(mine)]
                    coll.update_one({"_id": target["_id"]}, {"$set": {"metrics.steps": -5, "updatedAt": now}})
                elif kind == "invalid_document" and mine:
                    target = mine[n % len(mine)]
                    coll.update_one({"_id": target["_id"]}, {"$set": {"date": f"not a date {ObjectId()}", "updatedAt": now}})
                elif kind == "latest_invalid" and mine:
                    coll.update_one({"_id": mine[-1]["_id"]}, {"$set": {"source": "unknown-source", "updatedAt": now}})
            time.sleep(0.005)  # updatedAt values of the next poll's writes are later
            result = service.poll_once()
            assert result.outcome in ("ok", "empty"), result.error
        _assert_equals_full_recomputation(db)


# ---- out-of-order commits -------------------------------------------------------------------------

def test_a_change_committed_after_a_later_one_within_the_overlap_is_not_missed(spark, db, db_name, mongo_uri, tmp_path):
    """Writer A stamps updatedAt first but commits after writer B, whose change a poll has already
    checkpointed: the next poll still sees A's document, because it looks back over the overlap."""
    user = ObjectId()
    base = dt.datetime.now(UTC) - dt.timedelta(seconds=30)
    coll = db["healthmetrics"]
    coll.insert_many([_doc(user, TODAY - dt.timedelta(days=i), 4000 + i, base) for i in range(1, 10)])
    service = StreamService(spark, _settings(mongo_uri, db_name, tmp_path, POLL_OVERLAP_SECONDS=60))
    assert service.poll_once().outcome == "ok"

    stamped_a = dt.datetime.now(UTC)  # A takes its timestamp...
    time.sleep(0.02)
    b = _doc(user, TODAY, 9000, dt.datetime.now(UTC))  # ...B takes a later one and commits first
    coll.insert_one(b)
    first = service.poll_once()
    assert first.outcome == "ok" and first.changed_documents == 1
    assert service.checkpoint.read() == b["updatedAt"].replace(microsecond=b["updatedAt"].microsecond // 1000 * 1000)

    late = coll.find_one({"userId": user, "date": _midnight(TODAY - dt.timedelta(days=3))})
    coll.update_one({"_id": late["_id"]}, {"$set": {"metrics.steps": 123, "updatedAt": stamped_a}})  # A commits now
    second = service.poll_once()
    assert second.outcome == "ok" and second.changed_documents == 1  # only A: B is remembered, not redone
    stored = db["analytics"].find_one({"userId": user, "metricType": "steps", "timeRange": "7day",
                                       "periodEnd": _midnight(TODAY - dt.timedelta(days=3))})
    assert stored["analytics"]["statistics"]["minValue"] == 123
    assert service.poll_once().outcome == "empty"  # and nothing is processed twice
    _assert_equals_full_recomputation(db)


def test_a_new_day_writes_only_its_snapshots_and_deletes_the_day_that_aged_out(spark, db, db_name, mongo_uri, tmp_path):
    """The cost of a poll follows the change: with a full 90-day window stored, one new day writes that
    day's 3 metrics × 3 ranges and deletes the oldest day's, nothing else (and still equals a full run)."""
    user = ObjectId()
    start = dt.datetime.now(UTC) - dt.timedelta(seconds=30)
    coll = db["healthmetrics"]
    coll.insert_many([_doc(user, TODAY - dt.timedelta(days=i), 4000 + i, start) for i in range(1, 91)])
    service = StreamService(spark, _settings(mongo_uri, db_name, tmp_path))
    first = service.poll_once()
    assert (first.outcome, first.inserted, first.deleted) == ("ok", 90 * 3 * 3, 0)

    coll.insert_one(_doc(user, TODAY, 8000, dt.datetime.now(UTC)))
    second = service.poll_once()
    assert (second.outcome, second.inserted, second.updated, second.deleted) == ("ok", 9, 0, 9)
    assert db["analytics"].count_documents({"periodEnd": _midnight(TODAY - dt.timedelta(days=90))}) == 0
    _assert_equals_full_recomputation(db)


# ---- empty polls, events, endpoints -------------------------------------------------------------

def _jobs_in_group(spark, group: str, action) -> tuple[list[int], object]:
    spark.sparkContext.setJobGroup(group, group)
    try:
        result = action()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    return list(spark.sparkContext.statusTracker().getJobIdsForGroup(group)), result


def test_empty_polls_start_no_spark_job(spark, db, db_name, mongo_uri, tmp_path):
    user = ObjectId()
    db["healthmetrics"].insert_many([_doc(user, TODAY - dt.timedelta(days=i), 5000, dt.datetime.now(UTC)) for i in range(5)])
    service = StreamService(spark, _settings(mongo_uri, db_name, tmp_path))
    jobs, first = _jobs_in_group(spark, f"busy-{uuid.uuid4().hex}", service.poll_once)
    assert first.outcome == "ok" and jobs  # the probe sees the jobs of a poll that has work
    for _ in range(3):
        jobs, result = _jobs_in_group(spark, f"idle-{uuid.uuid4().hex}", service.poll_once)
        assert result.outcome == "empty" and result.changed_documents == 0
        assert jobs == []


def test_streaming_query_delivers_events_after_the_backend_comes_back_and_endpoints_answer(spark, db, db_name, mongo_uri, tmp_path):
    """The service runs its rate-source query; the backend refuses connections at first. The analytics
    are written regardless; once the backend listens, every user gets one event with the latest snapshot
    of each (metricType, timeRange), equal to what is stored."""
    users = [ObjectId() for _ in range(3)]
    now = dt.datetime.now(UTC)
    db["healthmetrics"].insert_many([_doc(u, TODAY - dt.timedelta(days=i), 3000 + 100 * i, now) for u in users for i in range(8)])
    port = free_port()
    settings = _settings(mongo_uri, db_name, tmp_path, SERVICE_TOKEN=TOKEN, BACKEND_API_URL=f"http://127.0.0.1:{port}/api",
                         HEALTH_CHECK_PORT=0)
    metrics = ServiceMetrics()
    outbox = EventOutbox(settings.outbox_directory)
    sender = EventSender(settings.backend_api_url, settings.service_token, outbox, timeout_s=1, attempts=2, backoff_s=0.05,
                         on_report=metrics.record_delivery, retry_pause_s=0.2, max_retry_pause_s=0.5)
    lines: list[str] = []
    service = StreamService(spark, settings, metrics=metrics, outbox=outbox, sender=sender, batch_log=lines.append)
    server = HealthServer("127.0.0.1", 0, status=service.status, ready=service.ready, registry=metrics.registry).start()
    receiver = Receiver()
    try:
        ready = httpx.get(f"{server.url}/health/ready")
        assert ready.status_code == 503 and "no batch" in ready.json()["reason"]
        assert httpx.get(f"{server.url}/health/live").status_code == 200
        sender.start()
        service.start_query()
        deadline = time.monotonic() + 240
        while service.completed < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert service.completed >= 2
        # Written on time although the backend is down; the events wait in the outbox.
        assert db["analytics"].count_documents({}) == 3 * 3 * 3 * 8
        assert outbox.pending() == 3
        assert httpx.get(f"{server.url}/health/ready").status_code == 200
        health = httpx.get(f"{server.url}/health").json()
        assert health["outbox"]["pending"] == 3 and health["dlq"]["files"] == 0
        assert health["checkpoint"]["lastProcessedTimestamp"] is not None

        receiver.start(port)
        assert sender.wait_idle(60)
        bodies = receiver.bodies()
        assert sorted(b["userId"] for b in bodies) == sorted(str(u) for u in users)
        for body in bodies:
            assert body["eventType"] == "analytics:batch_update"
            data = body["data"]
            assert (data["batchIndex"], data["totalBatches"], data["count"]) == (0, 1, 9)
            assert {(e["metricType"], e["timeRange"]) for e in data["analytics"]} == {
                (m, r) for m in ("steps", "calories", "weight") for r in ("7day", "30day", "90day")}
            for element in data["analytics"]:
                assert element["operationType"] == "insert"
                stored = db["analytics"].find_one({"userId": ObjectId(body["userId"]), "metricType": element["metricType"],
                                                   "timeRange": element["timeRange"], "periodEnd": _midnight(TODAY)})
                assert element["analytics"]["rollingAverage"] == stored["analytics"]["rollingAverage"]
                assert element["analytics"]["streakDays"] == stored["analytics"]["streakDays"] == 8
        assert all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in receiver.seen)

        metrics_text = httpx.get(f"{server.url}/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(metrics_text)}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        assert samples[("health_analytics_batches_total", (("outcome", "ok"),))] == 1
        assert samples[("health_analytics_batches_total", (("outcome", "empty"),))] >= 1
        assert samples[("health_analytics_snapshots_written_total", (("operation", "inserted"),))] == 216
        assert samples[("health_analytics_documents_read_total", ())] == 24
        assert samples[("health_analytics_events_sent_total", ())] == 3
        assert samples[("health_analytics_events_pending", ())] == 0
        assert samples[("health_analytics_batch_duration_seconds_count", ())] == 1
        assert "health_analytics_checkpoint_lag_seconds" in families and "health_analytics_dlq_records" in families
        batch_lines = [json.loads(line) for line in lines]
        assert batch_lines[0]["outcome"] == "ok" and batch_lines[0]["events_queued"] == 3
        assert TOKEN not in metrics_text and TOKEN not in json.dumps(health) and all(TOKEN not in line for line in lines)
    finally:
        service.request_stop()
        if service.query is not None:
            service.run_until_stopped()
        sender.stop()
        server.stop()
        receiver.stop()


def test_readiness_fails_while_the_database_is_unreachable(spark, tmp_path, localdb_binary):
    from health_analytics.localdb import LocalDb

    server = LocalDb(tmp_path / "server", binary=localdb_binary)
    uri = server.start(port=0).uri
    port = int(uri.rsplit(":", 1)[1].strip("/"))
    try:
        service = StreamService(spark, _settings(uri, "readiness", tmp_path))
        assert service.poll_once().outcome == "empty"
        assert service.ready() == (True, "ok")
        checkpoint = service.checkpoint.read()
        server.stop()
        time.sleep(2.1)  # past the cached answer
        ok, reason = service.ready()
        assert not ok and reason.startswith("database unreachable")
        failed = service.poll_once()
        assert failed.outcome == "failed" and failed.error
        assert service.status()["status"] == "degraded"
        assert service.checkpoint.read() == checkpoint  # a failed batch does not move it

        server.start(port=port)  # the next trigger does the work
        user = ObjectId()
        with connect(uri) as client:
            client["readiness"]["healthmetrics"].insert_many(
                [_doc(user, TODAY - dt.timedelta(days=i), 4000, dt.datetime.now(UTC)) for i in range(3)])
        done = service.poll_once()
        assert done.outcome == "ok" and done.inserted == 3 * 3 * 3
        assert service.checkpoint.read() > checkpoint
        time.sleep(2.1)
        assert service.ready() == (True, "ok")
    finally:
        server.stop()
