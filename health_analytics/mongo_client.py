"""Connections to MongoDB (or the local server), with errors that never show the password."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from health_analytics.redaction import redact_text, uri_password

if TYPE_CHECKING:
    from pymongo.database import Database

    from health_analytics.settings import Settings


class DatabaseUnavailable(RuntimeError):
    """MongoDB could not be reached or refused the operation; the message is safe to print."""


SOCKET_TIMEOUT_MS = 300_000  # a server that stops answering mid-operation must not hang a task forever


def connect(uri: str, *, timeout_ms: int = 5000, **kwargs: object) -> MongoClient:
    """A client that reads dates as aware UTC datetimes, so no host time zone leaks into a value."""
    kwargs.setdefault("socketTimeoutMS", SOCKET_TIMEOUT_MS)
    return MongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        appname="health-analytics",
        **kwargs,
    )


def open_database(settings: Settings, *, timeout_ms: int = 5000) -> tuple[MongoClient, Database]:
    client = connect(settings.mongo_uri_value, timeout_ms=timeout_ms)
    return client, client[settings.mongo_db_name]


def describe_error(exc: BaseException, uri: str) -> str:
    """A one-line, password-free description of a database error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    for line in lines:  # a Spark task failure: the Python error inside is the useful line
        if line.startswith(("pymongo.errors.", "ModuleNotFoundError", "ValueError", "RuntimeError")):
            text = line
            break
    if isinstance(exc, PyMongoError) and "Timeout" in type(exc).__name__:
        text = f"no server answered within the timeout ({text[:200]})"
    return redact_text(text, uri_password(uri))


def is_local_server(client: MongoClient) -> bool:
    """True for FerretDB (the local server), whose buildInfo names its own version: some write paths
    differ there (docs/LOCAL_SERVER.md)."""
    from pymongo.errors import OperationFailure

    try:
        return "ferretdbVersion" in client.admin.command("buildInfo")
    except OperationFailure:
        return False
