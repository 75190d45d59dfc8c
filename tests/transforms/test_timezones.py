"""Time-zone independence: the same snapshots whatever zone Python, the JVM and the Spark session run in.

Each foreign zone needs its own JVM, so this test starts the engine in a subprocess (the one exception to
one SparkSession per run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.transforms.support import run_engine
from tests.transforms.tz_probe import canonical, probe_documents
from tests.worked_example import BATCH, TODAY

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def utc_result(spark):
    snapshots, _ = run_engine(spark, probe_documents(), today=TODAY, batch_time=BATCH)
    return canonical(snapshots)


@pytest.mark.slow
@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Kolkata"])
def test_same_snapshots_in_another_zone(utc_result, zone):
    env = {**os.environ, "TZ": zone}
    proc = subprocess.run([sys.executable, "-m", "tests.transforms.tz_probe", zone], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["jvm_zone"] == zone
    assert len(utc_result) > 252
    assert result["snapshots"] == utc_result
