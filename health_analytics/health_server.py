"""The service's HTTP endpoints: `/health`, `/health/live`, `/health/ready` and `/metrics` (Prometheus).

A small threaded server from the standard library: it answers from what the service already knows
(the callables passed in) and never touches Spark, so it stays responsive during a long batch.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(self, host: str, port: int, *, status: Callable[[], dict[str, Any]],
                 ready: Callable[[], tuple[bool, str]], registry: CollectorRegistry) -> None:
        self._status, self._ready, self._registry = status, ready, registry
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> HealthServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                try:
                    if path == "/health":
                        status = outer._status()
                        self._json(200 if status.get("status") != "down" else 503, status)
                    elif path == "/health/live":
                        self._json(200, {"status": "alive"})
                    elif path == "/health/ready":
                        ok, reason = outer._ready()
                        self._json(200 if ok else 503, {"status": "ready" if ok else "not ready", "reason": reason})
                    elif path == "/metrics":
                        self._send(200, CONTENT_TYPE_LATEST, generate_latest(outer._registry))
                    else:
                        self._json(404, {"error": "not found", "endpoints": ["/health", "/health/live", "/health/ready", "/metrics"]})
                except Exception as exc:  # noqa: BLE001 - an endpoint must answer, not drop the connection
                    log.exception("health endpoint %s failed", path)
                    self._json(500, {"error": type(exc).__name__})

            def _json(self, code: int, body: dict[str, Any]) -> None:
                self._send(code, "application/json", json.dumps(body, default=str).encode())

            def _send(self, code: int, content_type: str, payload: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: probes poll often
                log.debug("health %s", format % args)

        return Handler
