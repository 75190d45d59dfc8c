"""Durable outbox of backend events on the driver's disk: a batch's events survive a backend outage
and a restart of the job, and are delivered later instead of lost.

Layout under the outbox directory (0700):
- `pending/<UTC yyyymmddTHHMMSSffffff>-<batch_id>.jsonl`: one request body per line, oldest file first;
- `rejected/<UTC time>-<hint>.jsonl`: bodies the backend refused as malformed, one
  `{"body": ..., "reason": "..."}` per line, kept for a person to look at;
- `rejected/<pending name>.corrupt`: a pending file that could not be read, set aside whole.

Every file is written like the dead-letter queue's: 0600 from creation, temp name, fsync, rename,
fsync of the directory, so a crash never leaves a half-written file under a final name. The bodies hold
health data: nothing here logs them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path

from health_analytics.backend_events import encode_body

log = logging.getLogger(__name__)

PENDING = "pending"
REJECTED = "rejected"
_NAME = re.compile(r"^\d{8}T\d{12}-.+\.jsonl$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


FILE_BODIES = 5000  # bodies per pending file: bounds the memory of adding and of a delivery round


class OutboxError(Exception):
    """An outbox file that cannot be read; names the file and line, never the (health) content."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}: line {line}: {reason}")
        self.path, self.line = path, line


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


def _write_atomic(final: Path, lines: Iterable[bytes]) -> None:
    """Temp file (0600 from creation, never chmod'ed) → fsync → replace `final` → fsync the directory."""
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for line in lines:
                f.write(line)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def _count_lines(path: Path) -> int:
    """Non-blank lines, no parsing: cheap enough for metrics and idle checks."""
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:  # delivered and removed meanwhile
        return 0


class EventOutbox:
    """Safe to share between the job's thread (add) and the sender's thread (read/replace/reject):
    add only creates new files, the sender only rewrites files it has read."""

    def __init__(self, directory: str | Path) -> None:
        # Created on the first write, so that looking at an absent outbox has no side effect.
        self.directory = Path(directory)
        self.pending_dir = self.directory / PENDING
        self.rejected_dir = self.directory / REJECTED
        self._lock = threading.Lock()
        self._last_stamp: dt.datetime | None = None

    def __repr__(self) -> str:
        return f"EventOutbox({str(self.directory)!r})"

    def add(self, bodies: Iterable[dict], batch_id: str) -> int:
        """Store one batch's bodies durably; returns how many (no bodies → no file)."""
        total = 0
        chunk: list[bytes] = []
        for body in bodies:  # streamed: at most FILE_BODIES bodies in memory, one file per chunk
            chunk.append(encode_body(body) + b"\n")
            if len(chunk) >= FILE_BODIES:
                total += self._store(chunk, batch_id)
                chunk = []
        if chunk:
            total += self._store(chunk, batch_id)
        return total

    def _store(self, lines: list[bytes], batch_id: str) -> int:
        path = self._new_path(self.pending_dir, batch_id, ".jsonl")
        _write_atomic(path, lines)
        log.debug("outbox: %d event(s) of batch %s stored in %s", len(lines), batch_id, path.name)
        return len(lines)

    def files(self) -> list[Path]:
        """Pending files, oldest first (the fixed-width UTC time in the name sorts chronologically)."""
        if not self.pending_dir.is_dir():
            return []
        return sorted((p for p in self.pending_dir.iterdir() if _NAME.match(p.name) and p.is_file()), key=lambda p: p.name)

    def read(self, path: Path) -> list[dict]:
        """A file's bodies in order; a corrupt line raises OutboxError instead of being skipped."""
        path = Path(path)
        bodies = []
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    body = json.loads(raw)
                    if not isinstance(body, dict):
                        raise TypeError
                except Exception as exc:  # noqa: BLE001 - any failure means a corrupt line
                    # `from None`: the original exception may quote the line, which holds health data.
                    raise OutboxError(path, number, f"not a JSON object ({type(exc).__name__})") from None
                bodies.append(body)
        return bodies

    def replace(self, path: Path, remaining: list[dict]) -> None:
        """Atomically keep only `remaining` in a pending file; an emptied file is removed."""
        path = Path(path)
        if remaining:
            _write_atomic(path, (encode_body(body) + b"\n" for body in remaining))
            return
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def pending(self) -> int:
        """Bodies waiting for delivery."""
        return sum(_count_lines(p) for p in self.files())

    def reject(self, bodies_with_reasons: list[tuple[dict, str]], batch_hint: str) -> Path | None:
        """Keep bodies the backend will never accept, with the reason, so nothing is silently lost.

        Written before the bodies leave their pending file: a crash in between gives a duplicate
        here, never a loss.
        """
        if not bodies_with_reasons:
            return None
        path = self._new_path(self.rejected_dir, batch_hint, ".jsonl")
        _write_atomic(
            path,
            (
                json.dumps({"body": body, "reason": str(reason)}, ensure_ascii=False, separators=(",", ":")).encode()
                + b"\n"
                for body, reason in bodies_with_reasons
            ),
        )
        return path

    def rejected_files(self) -> list[Path]:
        if not self.rejected_dir.is_dir():
            return []
        return sorted(p for p in self.rejected_dir.iterdir() if _NAME.match(p.name) and p.is_file())

    def rejected_count(self) -> int:
        """Bodies set aside as rejected (corrupt files set aside whole are not counted: unreadable)."""
        return sum(_count_lines(p) for p in self.rejected_files())

    def quarantine(self, path: Path) -> Path:
        """Move an unreadable pending file out of the way, whole, so it no longer blocks delivery."""
        path = Path(path)
        self._ensure(self.rejected_dir)
        target = self.rejected_dir / f"{path.name}.corrupt"
        os.replace(path, target)
        _fsync_dir(self.rejected_dir)
        _fsync_dir(path.parent)
        return target

    def _ensure(self, sub: Path) -> None:
        """The outbox directory itself 0700 too, not only its leaves (mkdir's parents get the umask's mode)."""
        _ensure_dir(self.directory)
        _ensure_dir(sub)

    def _new_path(self, directory: Path, hint: str, suffix: str) -> Path:
        """A fresh name, later than any this instance gave before (names sort by creation time)."""
        safe = _UNSAFE.sub("_", str(hint))[:100]
        if not safe:
            raise ValueError("batch id must not be empty")
        self._ensure(directory)
        with self._lock:
            now = dt.datetime.now(dt.timezone.utc)
            if self._last_stamp is not None and now <= self._last_stamp:
                now = self._last_stamp + dt.timedelta(microseconds=1)
            self._last_stamp = now
        base = f"{now:%Y%m%dT%H%M%S%f}-{safe}"
        path = directory / f"{base}{suffix}"
        n = 1
        while path.exists():  # another instance, same microsecond and hint: never overwrite
            path = directory / f"{base}-{n}{suffix}"
            n += 1
        return path
