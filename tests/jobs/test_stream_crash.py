"""`health-analytics stream` as a real process, killed with SIGKILL (the whole process group: Python,
the JVM and the workers) in the middle of reads, writes, deletes and checkpoint updates, six times, and
restarted each time. At the end the analytics equal a clean full recomputation, no key is duplicated,
the checkpoint is past the last change, and SIGTERM stops the service cleanly."""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from bson import ObjectId

from health_analytics.checkpoint import FILE_NAME, parse_timestamp
from health_analytics.reference import compute_reference
from health_analytics.seed import SeedPlan, seed_collection, user_id
from health_analytics.verification import TIME_DEPENDENT_FIELDS, compare_snapshots, index_snapshots

pytestmark = [pytest.mark.db, pytest.mark.slow]
UTC = dt.timezone.utc
TODAY = dt.datetime.now(UTC).date()
SEED = 33
USERS = 8
# Where each kill lands: the log line that starts the phase, and how long after it (seconds).
KILLS = [
    ("reading documents", 0.0),
    ("computing and writing snapshots", 1.5),
    ("advancing checkpoint", 0.0),
    ("computing and writing snapshots", 3.0),
    ("deleting stale snapshots", 0.0),
    ("reading documents", 0.8),
]


class ServiceProcess:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        command = [str(Path(sys.executable).with_name("health-analytics")), "stream"]
        self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for name, stream, sink in (("out", self.proc.stdout, self.stdout), ("err", self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(name, stream, sink), daemon=True).start()

    def _pump(self, name: str, stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            self.lines.put((name, line))

    def wait_for(self, predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _name, line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if predicate(line):
                return line
        raise AssertionError("expected output did not come; stderr tail:\n" + "".join(self.stderr[-30:]))

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def _change_some(coll, rng: random.Random, round_no: int) -> None:
    """A few new days, changed values and a value turning invalid, stamped now."""
    time.sleep(0.01)  # later than anything a previous round wrote
    now = dt.datetime.now(UTC)
    for i in rng.sample(range(USERS), 3):
        user = user_id(SEED, i)
        docs = sorted(coll.find({"userId": user}), key=lambda d: d["date"])
        target = docs[rng.randrange(len(docs))]
        coll.update_one({"_id": target["_id"]}, {"$set": {"metrics.steps": 1000 + round_no * 37, "updatedAt": now}})
    user = user_id(SEED, rng.randrange(USERS))
    docs = sorted(coll.find({"userId": user}), key=lambda d: d["date"])
    coll.update_one({"_id": docs[-1]["_id"]}, {"$set": {"metrics.calories": -1, "updatedAt": now}})
    day = dt.datetime.combine(TODAY - dt.timedelta(days=10 - round_no), dt.time(), UTC)
    coll.update_one({"userId": user_id(SEED, round_no % USERS), "date": day},
                    {"$set": {"source": "manual", "metrics": {"steps": 7000 + round_no, "sleepHours": 7.5},
                              "createdAt": now, "updatedAt": now}}, upsert=True)


def test_killed_at_random_moments_and_restarted_the_analytics_equal_a_clean_run(db, db_name, mongo_uri, tmp_path):
    rng = random.Random(7)
    coll = db["healthmetrics"]
    seed_collection(coll, SeedPlan(users=USERS, days=50, seed=SEED, invalid_share=0.03, today=TODAY - dt.timedelta(days=11),
                                   now=dt.datetime.now(UTC) - dt.timedelta(minutes=5)))
    env = {k: v for k, v in os.environ.items() if k not in {"SERVICE_TOKEN", "MONGO_URI"}}
    env.update(MONGO_URI=mongo_uri, MONGO_DB_NAME=db_name, CHECKPOINT_LOCATION=str(tmp_path / "checkpoint"),
               DLQ_DIRECTORY=str(tmp_path / "dlq"), OUTBOX_DIRECTORY=str(tmp_path / "outbox"), BATCH_INTERVAL_SECONDS="1",
               HEALTH_CHECK_PORT="0", SPARK_MASTER="local[2]", SPARK_SHUFFLE_PARTITIONS="4", PYTHONUNBUFFERED="1",
               POLL_OVERLAP_SECONDS="0")  # no overlap: only the checkpoint says what was done

    for round_no, (phase, delay) in enumerate(KILLS):
        if round_no:
            _change_some(coll, rng, round_no)
        service = ServiceProcess(env, tmp_path)
        try:
            service.wait_for(lambda line, phase=phase: phase in line, timeout=180)
            time.sleep(delay)
        finally:
            service.kill()

    final = ServiceProcess(env, tmp_path)
    try:
        final.wait_for(lambda line: '"outcome":"ok"' in line, timeout=300)
        final.wait_for(lambda line: '"outcome":"empty"' in line, timeout=60)  # caught up
        os.kill(final.proc.pid, signal.SIGTERM)  # as Kubernetes and docker stop do: to the main process
        assert final.proc.wait(timeout=120) == 0
    finally:
        if final.proc.poll() is None:
            final.kill()
    assert any("stopped; the checkpoint matches what was written" in line for line in final.stderr)
    assert sum("events are off: SERVICE_TOKEN is not set" in line for line in final.stderr) == 1
    batches = [json.loads(line) for line in final.stdout if line.startswith("{")]
    assert batches and all(b["outcome"] in ("ok", "empty") for b in batches)

    docs = list(coll.find({}))
    expected = compute_reference(docs, today=TODAY, batch_time=dt.datetime.now(UTC)).snapshots
    stored = index_snapshots(db["analytics"].find({}))
    assert db["analytics"].count_documents({}) == len(stored) == len(expected)  # no duplicate keys
    assert set(stored) == set(expected)
    assert compare_snapshots(expected, stored, ignore=TIME_DEPENDENT_FIELDS) == []
    checkpoint = parse_timestamp((tmp_path / "checkpoint" / FILE_NAME).read_text())
    newest = max(d["updatedAt"] for d in docs if isinstance(d.get("updatedAt"), dt.datetime))
    assert checkpoint >= newest.replace(microsecond=newest.microsecond // 1000 * 1000)
    assert not list((tmp_path / "dlq").glob("*.jsonl"))
    assert all(ObjectId.is_valid(str(doc["userId"])) for doc in db["analytics"].find({}, {"userId": 1}).limit(5))
