"""Delivery of the outbox's events to the backend (`POST {BACKEND_API_URL}/events/emit`, SPEC §4).

The job only ever adds to the outbox and calls `notify()`; a daemon thread posts. So a backend that is
down, slow or refusing never stops or slows the analytics, and what it did not confirm stays on disk
for a later round or a later run (at-least-once: a body whose answer was lost is posted again, which
only makes the backend push the same analytics twice).

Each round sends its first body alone, as a probe, before fanning out over a bounded pool: a backend
that is down costs one body's retries per round instead of one per body, and a refused token is seen
by exactly one request instead of a burst of them.

The service token goes only into the Authorization header. It is held as a SecretStr and removed from
any text that reaches a log or the rejected file, because a backend or a library may echo it.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from health_analytics.backend_events import MAX_BODY_BYTES, encode_body
from health_analytics.event_outbox import EventOutbox, OutboxError
from health_analytics.redaction import redact_text

log = logging.getLogger(__name__)

EMIT_PATH = "/events/emit"
SLICE = 256  # bodies between two rewrites of a pending file: bounds what a crash makes us post again
_REJECTED_STATUSES = frozenset({400, 413, 422})  # the body itself is wrong: posting it again cannot help
_FORBIDDEN_STATUSES = frozenset({401, 403})  # the token is wrong: nothing will pass until a restart
_USERINFO = re.compile(r"(?<=://)[^/@]*@")
# Failure reasons of bodies set aside as rejected: the backend is fine, these bodies are not.
_BODY_FAULTS = frozenset({"http_400", "http_413", "http_422", "invalid", "too_large"})


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # reason ("connect", "timeout", "http_503"…) -> bodies
    pending: int = 0  # bodies left in the outbox after the round
    forbidden: bool = False  # the backend refused the token; delivery is off until a restart
    rejected: int = 0  # bodies moved to the rejected file this round
    requests: int = 0  # HTTP attempts made this round, retries included


@dataclass(frozen=True)
class _Outcome:
    kind: str  # "sent" | "rejected" | "forbidden" | "failed" | "skipped"
    reason: str = ""  # key of DeliveryReport.failed
    detail: str = ""  # for rejected bodies: status and the backend's explanation
    attempts: int = 0


_SKIPPED = _Outcome("skipped")


class EventSender:
    """Posts the outbox's bodies; in background mode (`start`/`notify`/`stop`) the job never waits on it."""

    def __init__(
        self,
        url: str,
        token: str | SecretStr,
        outbox: EventOutbox,
        *,
        concurrency: int = 4,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        on_report: Callable[[DeliveryReport], None] | None = None,
        retry_after_cap_s: float = 5.0,
        retry_pause_s: float = 1.0,
        max_retry_pause_s: float = 60.0,
    ) -> None:
        secret = token if isinstance(token, SecretStr) else SecretStr(token or "")
        value = secret.get_secret_value()
        if not value or any(c.isspace() for c in value):
            raise ValueError("the service token must be non-empty and without whitespace")
        if not re.match(r"^https?://\S+$", url):
            raise ValueError(f"backend URL must be http(s)://…, got {_USERINFO.sub('***@', url)!r}")
        if concurrency < 1 or attempts < 1 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("concurrency and attempts must be ≥ 1, timeout_s > 0, backoff_s ≥ 0")
        self.url = url
        self.endpoint = url.rstrip("/") + EMIT_PATH
        self.outbox = outbox
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.retry_after_cap_s = retry_after_cap_s
        self.retry_pause_s = retry_pause_s
        self.max_retry_pause_s = max_retry_pause_s
        self.on_report = on_report
        self._token = secret
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._round_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._forbidden = False
        self._busy = False
        self._abort: threading.Event | None = None  # the running round's
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (
            f"EventSender(url={_USERINFO.sub('***@', self.url)!r}, concurrency={self.concurrency}, "
            f"forbidden={self._forbidden}, running={self.running})"
        )

    @property
    def forbidden(self) -> bool:
        return self._forbidden

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- one round -------------------------------------------------------------------------------

    def deliver(self) -> DeliveryReport:
        """One round over the outbox, oldest file first; never raises for a backend problem."""
        with self._round_lock:
            self._busy = True
            try:
                report = self._round()
            finally:
                self._busy = False
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception as exc:  # noqa: BLE001 - a metrics hook must not break delivery
                log.warning("event report callback failed: %s", self._clean(f"{type(exc).__name__}: {exc}"))
        return report

    def _round(self) -> DeliveryReport:
        report = DeliveryReport(forbidden=self._forbidden)
        if self._forbidden:
            report.pending = self.outbox.pending()
            return report
        abort = threading.Event()
        self._abort = abort
        if self._stopping.is_set() and threading.current_thread() is self._thread:
            abort.set()
        failed: Counter[str] = Counter()
        rejected_reasons: list[str] = []
        probed = False
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="event-sender") as pool:
                for path in self.outbox.files():
                    if abort.is_set():
                        break
                    try:
                        bodies = self.outbox.read(path)
                    except FileNotFoundError:
                        continue
                    except OutboxError as exc:
                        target = self.outbox.quarantine(path)
                        log.error("unreadable outbox file set aside as %s: %s", target, exc)
                        continue
                    kept: list[dict] = []
                    for start in range(0, len(bodies), SLICE):
                        if abort.is_set():
                            break
                        chunk = bodies[start : start + SLICE]
                        outcomes, probed = self._send(pool, chunk, abort, probed)
                        to_reject: list[tuple[dict, str]] = []
                        changed = any(o.kind in ("sent", "rejected") for o in outcomes)
                        for body, outcome in zip(chunk, outcomes):
                            report.requests += outcome.attempts
                            if outcome.kind == "sent":
                                report.sent += 1
                                continue
                            if outcome.reason:
                                failed[outcome.reason] += 1
                            if outcome.kind == "rejected":
                                to_reject.append((body, outcome.detail))
                            else:
                                kept.append(body)
                        if to_reject:
                            self.outbox.reject(to_reject, path.stem)
                            report.rejected += len(to_reject)
                            rejected_reasons.extend(detail for _body, detail in to_reject)
                        if changed:  # record the progress now: a crash later re-posts only this slice's rest
                            self.outbox.replace(path, kept + bodies[start + len(chunk) :])
        finally:
            self._abort = None
        report.failed = dict(failed)
        report.forbidden = self._forbidden
        report.pending = self.outbox.pending()
        self._log_round(report, rejected_reasons, abort.is_set())
        return report

    def _send(
        self, pool: ThreadPoolExecutor, chunk: list[dict], abort: threading.Event, probed: bool
    ) -> tuple[list[_Outcome], bool]:
        """Outcomes in the order of `chunk`; until the backend has answered once this round, one body alone."""
        outcomes: list[_Outcome] = []
        i = 0
        while not probed and i < len(chunk) and not abort.is_set():
            outcome = self._post(chunk[i], abort)
            outcomes.append(outcome)
            probed = outcome.kind in ("sent", "rejected") and outcome.attempts > 0
            i += 1
        rest = chunk[i:]
        if abort.is_set():
            return outcomes + [_SKIPPED] * len(rest), probed
        outcomes.extend(pool.map(lambda body: self._post(body, abort), rest))
        return outcomes, probed

    def _post(self, body: dict, abort: threading.Event) -> _Outcome:
        """One body, retried on what may pass later; sets `abort` when the rest of the round would fail too."""
        try:
            return self._attempts(body, abort)
        except Exception as exc:  # noqa: BLE001 - a bug or a closed client: keep the body, end the round
            log.error("event POST failed: %s", self._clean(f"{type(exc).__name__}: {exc}"))
            abort.set()
            return _Outcome("failed", "error")

    def _attempts(self, body: dict, abort: threading.Event) -> _Outcome:
        try:
            payload = encode_body(body)
        except (TypeError, ValueError) as exc:
            return _Outcome("rejected", "invalid", f"not encodable as JSON: {type(exc).__name__}")
        if len(payload) > MAX_BODY_BYTES:
            return _Outcome("rejected", "too_large", f"body of {len(payload)} bytes over the {MAX_BODY_BYTES}-byte limit")
        attempts = 0
        reason = ""
        while True:
            if abort.is_set():
                return _Outcome("skipped", attempts=attempts)
            attempts += 1
            retry_after: float | None = None
            try:
                response = self._http().post(self.endpoint, content=payload)
            except httpx.TimeoutException:
                reason = "timeout"
            except httpx.ConnectError:
                reason = "connect"
            except httpx.TransportError as exc:
                reason = "transport"
                log.debug("event POST attempt %d: %s", attempts, self._clean(f"{type(exc).__name__}: {exc}"))
            else:
                status = response.status_code
                reason = f"http_{status}"
                if 200 <= status < 300:
                    return _Outcome("sent", attempts=attempts)
                if status in _FORBIDDEN_STATUSES:
                    self._refused(status)
                    abort.set()
                    return _Outcome("forbidden", reason, attempts=attempts)
                if status in _REJECTED_STATUSES:
                    detail = self._clean(f"HTTP {status}: {response.text[:200]}")
                    return _Outcome("rejected", reason, detail, attempts=attempts)
                if status != 408 and status != 429 and status < 500:  # 404, 405…: a wrong URL, not a passing state
                    abort.set()
                    return _Outcome("failed", reason, attempts=attempts)
                retry_after = _seconds(response.headers.get("Retry-After"))
            if attempts >= self.attempts:
                abort.set()  # retried and still failing: the backend is unavailable, spare it the rest
                return _Outcome("failed", reason, attempts=attempts)
            delay = self.backoff_s * 2 ** (attempts - 1) * random.uniform(0.8, 1.2)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.retry_after_cap_s))
            if abort.wait(delay):
                return _Outcome("skipped", attempts=attempts)

    def _refused(self, status: int) -> None:
        with self._state_lock:
            if self._forbidden:
                return
            self._forbidden = True
        log.error(
            "backend refused the service token (HTTP %d from %s); event delivery is off until the job is "
            "restarted with a valid SERVICE_TOKEN, events stay in the outbox %s",
            status,
            _USERINFO.sub("***@", self.endpoint),
            self.outbox.directory,
        )

    def _log_round(self, report: DeliveryReport, rejected_reasons: list[str], aborted: bool) -> None:
        if rejected_reasons:
            log.warning(
                "backend rejected %d event(s) as malformed, set aside in %s; first reason: %s",
                len(rejected_reasons),
                self.outbox.rejected_dir,
                rejected_reasons[0],
            )
        unavailable = {k: v for k, v in report.failed.items() if k not in _BODY_FAULTS}
        if aborted and unavailable and not report.forbidden:
            log.warning(
                "event backend unavailable (%s); %d event(s) kept in the outbox for a later round",
                ", ".join(sorted(unavailable)),
                report.pending,
            )
        elif report.sent:
            log.info("delivered %d event(s) to the backend, %d pending", report.sent, report.pending)

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None or self._client.is_closed:
                self._client = httpx.Client(
                    headers={
                        "Authorization": f"Bearer {self._token.get_secret_value()}",
                        "Content-Type": "application/json",
                    },
                    timeout=httpx.Timeout(self.timeout_s),
                    limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
                    follow_redirects=False,  # a redirect would carry the token elsewhere
                )
            return self._client

    def _clean(self, text: str) -> str:
        return redact_text(text, self._token.get_secret_value())

    # ---- background mode -------------------------------------------------------------------------

    def start(self) -> None:
        """Deliver in a daemon thread from now on; what a previous run left is delivered first."""
        if self.running:
            return
        self._stopping.clear()
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New events are in the outbox (cheap, never blocks)."""
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        """End the background thread; a round in progress stops at its next request, and whatever was
        not confirmed delivered stays in the outbox."""
        self._stopping.set()
        abort = self._abort
        if abort is not None:
            abort.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("event sender still finishing a request after %.1f s; leaving it (daemon thread)", timeout)
                return
            self._thread = None
        self.close()

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is left to do: the outbox is empty (or delivery is forbidden) and no round runs."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._busy and (self._forbidden or self.outbox.pending() == 0):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _run(self) -> None:
        pause = self.retry_pause_s
        retry_at: float | None = None
        while True:
            if retry_at is not None:
                # After a failed round, notify() does not cut the pause short: that would hammer a
                # backend that is down once per batch.
                if self._stopping.wait(max(0.0, retry_at - time.monotonic())):
                    return
                retry_at = None
            else:
                self._wake.wait()
            if self._stopping.is_set():
                return
            self._wake.clear()
            try:
                report = self.deliver()
                failed = any(k not in _BODY_FAULTS for k in report.failed)
                left = report.pending > 0 and not report.forbidden
            except Exception as exc:  # noqa: BLE001 - disk full, permissions…: keep the thread, retry later
                log.error("event delivery round failed: %s", self._clean(f"{type(exc).__name__}: {exc}"))
                failed = left = True
            if failed and left:
                retry_at = time.monotonic() + pause
                pause = min(pause * 2, self.max_retry_pause_s)
            else:
                pause = self.retry_pause_s


def _seconds(value: str | None) -> float | None:
    """A numeric Retry-After (an HTTP date is rare from an API and is ignored: plain backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


