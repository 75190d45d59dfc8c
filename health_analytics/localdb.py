"""The embedded local server: FerretDB v1.24.2 on SQLite, built from its Go module and run on loopback.

The Go launcher in ``localdb/`` embeds ``github.com/FerretDB/FerretDB/ferretdb`` (a plain ``go install`` of
``cmd/ferretdb`` panics at start, FerretDB#2982). The binary is built once into ``<dir>/bin``; the data
lives in ``<dir>/data``, one SQLite file per database, so a restart on the same folder keeps the data.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

GO_SOURCE = Path(__file__).resolve().parent.parent / "localdb"
BINARY_NAME = "ferretdb-local"


class LocalDbError(RuntimeError):
    """The local server could not be built, started or reached."""


@dataclass(frozen=True)
class LocalDbStatus:
    running: bool
    pid: int | None
    uri: str | None
    data_dir: Path


class LocalDb:
    """Build, start, stop and report on one local server whose files live under ``root``."""

    def __init__(self, root: Path, *, binary: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.binary = Path(binary).resolve() if binary else self.root / "bin" / BINARY_NAME
        self.data_dir = self.root / "data"
        self.pid_file = self.root / "ferretdb.pid"
        self.uri_file = self.root / "ferretdb.uri"
        self.log_file = self.root / "ferretdb.log"

    # -- build ---------------------------------------------------------------------------------------
    def build(self, *, force: bool = False) -> Path:
        """Build the launcher unless a binary is cached; needs Go ≥ 1.24 and the Go module proxy."""
        if self.binary.exists() and not force:
            return self.binary
        go = shutil.which("go")
        if go is None:
            raise LocalDbError("Go is not installed: install Go 1.24 or newer (https://go.dev/dl) to build the local server")
        if not (GO_SOURCE / "main.go").exists():
            raise LocalDbError(f"local server source not found at {GO_SOURCE} (install the project in editable mode)")
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGO_ENABLED": "0"}
        proc = subprocess.run(
            [go, "build", "-o", str(self.binary), "."],
            cwd=GO_SOURCE,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise LocalDbError("building the local server failed:\n" + (proc.stderr or proc.stdout).strip()[-2000:])
        return self.binary

    # -- lifecycle -----------------------------------------------------------------------------------
    def status(self) -> LocalDbStatus:
        pid = self._read_pid()
        running = pid is not None and _alive(pid)
        uri = self.uri_file.read_text().strip() if running and self.uri_file.exists() else None
        return LocalDbStatus(running=running, pid=pid if running else None, uri=uri, data_dir=self.data_dir)

    def start(self, *, port: int = 27017, timeout: float = 30.0) -> LocalDbStatus:
        """Start the server in the background (idempotent); port 0 picks a free port."""
        current = self.status()
        if current.running:
            return current
        self.build()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.uri_file.unlink(missing_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [
                    str(self.binary),
                    "--data-dir", str(self.data_dir),
                    "--listen-addr", f"127.0.0.1:{port}",
                    "--uri-file", str(self.uri_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # survives the CLI that started it; Ctrl+C in the shell does not reach it
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LocalDbError(
                    f"the local server exited at start (code {proc.returncode}); see {self.log_file}:\n"
                    + _tail(self.log_file)
                )
            if self.uri_file.exists() and _ping(self.uri_file.read_text().strip()):
                return self.status()
            time.sleep(0.1)
        self.stop()
        raise LocalDbError(f"the local server did not answer within {timeout:.0f}s; see {self.log_file}")

    def stop(self, *, timeout: float = 15.0) -> bool:
        """Stop the server if it runs; True when a running server was stopped."""
        pid = self._read_pid()
        if pid is None or not _alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        self.uri_file.unlink(missing_ok=True)
        return True

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child if it exited
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie or a recycled pid that is not ours
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return BINARY_NAME.encode() in cmdline
    except OSError:
        return True


def _ping(uri: str) -> bool:
    from pymongo import MongoClient

    try:
        with MongoClient(uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500) as client:
            client.admin.command("ping")
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
