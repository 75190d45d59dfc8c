"""Full batch against the local server vs the I/O floor (issue: batch job).

For each size: a fresh local server, `seed` N users x D days, then
  1. the full batch job (wall time, snapshots/s, peak driver memory: the driver JVM's and Python's RSS high-water marks);
  2. the I/O floor: plain PyMongo reading every input document, plus plain unordered bulk inserts of as many
     output-sized documents into a scratch collection.
Prints the ratio batch / floor and how wall time grows with the number of users.

    .venv/bin/python bench/batch_bench.py --users 125 500 --days 180
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import resource
import shutil
import tempfile
import time
from pathlib import Path

from bson import ObjectId

from health_analytics.jobs.batch import run_batch
from health_analytics.localdb import LocalDb
from health_analytics.mongo_client import connect
from health_analytics.seed import SeedPlan, seed_collection
from health_analytics.settings import Settings
from health_analytics.spark_session import build_spark_session

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc


def _jvm_peak_mb(spark) -> float:
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def io_floor(uri: str, db_name: str, outputs: int) -> tuple[float, float]:
    with connect(uri) as client:
        db = client[db_name]
        t0 = time.perf_counter()
        n = sum(1 for _ in db["healthmetrics"].find({}, batch_size=5000))
        read_s = time.perf_counter() - t0
        template = db["analytics"].find_one({})
        scratch = db["scratch"]
        scratch.drop()
        t1 = time.perf_counter()
        batch = []
        for _ in range(outputs):
            doc = copy.deepcopy(template)
            doc["_id"] = ObjectId()
            batch.append(doc)
            if len(batch) == 5000:
                scratch.insert_many(batch, ordered=False)
                batch = []
        if batch:
            scratch.insert_many(batch, ordered=False)
        write_s = time.perf_counter() - t1
        scratch.drop()
        print(f"  io floor: read {n:,} docs in {read_s:.1f}s, inserted {outputs:,} docs in {write_s:.1f}s")
        return read_s, write_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, nargs="+", default=[125, 500])
    parser.add_argument("--days", type=int, default=180)
    args = parser.parse_args()
    results = []
    now = dt.datetime.now(UTC)
    for users in args.users:
        tmp = Path(tempfile.mkdtemp(prefix="batchbench-"))
        server = LocalDb(tmp, binary=ROOT / ".localdb" / "bin" / "ferretdb-local")
        uri = server.start(port=0).uri
        try:
            with connect(uri) as client:
                t = time.perf_counter()
                report = seed_collection(client["bench"]["healthmetrics"], SeedPlan(users=users, days=args.days, seed=3, today=now.date(), now=now))
                print(f"{users} users x {args.days} days: seeded {report.inserted:,} docs in {time.perf_counter() - t:.1f}s")
            settings = Settings(_env_file=None, MONGO_URI=uri, MONGO_DB_NAME="bench", DLQ_DIRECTORY=str(tmp / "dlq"), SPARK_MASTER="local[2]")
            spark = build_spark_session(settings, app_name="batch-bench")
            t0 = time.perf_counter()
            summary = run_batch(spark, settings, since=None, now=now)
            wall = time.perf_counter() - t0
            jvm_mb = _jvm_peak_mb(spark)
            spark.stop()
            py_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  batch: {wall:.1f}s, {summary.snapshots:,} snapshots ({summary.snapshots / wall:,.0f}/s), "
                  f"{summary.documents_read:,} docs read; peak driver JVM {jvm_mb:,.0f} MB, driver Python {py_mb:,.0f} MB")
            read_s, write_s = io_floor(uri, "bench", summary.snapshots)
            floor = read_s + write_s
            print(f"  ratio batch / io floor: {wall / floor:.2f}")
            results.append((users, wall, floor))
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    if len(results) > 1:
        (u0, w0, _), (u1, w1, _) = results[0], results[-1]
        print(f"wall time {u0} -> {u1} users: {w0:.1f}s -> {w1:.1f}s ({w1 / w0:.2f}x for {u1 / u0:.1f}x users)")


if __name__ == "__main__":
    main()
