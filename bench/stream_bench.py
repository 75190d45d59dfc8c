"""Streaming micro-batch benchmark: latency when 1 % of users got one new day, and freshness.

    .venv/bin/python bench/stream_bench.py --users 2000 [--data-dir /tmp/streambench] [--rounds 10]

Seeds USERS × 120 days into a local server (kept in --data-dir, so a larger run reuses a smaller one's
documents), sets the checkpoint past the seed, and computes the analytics of the 1 % of users that will
change (so their snapshots exist, as in a running deployment). Then:
- latency: ROUNDS micro-batches, each after those users got one new day (p50/p95 of `poll_once`), with
  the server's share: the last batch's queries (change scan, history read, stored snapshot days) replayed
  from the driver and timed, and one scan of each collection (every query on the local server reads a
  whole collection, see ../shared/LOCAL_SERVER.md); the engine's share is the rest;
- freshness: the streaming query runs with BATCH_INTERVAL_SECONDS=5 while a writer adds one new day at a
  random moment every few seconds; time from the write to the snapshot being readable (p50/p95);
- driver peak memory: the Python driver's and the driver JVM's peak resident size (VmHWM).
Prints one JSON object at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bson import ObjectId, json_util

from health_analytics.checkpoint import TimestampCheckpoint
from health_analytics.jobs.batch import run_batch
from health_analytics.jobs.stream import StreamService
from health_analytics.localdb import LocalDb
from health_analytics.mongo_client import connect
from health_analytics.mongo_reader import plan_read, scan_changes
from health_analytics.seed import SeedPlan, seed_collection, user_id
from health_analytics.settings import Settings
from health_analytics.spark_session import build_spark_session
from health_analytics.transforms.raw_rows import READ_PROJECTION

UTC = dt.timezone.utc
DAYS = 120
SEED = 2026
PROJECT = Path(__file__).resolve().parent.parent


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _driver_jvm_pid() -> int | None:
    import os

    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and b"java" in cmd:
            return int(proc.name)
    return None


def _new_day(coll, users: list[ObjectId], day: dt.date, now: dt.datetime, rng: random.Random) -> None:
    midnight = dt.datetime.combine(day, dt.time(), UTC)
    coll.insert_many([
        {"userId": u, "date": midnight, "source": "manual", "createdAt": now, "updatedAt": now,
         "metrics": {"steps": rng.randint(2000, 15000), "distance": round(rng.uniform(1, 12), 2),
                     "calories": rng.randint(1500, 3200), "activeMinutes": rng.randint(10, 120), "heartPoints": rng.randint(0, 60),
                     "sleepHours": round(rng.uniform(5, 9), 1), "weight": None, "hydration": round(rng.uniform(1, 3), 1)}}
        for u in users
    ], ordered=False)


def _server_share(coll, uri: str, db_name: str, since: dt.datetime) -> dict[str, float]:
    """Replay a batch's queries from the driver, timed: the change scan, the history read and the stored
    snapshot days (the plan of the last batch's users). On the local server each is a full scan; on
    MongoDB the `{updatedAt}` and `{userId, date}` / `{userId, metricType, timeRange, periodEnd}` indexes
    serve them. Writes (inserts by `_id`) are left out: a few hundred point inserts."""
    out: dict[str, float] = {}
    t = time.perf_counter()
    changes = scan_changes(coll, since, recent_ms=2000)
    out["change_scan"] = round(time.perf_counter() - t, 2)
    plan = plan_read(uri=uri, database=db_name, collection="healthmetrics", changes=changes, since=since, partitions=2,
                     incremental=True, analytics_collection="analytics")
    t = time.perf_counter()
    for f in plan.filters:
        sum(1 for _ in coll.find(json_util.loads(f), READ_PROJECTION, batch_size=5_000))
    out["history_read"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    for f in plan.existing_filters:
        sum(1 for _ in coll.database["analytics"].find(json_util.loads(f), {"_id": 0, "userId": 1, "metricType": 1, "periodEnd": 1}))
    out["stored_days_read"] = round(time.perf_counter() - t, 2)
    out["total"] = round(sum(out.values()), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--freshness-samples", type=int, default=10)
    parser.add_argument("--data-dir", default="/tmp/streambench")
    args = parser.parse_args()

    today = dt.datetime.now(UTC).date()
    seed_end = today - dt.timedelta(days=args.rounds + args.freshness_samples + 2)
    server = LocalDb(Path(args.data_dir), binary=LocalDb(PROJECT / ".localdb").build())
    uri = server.start(port=0).uri
    work = Path(tempfile.mkdtemp(prefix="streambench-"))
    figures: dict[str, object] = {"users": args.users, "days": DAYS, "rounds": args.rounds}
    try:
        db_name = "bench"
        with connect(uri, timeout_ms=30_000) as client:
            coll = client[db_name]["healthmetrics"]
            client[db_name]["analytics"].drop()
            coll.delete_many({"date": {"$gt": dt.datetime.combine(seed_end, dt.time(), UTC)}})  # earlier runs' new days
            t = time.perf_counter()
            report = seed_collection(coll, SeedPlan(users=args.users, days=DAYS, seed=SEED, today=seed_end,
                                                    now=dt.datetime.now(UTC) - dt.timedelta(days=1)))
            figures["seed_s"] = round(time.perf_counter() - t, 1)
            figures["seed_inserted"] = report.inserted
            figures["documents"] = coll.estimated_document_count()

        settings = Settings(_env_file=None, MONGO_URI=uri, MONGO_DB_NAME=db_name, SPARK_MASTER="local[2]",
                            CHECKPOINT_LOCATION=str(work / "checkpoint"), DLQ_DIRECTORY=str(work / "dlq"),
                            BATCH_INTERVAL_SECONDS=5, POLL_OVERLAP_SECONDS=2)
        spark = build_spark_session(settings, app_name="stream-bench")
        rng = random.Random(1)
        changed = [user_id(SEED, i) for i in rng.sample(range(args.users), max(1, args.users // 100))]
        figures["changed_users_per_batch"] = len(changed)
        TimestampCheckpoint(spark, settings.checkpoint_location).write(dt.datetime.now(UTC))
        service = StreamService(spark, settings)
        with connect(uri, timeout_ms=30_000) as client:
            coll = client[db_name]["healthmetrics"]
            analytics = client[db_name]["analytics"]
            # Warm state: the changing users' analytics exist (their first batch writes every window day).
            # (A full batch of just those users: on the local server an update_many of their documents
            # would rewrite the collection statement by statement.)
            t = time.perf_counter()
            warm = run_batch(spark, settings, since=None, users=changed)
            figures["warmup_batch_s"] = round(time.perf_counter() - t, 1)
            figures["warmup_snapshots"] = warm.inserted + warm.updated
            assert warm.dead_lettered == 0 and warm.users == len(changed), warm

            latencies: list[float] = []
            for r in range(args.rounds):
                last_write = dt.datetime.now(UTC)
                _new_day(coll, changed, seed_end + dt.timedelta(days=r + 1), dt.datetime.now(UTC), rng)
                t = time.perf_counter()
                result = service.poll_once()
                latencies.append(time.perf_counter() - t)
                assert result.outcome == "ok" and result.users == len(changed), result
                print(f"batch {r + 1}: {latencies[-1]:.1f}s, {result.inserted + result.updated} snapshots, "
                      f"{result.deleted} deleted", flush=True)
            figures["batch_p50_s"] = round(_pct(latencies, 0.5), 2)
            figures["batch_p95_s"] = round(_pct(latencies, 0.95), 2)
            figures["batch_s"] = [round(x, 2) for x in latencies]
            figures["server_share_s"] = _server_share(coll, uri, db_name, last_write - dt.timedelta(seconds=1))
            figures["engine_share_p50_s"] = round(figures["batch_p50_s"] - figures["server_share_s"]["total"], 2)
            t = time.perf_counter()
            coll.count_documents({"updatedAt": {"$gt": dt.datetime(2100, 1, 1, tzinfo=UTC)}})
            figures["healthmetrics_scan_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            analytics.count_documents({"periodEnd": {"$gt": dt.datetime(2100, 1, 1, tzinfo=UTC)}})
            figures["analytics_scan_s"] = round(time.perf_counter() - t, 2)
            figures["analytics_documents"] = analytics.estimated_document_count()

            # Freshness with the real streaming query and a 5 s trigger.
            fresh: list[float] = []
            service.start_query()
            try:
                for k in range(args.freshness_samples):
                    time.sleep(rng.uniform(0.0, 5.0))
                    user = changed[k % len(changed)]
                    day = seed_end + dt.timedelta(days=args.rounds + k + 1)
                    written = time.perf_counter()
                    _new_day(coll, [user], day, dt.datetime.now(UTC), rng)
                    key = {"userId": user, "metricType": "steps", "timeRange": "7day",
                           "periodEnd": dt.datetime.combine(day, dt.time(), UTC)}
                    while analytics.find_one(key, {"_id": 1}) is None:
                        time.sleep(0.05)
                    fresh.append(time.perf_counter() - written)
                    print(f"fresh {k + 1}: {fresh[-1]:.1f}s", flush=True)
            finally:
                stopper = threading.Thread(target=service.run_until_stopped)
                service.request_stop()
                stopper.start()
                stopper.join(timeout=300)
            figures["freshness_p50_s"] = round(_pct(fresh, 0.5), 2)
            figures["freshness_p95_s"] = round(_pct(fresh, 0.95), 2)
            figures["freshness_s"] = [round(x, 2) for x in fresh]

        import os
        import resource

        figures["driver_python_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        jvm = _driver_jvm_pid()
        figures["driver_jvm_peak_mb"] = round(_vm_hwm_mb(jvm), 1) if jvm else None
        figures["python_pid"] = os.getpid()
        spark.stop()
    finally:
        server.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
