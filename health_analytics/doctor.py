"""Checks that tell a person what is broken and how to fix it, one line each."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from health_analytics.mongo_client import connect, describe_error
from health_analytics.settings import Settings
from health_analytics.spark_session import JavaError, build_spark_session, java_version


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks if c.required)


def run_checks(settings: Settings, *, spark: bool = True, mongo_timeout_ms: int = 3000) -> DoctorReport:
    report = DoctorReport()
    java_ok = _check_java(report)
    if spark:
        _check_spark(report, settings, java_ok)
    _check_mongo(report, settings, mongo_timeout_ms)
    return report


def _check_java(report: DoctorReport) -> bool:
    try:
        major, path = java_version()
    except JavaError as exc:
        report.checks.append(Check("Java", False, str(exc), "install Java 17+ (apt-get install openjdk-17-jre-headless)"))
        return False
    report.checks.append(Check("Java", True, f"Java {major} at {path}"))
    return True


def _check_spark(report: DoctorReport, settings: Settings, java_ok: bool) -> None:
    if not java_ok:
        report.checks.append(Check("Spark", False, "skipped: no usable Java", "fix Java first"))
        return
    started = time.perf_counter()
    try:
        session = build_spark_session(settings, app_name=f"{settings.spark_app_name}-doctor")
        version = session.version
        session.range(1).count()
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        report.checks.append(
            Check("Spark", False, f"session failed to start: {str(exc).splitlines()[0][:300]}", "check SPARK_MASTER and the Java install")
        )
        return
    elapsed = time.perf_counter() - started
    report.checks.append(Check("Spark", True, f"Spark {version} on {settings.spark_master} started in {elapsed:.1f}s"))


def _check_mongo(report: DoctorReport, settings: Settings, timeout_ms: int) -> None:
    uri = settings.mongo_uri_value
    fix = (
        "start the local server: `health-analytics localdb start` (or `make localdb`)"
        if _is_loopback(uri)
        else "check MONGO_URI and that the server is reachable from here"
    )
    client = connect(uri, timeout_ms=timeout_ms)
    try:
        info = client.server_info()
        report.checks.append(Check("MongoDB", True, f"{settings.mongo_uri_redacted} answers, server version {info.get('version', '?')}"))
        db = client[settings.mongo_db_name]
        names = set(db.list_collection_names())
        for coll_name, hint in (
            (settings.health_metrics_collection, "seed data: `health-analytics seed --users 100 --days 90`"),
            (settings.analytics_collection, "run the batch job: `health-analytics batch --full`"),
        ):
            if coll_name not in names:
                report.checks.append(Check(f"collection {coll_name}", False, "missing", hint, required=False))
                continue
            coll = db[coll_name]
            count = coll.estimated_document_count()
            indexes = ", ".join(_index_label(ix) for ix in coll.list_indexes())
            report.checks.append(Check(f"collection {coll_name}", True, f"{count:,} documents; indexes: {indexes}", required=False))
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        report.checks.append(Check("MongoDB", False, f"{settings.mongo_uri_redacted}: {describe_error(exc, uri)}", fix))
    finally:
        client.close()


def _index_label(index: dict) -> str:
    keys = ",".join(f"{k}:{v}" for k, v in index["key"].items())
    extras = [w for w in ("unique",) if index.get(w)]
    if "expireAfterSeconds" in index:
        extras.append(f"ttl={index['expireAfterSeconds']}s")
    return "{" + keys + "}" + ("(" + ",".join(extras) + ")" if extras else "")


def _is_loopback(uri: str) -> bool:
    from pymongo.uri_parser import parse_uri

    try:
        hosts = [h for h, _ in parse_uri(uri)["nodelist"]]
    except Exception:  # noqa: BLE001
        return False
    return all(h in ("localhost", "127.0.0.1", "::1") for h in hosts)
