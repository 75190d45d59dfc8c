"""The one place a SparkSession is built: UTC session time zone, quiet logs, UI off unless asked."""

from __future__ import annotations

import os
import re
import shutil
import sys
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from health_analytics.settings import Settings

from pathlib import Path

MIN_JAVA = 17
LOG4J_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"
JAVA_HINT = "install a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"


class JavaError(RuntimeError):
    """No usable Java runtime for Spark."""


def java_version() -> tuple[int, str]:
    """Return (major version, java binary) of the Java that Spark will use; raise JavaError if unusable."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise JavaError(f"Java not found: {JAVA_HINT}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    text = out.stderr + out.stdout
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        raise JavaError(f"could not read the version of {java}: {JAVA_HINT}")
    major = int(m.group(1))
    if major == 1 and m.group(2):  # "1.8.0_..."
        major = int(m.group(2))
    if major < MIN_JAVA:
        raise JavaError(f"Java {major} at {java} is too old; Spark 4 needs Java {MIN_JAVA}+: {JAVA_HINT}")
    return major, java


def build_spark_session(settings: Settings, *, app_name: str | None = None, extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Create (or reuse) the SparkSession the jobs run on."""
    java_version()
    from pyspark.sql import SparkSession

    java_opts = f"-Duser.timezone=UTC -Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"
    if settings.spark_master.startswith("local"):
        # A laptop or CI box: stay on loopback, and skip Spark's warning about the hostname.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers run this interpreter (the project's virtualenv), which has PyMongo and friends.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    builder = (
        SparkSession.builder.appName(app_name or settings.spark_app_name)
        .master(settings.spark_master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", str(settings.spark_ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        # Keep all date arithmetic in UTC whatever the host's time zone is; quiet logs.
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.executor.extraJavaOptions", java_opts)
    )
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.spark_log_level)
    return spark
