"""The local server's lifecycle, and doctor's verdict when it is up or down, against real processes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from health_analytics.cli import app
from health_analytics.doctor import run_checks
from health_analytics.localdb import LocalDb
from health_analytics.mongo_client import connect
from health_analytics.settings import Settings

pytestmark = pytest.mark.db


def test_start_status_stop_restart_keeps_data(tmp_path, localdb_binary):
    server = LocalDb(tmp_path / "srv", binary=localdb_binary)
    assert server.status().running is False
    status = server.start(port=0)
    assert status.running and status.uri.startswith("mongodb://127.0.0.1:")
    assert server.start(port=0).pid == status.pid  # idempotent
    with connect(status.uri) as client:
        client["keep"]["things"].insert_one({"_id": 1, "v": "kept"})
    assert server.stop() is True
    assert server.status().running is False and server.stop() is False
    again = server.start(port=0)
    try:
        with connect(again.uri) as client:
            assert client["keep"]["things"].find_one({"_id": 1}) == {"_id": 1, "v": "kept"}
    finally:
        server.stop()


def test_doctor_reports_a_down_server_with_the_fix(tmp_path, localdb_binary, monkeypatch):
    server = LocalDb(tmp_path / "srv", binary=localdb_binary)
    uri = server.start(port=0).uri
    port = uri.rsplit(":", 1)[1].strip("/")
    try:
        up = run_checks(Settings(_env_file=None, MONGO_URI=uri), spark=False, mongo_timeout_ms=2000)
        assert up.healthy
        assert any(c.name == "MongoDB" and c.ok and "7.0" in c.detail for c in up.checks)
    finally:
        server.stop()
    down = run_checks(Settings(_env_file=None, MONGO_URI=f"mongodb://127.0.0.1:{port}"), spark=False, mongo_timeout_ms=500)
    assert not down.healthy
    mongo = next(c for c in down.checks if c.name == "MongoDB")
    assert not mongo.ok and "localdb start" in mongo.fix

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", f"mongodb://user:hunter2@127.0.0.1:{port}")
    result = CliRunner().invoke(app, ["doctor", "--no-spark"])
    assert result.exit_code == 1
    assert "✗ MongoDB" in result.output and "hunter2" not in result.output
