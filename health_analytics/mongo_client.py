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


def connect(uri: str, *, timeout_ms: int = 5000, **kwargs: object) -> MongoClient:
    """A client that reads dates as aware UTC datetimes, so no host time zone leaks into a value."""
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
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, PyMongoError) and "Timeout" in type(exc).__name__:
        text = f"no server answered within the timeout ({text[:200]})"
    return redact_text(text, uri_password(uri))
