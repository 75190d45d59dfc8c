"""Run the engine in this process's time zone and print its snapshots canonically (for test_timezones).

Usage: python -m tests.transforms.tz_probe ZONE — the JVM, the Spark session and Python all run in ZONE.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys

from bson import ObjectId

from health_analytics.settings import Settings
from health_analytics.spark_session import build_spark_session
from tests.transforms.support import run_engine
from tests.worked_example import BATCH, TODAY, worked_docs

UTC = dt.timezone.utc


def probe_documents() -> list[dict]:
    """The worked example plus users whose dates sit near midnight in several offsets."""
    rng = random.Random(7)
    docs = worked_docs()
    for u in range(3):
        user = ObjectId(f"{0xabc000 + u:024x}")
        for i in range(120):
            day = TODAY - dt.timedelta(days=i)
            if rng.random() < 0.15:
                continue
            offset = dt.timezone(dt.timedelta(hours=rng.choice([-8, -5, 0, 5.5, 9])))
            local_midnight = dt.datetime(day.year, day.month, day.day, tzinfo=UTC).astimezone(offset)
            docs.append({
                "_id": ObjectId(f"{u:08x}{i:016x}"), "userId": user, "date": local_midnight, "source": "googlefit",
                "metrics": {"steps": rng.randint(0, 15000), "sleepHours": round(rng.uniform(4, 9), 1), "weight": 70 + rng.randint(0, 3)},
                "updatedAt": dt.datetime(day.year, day.month, day.day, 23, 59, tzinfo=UTC),
            })
    return docs


def canonical(snapshots: dict) -> dict[str, dict]:
    def enc(v):
        if isinstance(v, dt.datetime):
            return int(v.timestamp() * 1000)
        if isinstance(v, ObjectId):
            return str(v)
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items() if k != "metadata"}
        return v
    return {"|".join(map(str, k)): enc(doc) for k, doc in snapshots.items()}


def main(zone: str) -> None:
    java_tz = f"-Duser.timezone={zone}"
    settings = Settings(_env_file=None, SPARK_MASTER="local[2]", SPARK_SHUFFLE_PARTITIONS=2)
    spark = build_spark_session(settings, extra_conf={
        "spark.sql.session.timeZone": zone,
        "spark.driver.extraJavaOptions": java_tz,
        "spark.executor.extraJavaOptions": java_tz,
    })
    assert spark.conf.get("spark.sql.session.timeZone") == zone
    jvm_zone = spark.sparkContext._jvm.java.util.TimeZone.getDefault().getID()
    snapshots, rejections = run_engine(spark, probe_documents(), today=TODAY, batch_time=BATCH)
    print(json.dumps({"jvm_zone": jvm_zone, "snapshots": canonical(snapshots), "rejections": len(rejections)}))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
