"""Settings: SPEC §5 defaults, one-line errors naming the variable, and no secret in any output."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from health_analytics.cli import app
from health_analytics.redaction import redact_text, redact_uri, uri_password
from health_analytics.settings import Settings, SettingsError, load_settings

SECRET_URI = "mongodb://analyst:pa55-w0rd@db.example.com:27017/health?authSource=admin"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no developer .env leaks in
    for name in list(Settings.model_fields):
        alias = Settings.model_fields[name].alias
        monkeypatch.delenv(alias, raising=False)


def test_spec_defaults():
    s = load_settings()
    assert (s.mongo_uri_value, s.mongo_db_name, s.health_metrics_collection, s.analytics_collection) == (
        "mongodb://localhost:27017", "health-metrics", "healthmetrics", "analytics")
    assert (str(s.dlq_directory), s.spark_app_name, s.batch_interval_seconds, s.checkpoint_location) == (
        "dlq", "HealthMetricsAnalytics", 60, "./spark-checkpoints")
    assert (s.backend_api_url, s.service_token, s.analytics_history_days) == ("http://localhost:5000/api", None, 90)
    assert (s.anomaly_threshold, s.steps_streak_threshold, s.baseline_days, s.baseline_min_points) == (2.0, 1000.0, 30, 7)
    assert s.spark_master == "local[*]" and s.events_enabled is False


def test_env_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("BATCH_INTERVAL_SECONDS=5\nMONGO_DB_NAME=other\n")
    s = load_settings()
    assert (s.batch_interval_seconds, s.mongo_db_name) == (5, "other")


@pytest.mark.parametrize("name,value", [
    ("BATCH_INTERVAL_SECONDS", "0"), ("BATCH_INTERVAL_SECONDS", "soon"), ("ANALYTICS_HISTORY_DAYS", "-1"),
    ("MONGO_URI", "mongo://nowhere"), ("MONGO_URI", "mongodb://u:pw@host:99999"), ("MONGO_DB_NAME", "bad name"),
    ("BACKEND_API_URL", "localhost:5000"), ("ANOMALY_THRESHOLD", "0"),
])
def test_bad_value_names_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert name in message and "\n" not in message


def test_password_never_in_errors_repr_or_cli(monkeypatch):
    monkeypatch.setenv("MONGO_URI", "mongodb://analyst:pa55-w0rd@db.example.com:99999")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "pa55-w0rd" not in str(info.value)
    result = CliRunner().invoke(app, ["localdb", "status"])
    assert result.exit_code == 1
    assert "MONGO_URI" in result.output and "pa55-w0rd" not in result.output

    monkeypatch.setenv("MONGO_URI", SECRET_URI)
    monkeypatch.setenv("SERVICE_TOKEN", "tok-123456")
    s = load_settings()
    assert "pa55-w0rd" not in repr(s) and "tok-123456" not in repr(s)
    assert s.mongo_uri_redacted == "mongodb://analyst:***@db.example.com:27017/health?authSource=admin"
    assert s.events_enabled is True


def test_redaction_helpers():
    assert redact_uri(SECRET_URI).count("***") == 1 and "pa55-w0rd" not in redact_uri(SECRET_URI)
    assert uri_password(SECRET_URI) == "pa55-w0rd" and uri_password("mongodb://localhost") is None
    assert redact_text("failed: auth pa55-w0rd rejected", "pa55-w0rd") == "failed: auth *** rejected"
