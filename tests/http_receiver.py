"""A real HTTP backend on loopback for event tests: records every POST, answers scripted statuses."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class Receiver:
    """Records every POST; answers `script` statuses first (one per request), then `default`."""

    default: int = 200
    script: list[int] = field(default_factory=list)
    extra_headers: dict[int, dict[str, str]] = field(default_factory=dict)
    text: str = "ok"
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.seen.append(Seen(path, headers, json.loads(raw)))
            status = self.script.pop(0) if self.script else self.default
        return status, self.extra_headers.get(status, {})

    def start(self, port: int = 0) -> int:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, extra = receiver.answer(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                if receiver.delay:
                    time.sleep(receiver.delay)
                payload = receiver.text.encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # the client hung up on a slow answer: expected here

        self.server = Server(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self) -> list[dict]:
        with self.lock:
            return [s.body for s in self.seen]


def free_port() -> int:
    """A port with nothing listening (connection refused) that a receiver can take later."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
