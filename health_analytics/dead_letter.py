"""Dead-letter queue on disk: snapshots that could not be written to MongoDB, kept for `dlq retry`.

One JSON-lines file per failed batch (or per Spark task of a batch), each line
`{"snapshot": <canonical Extended JSON>, "error": "<text>"}`. Canonical Extended JSON keeps ObjectIds,
UTC datetimes (millisecond precision, as BSON itself) and int vs float exactly, so a retried document is
the one that failed. The files hold health data: created 0600 in a 0700 directory, written to a temp
name, fsynced and renamed so a crash never leaves a half-written file under a final name.
Nothing here logs document contents.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from bson import json_util
from bson.binary import UuidRepresentation

from health_analytics.mongo_sink import WriteOutcome

log = logging.getLogger(__name__)

JSON_OPTIONS = json_util.CANONICAL_JSON_OPTIONS.with_options(
    tz_aware=True, tzinfo=dt.timezone.utc, uuid_representation=UuidRepresentation.STANDARD
)
PROCESSED = "processed"
_NAME = re.compile(r"^dlq-(?P<ts>\d{8}T\d{6}\.\d{3}Z)-.+\.jsonl$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class DeadLetterError(Exception):
    """A DLQ file that cannot be read; names the file and line, never the (health) content."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}: line {line}: {reason}")
        self.path, self.line = path, line


@dataclass(frozen=True)
class DlqFileInfo:
    path: Path
    records: int
    errors: dict[str, int]  # error text -> count
    created: dt.datetime  # UTC, from the file name


@dataclass
class RetryReport:
    files: int = 0
    written: int = 0
    still_failed: int = 0
    processed: list[Path] = field(default_factory=list)  # new locations, in processed/
    remaining: list[Path] = field(default_factory=list)  # rewritten with only the still-failed records


def _fsync_dir(directory: Path) -> None:
    """A rename or a new entry is durable only once the directory itself is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(directory: Path) -> None:
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _fsync_dir(directory.parent)


def _encode(doc: Mapping[str, Any], error: str) -> bytes:
    return (json_util.dumps({"snapshot": dict(doc), "error": str(error)}, json_options=JSON_OPTIONS) + "\n").encode()


def _write_atomic(final: Path, lines: Iterable[bytes]) -> None:
    """Temp file (0600 from creation, never chmod'ed) → fsync → rename over `final` → fsync the directory."""
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for line in lines:
                f.write(line)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


class DeadLetterQueue:
    def __init__(self, directory: str | Path) -> None:
        # Created on the first write, so that listing an absent queue has no side effect.
        self.directory = Path(directory)

    def write(
        self, records: Iterable[tuple[Mapping[str, Any], str]], *, batch_id: str, part: int | None = None
    ) -> Path | None:
        """Store one failed batch (streamed, not held in memory); no records → no file, None."""
        it = iter(records)
        first = next(it, None)
        if first is None:
            return None
        safe_id = _UNSAFE.sub("_", str(batch_id))[:100]
        if not safe_id:
            raise ValueError("batch_id must not be empty")
        now = dt.datetime.now(dt.timezone.utc)
        base = f"dlq-{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{safe_id}" + (f"-p{part}" if part is not None else "")
        _ensure_dir(self.directory)
        path = self.directory / f"{base}.jsonl"
        n = 1
        while path.exists():  # same batch and part within the same millisecond: never overwrite
            path = self.directory / f"{base}-{n}.jsonl"
            n += 1
        count = 0

        def lines() -> Iterator[bytes]:
            nonlocal count
            for doc, error in chain([first], it):
                count += 1
                yield _encode(doc, error)

        _write_atomic(path, lines())
        log.warning("dead-lettered %d snapshot(s) of batch %s to %s", count, safe_id, path.name)
        return path

    def files(self) -> list[Path]:
        """Pending files, oldest first (the fixed-width UTC time in the name sorts chronologically)."""
        if not self.directory.is_dir():
            return []
        return sorted((p for p in self.directory.iterdir() if _NAME.match(p.name) and p.is_file()), key=lambda p: p.name)

    def read(self, path: Path) -> Iterator[tuple[dict, str]]:
        """Yield (document, error); a corrupt line raises DeadLetterError instead of being skipped."""
        path = Path(path)
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json_util.loads(raw, json_options=JSON_OPTIONS)
                    doc, error = record["snapshot"], record["error"]
                    if not isinstance(doc, dict) or not isinstance(error, str):
                        raise TypeError
                except Exception as exc:
                    # `from None`: the original exception may quote the line, which holds health data.
                    raise DeadLetterError(path, number, f"not a valid DLQ record ({type(exc).__name__})") from None
                yield doc, error

    def summary(self) -> list[DlqFileInfo]:
        out = []
        for path in self.files():
            errors = Counter(error for _doc, error in self.read(path))
            created = dt.datetime.strptime(_NAME.match(path.name)["ts"], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.timezone.utc)
            out.append(DlqFileInfo(path, sum(errors.values()), dict(errors), created))
        return out

    def pending_records(self) -> int:
        """Non-blank lines of the pending files: cheap (no parsing), so fit for metrics and health checks."""
        total = 0
        for path in self.files():
            with open(path, "rb") as f:
                total += sum(1 for line in f if line.strip())
        return total

    def retry(self, paths: Iterable[Path] | None, write: Callable[[list[dict]], WriteOutcome]) -> RetryReport:
        """Write each file's documents again; move the file to processed/ when all succeed, else rewrite it
        with only the still-failed records and their new errors.

        A file is read completely before anything is written, so a corrupt line stops at that file with
        the file untouched (files retried before it stay done; retrying again is harmless: replace by _id).
        """
        report = RetryReport()
        for path in self.files() if paths is None else [self._pending(p) for p in paths]:
            docs = [doc for doc, _error in self.read(path)]
            outcome = write(docs) if docs else WriteOutcome()
            report.files += 1
            report.written += len(docs) - len(outcome.failed)
            report.still_failed += len(outcome.failed)
            if outcome.failed:
                _write_atomic(path, (_encode(doc, error) for doc, error in outcome.failed))
                report.remaining.append(path)
                log.warning("%s: %d of %d snapshot(s) still failing", path.name, len(outcome.failed), len(docs))
            else:
                report.processed.append(self._move_to_processed(path))
                log.info("%s: %d snapshot(s) written, file moved to %s/", path.name, len(docs), PROCESSED)
        return report

    def _pending(self, path: Path | str) -> Path:
        """A bare file name or a path of a pending file in this queue (not elsewhere, not in processed/)."""
        path = Path(path)
        if path.parent == Path("."):
            path = self.directory / path
        if path.resolve().parent != self.directory.resolve() or not _NAME.match(path.name):
            raise ValueError(f"{path} is not a pending file of the dead-letter queue {self.directory}")
        return path

    def _move_to_processed(self, path: Path) -> Path:
        done_dir = self.directory / PROCESSED
        _ensure_dir(done_dir)
        target = done_dir / path.name
        os.rename(path, target)
        _fsync_dir(done_dir)
        _fsync_dir(self.directory)
        return target
