"""Compute-only benchmark of the analytics engine against the reference (issue: analytics engine).

Synthetic documents are generated in memory (no database), turned into raw rows, cached in Spark, and
then timed: the Spark transforms end to end into Spark's `noop` sink (nothing collected), and the plain
Python reference on the same documents. Prints rows/s, snapshots/s and the ratio.

    .venv/bin/python bench/engine_bench.py --users 1000 --days 180 [--skip-reference] [--explain]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

from bson import ObjectId

from health_analytics.reference import ReferenceParams, compute_reference
from health_analytics.settings import Settings
from health_analytics.spark_session import build_spark_session
from health_analytics.transforms.params import AnalyticsParams, BatchContext
from health_analytics.transforms.pipeline import compute_analytics
from health_analytics.transforms.raw_rows import RAW_SCHEMA, document_to_raw_row

UTC = dt.timezone.utc
TODAY = dt.date(2026, 6, 30)


def documents(users: int, days: int, seed: int = 1):
    """All eight metrics, ~90 % of days present, weight weekly, sleep most nights, hydration sometimes."""
    for u in range(users):
        rng = random.Random(seed * 1_000_003 + u)
        user = ObjectId(f"{seed:08x}{u:016x}")
        base = rng.uniform(3000, 14000)
        for i in range(days):
            day = TODAY - dt.timedelta(days=i)
            if rng.random() < 0.1:
                continue
            steps = max(0, int(rng.gauss(base, base * 0.25) * (1.15 if day.weekday() >= 5 else 1.0)))
            if rng.random() < 0.02:
                steps = min(100_000, steps * 2 + 5000)
            midnight = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
            yield {
                "_id": ObjectId(f"{u:012x}{i:012x}"),
                "userId": user,
                "date": midnight,
                "source": rng.choice(["manual", "googlefit", "import"]),
                "metrics": {
                    "steps": steps,
                    "distance": round(steps * 0.00075, 3),
                    "calories": round(1600 + steps * 0.04, 1),
                    "activeMinutes": min(1440, steps // 120),
                    "heartPoints": min(500, steps // 400),
                    "weight": round(rng.uniform(60, 90), 1) if i % 7 == 0 else None,
                    "sleepHours": round(rng.uniform(5, 9), 1) if rng.random() < 0.85 else None,
                    "hydration": round(rng.uniform(1, 3), 1) if rng.random() < 0.3 else None,
                },
                "updatedAt": midnight + dt.timedelta(hours=22),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print the physical plan and its shape")
    args = parser.parse_args()

    settings = Settings(_env_file=None, SPARK_MASTER=args.master, SPARK_SHUFFLE_PARTITIONS=args.partitions)
    spark = build_spark_session(settings, app_name="engine-bench", extra_conf={"spark.driver.memory": "6g"})
    batch = dt.datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
    ctx = BatchContext.at(int(batch.timestamp() * 1000), job_id="bench", spark_version=spark.version)

    t0 = time.perf_counter()
    docs = list(documents(args.users, args.days))
    raw = spark.createDataFrame([document_to_raw_row(d) for d in docs], RAW_SCHEMA).repartition(args.partitions).cache()
    n_docs = raw.count()
    print(f"generated {n_docs:,} documents ({args.users:,} users x {args.days} days) in {time.perf_counter() - t0:.1f}s")

    result = compute_analytics(raw, AnalyticsParams(), ctx)
    if args.explain:
        plan = result.snapshots._jdf.queryExecution().executedPlan().toString()
        print(plan)
        print(f"plan shape: {plan.count('Exchange ')} exchanges, {plan.count('Window [')} window operators, "
              f"{plan.count('Sort [')} sorts")

    n_values = result.values.count()
    t1 = time.perf_counter()
    result.snapshots.write.format("noop").mode("overwrite").save()
    spark_s = time.perf_counter() - t1
    n_snapshots = result.snapshots.count()
    print(f"spark:     {spark_s:8.1f}s  {n_docs / spark_s:10,.0f} docs/s  {n_values / spark_s:10,.0f} values/s  "
          f"{n_snapshots / spark_s:10,.0f} snapshots/s  ({n_snapshots:,} snapshots)")

    if not args.skip_reference:
        t2 = time.perf_counter()
        ref = compute_reference(docs, today=TODAY, batch_time=batch, params=ReferenceParams())
        ref_s = time.perf_counter() - t2
        assert len(ref.snapshots) == n_snapshots, (len(ref.snapshots), n_snapshots)
        print(f"reference: {ref_s:8.1f}s  {n_docs / ref_s:10,.0f} docs/s  {n_values / ref_s:10,.0f} values/s  "
              f"{n_snapshots / ref_s:10,.0f} snapshots/s")
        print(f"ratio reference/spark: {ref_s / spark_s:.2f}x")
    spark.stop()


if __name__ == "__main__":
    main()
