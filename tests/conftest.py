"""Shared fixtures: one real local server and one real SparkSession per test run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from health_analytics.localdb import LocalDb
from health_analytics.mongo_client import connect

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def localdb_binary() -> Path:
    """The cached launcher binary, built once per machine."""
    return LocalDb(PROJECT / ".localdb").build()


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory, localdb_binary: Path):
    """URI of the server the tests use: TEST_MONGO_URI if given, else a local server on a free port."""
    external = os.environ.get("TEST_MONGO_URI")
    if external:
        yield external
        return
    server = LocalDb(tmp_path_factory.mktemp("localdb"), binary=localdb_binary)
    status = server.start(port=0)
    try:
        yield status.uri
    finally:
        server.stop()


@pytest.fixture
def mongo_client(mongo_uri: str):
    client = connect(mongo_uri)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def db_name(mongo_client) -> str:
    """A fresh database per test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture
def db(mongo_client, db_name):
    return mongo_client[db_name]


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the run (local[2], UTC)."""
    from health_analytics.settings import Settings
    from health_analytics.spark_session import build_spark_session

    settings = Settings(_env_file=None, SPARK_MASTER="local[2]", SPARK_SHUFFLE_PARTITIONS=4)
    session = build_spark_session(settings, app_name="health-analytics-tests")
    yield session
    session.stop()
