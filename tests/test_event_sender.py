"""Backend events: body building, the durable outbox, and delivery against a real HTTP server on loopback
(down, slow, refusing the token, rejecting bodies, overloaded, then back)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import re
import stat
import time
from pathlib import Path

import pytest

from health_analytics.backend_events import (
    EVENT_TYPE,
    MAX_BODY_BYTES,
    MAX_ELEMENTS,
    build_bodies,
    encode_body,
    json_safe,
)
from health_analytics.event_outbox import EventOutbox
from health_analytics.event_sender import DeliveryReport, EventSender
from tests.http_receiver import Receiver, free_port

TOKEN = "svc-T0ken-4b1d9e-never-print-me"
UTC = dt.timezone.utc
SENDER_LOG = "health_analytics.event_sender"


# ---- a real backend on loopback ----------------------------------------------------------------------


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> EventOutbox:
    return EventOutbox(tmp_path / "outbox")


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api/"


def make_sender(port: int, outbox: EventOutbox, **kwargs: object) -> EventSender:
    options: dict = {"concurrency": 4, "timeout_s": 1.0, "attempts": 3, "backoff_s": 0.01, "retry_pause_s": 0.05}
    options.update(kwargs)
    return EventSender(api_url(port), TOKEN, outbox, **options)


def element(metric: str = "steps", time_range: str = "7day", **analytics: object) -> dict:
    return {
        "metricType": metric,
        "timeRange": time_range,
        "analytics": {"rollingAverage": 8123.5, "trend": "up", "streakStartDate": "2026-11-10T00:00:00.000Z", **analytics},
        "operationType": "update",
    }


def make_bodies(n: int, first: int = 0) -> list[dict]:
    """n distinct bodies (one user each), so a duplicate or a loss shows in a multiset comparison."""
    return [build_bodies(f"{i + 1:024x}", [element(streakDays=i)])[0] for i in range(first, first + n)]


def canon(bodies: list[dict]) -> list[str]:
    return sorted(json.dumps(b, sort_keys=True) for b in bodies)


# ---- bodies ------------------------------------------------------------------------------------------


def test_build_bodies_splits_by_50_sorted_and_numbered() -> None:
    metrics = [f"m{i:03d}" for i in range(40)]
    elements = [element(m, tr) for tr in ("90day", "7day", "30day") for m in reversed(metrics)]
    user = "65A0000000000000000000AB"

    bodies = build_bodies(user, elements)

    assert [len(b["data"]["analytics"]) for b in bodies] == [50, 50, 20]
    assert [b["data"]["batchIndex"] for b in bodies] == [0, 1, 2]
    assert {b["data"]["totalBatches"] for b in bodies} == {3}
    assert [b["data"]["count"] for b in bodies] == [50, 50, 20]
    assert {b["eventType"] for b in bodies} == {EVENT_TYPE} == {"analytics:batch_update"}
    assert {b["userId"] for b in bodies} == {"65a0000000000000000000ab"}
    flat = [e for b in bodies for e in b["data"]["analytics"]]
    assert [(e["metricType"], e["timeRange"]) for e in flat] == sorted((m, tr) for m in metrics for tr in ("90day", "7day", "30day"))
    assert all(any(e is x for x in elements) for e in flat)  # passed through, not rebuilt
    assert set(bodies[0]) == {"userId", "eventType", "data"}
    assert set(bodies[0]["data"]) == {"analytics", "count", "batchIndex", "totalBatches"}
    assert build_bodies(user, []) == []
    assert MAX_ELEMENTS == 50


def test_build_bodies_keeps_each_body_under_the_size_limit_in_bytes() -> None:
    # 4,500 two-byte characters: a char count would see half the real size and overflow the limit.
    elements = [element(f"m{i:02d}", message="é" * 4_500) for i in range(30)]
    bodies = build_bodies("65a000000000000000000001", elements)

    sizes = [len(encode_body(b)) for b in bodies]
    assert all(size <= MAX_BODY_BYTES for size in sizes), sizes
    assert len(bodies) == 3  # 10 elements of ~9.1 kB each per body
    assert [b["data"]["count"] for b in bodies] == [len(b["data"]["analytics"]) for b in bodies] == [10, 10, 10]
    assert [b["data"]["batchIndex"] for b in bodies] == [0, 1, 2]
    # Greedy: the next body's first element would not have fitted into the previous body.
    for body, following in itertools.pairwise(bodies):
        grown = {**body, "data": {**body["data"], "analytics": body["data"]["analytics"] + following["data"]["analytics"][:1]}}
        assert len(encode_body(grown)) > MAX_BODY_BYTES
    assert [e["metricType"] for b in bodies for e in b["data"]["analytics"]] == [f"m{i:02d}" for i in range(30)]


def test_build_bodies_gives_an_element_too_large_for_any_body_a_body_of_its_own() -> None:
    elements = [element("steps"), element("calories", message="x" * (MAX_BODY_BYTES + 10)), element("weight")]
    bodies = build_bodies("65a000000000000000000001", elements)
    assert [[e["metricType"] for e in b["data"]["analytics"]] for b in bodies] == [["calories"], ["steps", "weight"]]
    assert len(encode_body(bodies[1])) <= MAX_BODY_BYTES < len(encode_body(bodies[0]))


def test_build_bodies_refuses_a_user_id_that_is_not_an_object_id() -> None:
    with pytest.raises(ValueError):
        build_bodies("user-1", [element()])


def test_json_safe_gives_javascript_style_utc_timestamps() -> None:
    from pyspark.sql import Row

    plus2 = dt.timezone(dt.timedelta(hours=2))
    analytics = Row(
        rollingAverage=8123.25,
        anomalyDetected=True,
        anomalyDetails=Row(severity="high", detectedAt=dt.datetime(2026, 11, 17, 14, 5, 9, 123456, tzinfo=plus2)),
        streakDays=3,
        streakStartDate=dt.date(2026, 11, 15),
        statistics={"standardDeviation": float("nan"), "values": (1, 2.5, None)},
        comparisonToPrevious={"isImprovement": None},
    )
    assert json_safe(dt.datetime(2026, 11, 17, tzinfo=UTC)) == "2026-11-17T00:00:00.000Z"
    assert json_safe(dt.datetime(2026, 11, 17, 0, 0, 0, 999)) == "2026-11-17T00:00:00.000Z"  # naive = UTC
    assert json_safe(analytics) == {
        "rollingAverage": 8123.25,
        "anomalyDetected": True,
        "anomalyDetails": {"severity": "high", "detectedAt": "2026-11-17T12:05:09.123Z"},
        "streakDays": 3,
        "streakStartDate": "2026-11-15T00:00:00.000Z",
        "statistics": {"standardDeviation": None, "values": [1, 2.5, None]},
        "comparisonToPrevious": {"isImprovement": None},
    }
    json.dumps(json_safe(analytics), allow_nan=False)
    with pytest.raises(TypeError):
        json_safe({"x": object()})


# ---- outbox ------------------------------------------------------------------------------------------


def test_outbox_files_are_private_durable_and_survive_a_restart(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    first = EventOutbox(directory)
    assert first.pending() == 0 and first.files() == [] and not directory.exists()
    assert first.add([], "empty") == 0 and not directory.exists()

    bodies = make_bodies(7)
    assert first.add(bodies[:4], "batch-1") == 4
    assert first.add(bodies[4:], "batch 2/x") == 3
    files = first.files()
    assert len(files) == 2
    assert all(re.fullmatch(r"\d{8}T\d{12}-batch[-_]\S+\.jsonl", p.name) for p in files)
    assert files[1].name.endswith("-batch_2_x.jsonl")
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(first.pending_dir.stat().st_mode) == 0o700
    assert [p.name for p in directory.joinpath("pending").iterdir() if p.name.startswith(".")] == []  # no temp left

    restarted = EventOutbox(directory)  # a new process on the same disk
    assert restarted.files() == files
    assert restarted.read(files[0]) + restarted.read(files[1]) == bodies
    assert restarted.pending() == 7

    restarted.replace(files[0], bodies[2:4])
    assert restarted.read(files[0]) == bodies[2:4] and restarted.pending() == 5
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    restarted.replace(files[0], [])
    assert not files[0].exists() and restarted.files() == [files[1]] and restarted.pending() == 3

    restarted.reject([(bodies[0], "HTTP 400: bad"), (bodies[1], "HTTP 400: worse")], "batch-1")
    assert restarted.rejected_count() == 2 == EventOutbox(directory).rejected_count()
    (rejected,) = restarted.rejected_files()
    assert stat.S_IMODE(rejected.stat().st_mode) == 0o600
    assert [json.loads(line) for line in rejected.read_text().splitlines()] == [
        {"body": bodies[0], "reason": "HTTP 400: bad"},
        {"body": bodies[1], "reason": "HTTP 400: worse"},
    ]


def test_outbox_names_sort_in_the_order_of_adding(outbox: EventOutbox) -> None:
    for i in range(30):  # many within the same microsecond tick on a fast machine
        outbox.add(make_bodies(1, first=i), "same-batch")
    assert [outbox.read(p)[0] for p in outbox.files()] == make_bodies(30)


# ---- delivery ----------------------------------------------------------------------------------------


def test_delivers_every_body_exactly_once_with_the_token(outbox: EventOutbox, receiver: Receiver) -> None:
    bodies = make_bodies(25)
    outbox.add(bodies[:10], "b1")
    outbox.add(bodies[10:], "b2")
    reports: list[DeliveryReport] = []
    sender = make_sender(receiver.start(), outbox, on_report=reports.append)

    report = sender.deliver()

    assert report == DeliveryReport(sent=25, failed={}, pending=0, forbidden=False, rejected=0, requests=25)
    assert reports == [report]
    assert canon(receiver.bodies()) == canon(bodies)
    assert {s.path for s in receiver.seen} == {"/api/events/emit"}
    assert {s.headers["authorization"] for s in receiver.seen} == {f"Bearer {TOKEN}"}
    assert {s.headers["content-type"] for s in receiver.seen} == {"application/json"}
    assert outbox.files() == [] and outbox.pending() == 0
    assert sender.deliver().requests == 0 and len(receiver.seen) == 25
    sender.close()


def test_oldest_batch_is_delivered_first(outbox: EventOutbox, receiver: Receiver) -> None:
    bodies = make_bodies(6)
    for i in range(3):
        outbox.add(bodies[2 * i : 2 * i + 2], f"b{i}")
    sender = make_sender(receiver.start(), outbox, concurrency=1)
    assert sender.deliver().sent == 6
    assert receiver.bodies() == bodies
    sender.close()


def test_backend_down_keeps_everything_and_stops_early_then_delivers_when_up(outbox: EventOutbox) -> None:
    port = free_port()
    bodies = make_bodies(10)
    outbox.add(bodies, "b1")
    sender = make_sender(port, outbox, attempts=3)

    down = sender.deliver()

    # One body tried (3 attempts), the other 9 spared; nothing lost.
    assert down == DeliveryReport(sent=0, failed={"connect": 1}, pending=10, forbidden=False, rejected=0, requests=3)
    assert canon(outbox.read(outbox.files()[0])) == canon(bodies)

    receiver = Receiver()
    receiver.start(port)
    try:
        up = sender.deliver()
        assert up.sent == 10 and up.pending == 0 and up.failed == {}
        assert canon(receiver.bodies()) == canon(bodies)
    finally:
        sender.close()
        receiver.stop()


def test_background_sender_retries_until_the_backend_comes_up(outbox: EventOutbox) -> None:
    port = free_port()
    reports: list[DeliveryReport] = []
    sender = make_sender(port, outbox, attempts=2, on_report=reports.append, retry_pause_s=0.05, max_retry_pause_s=0.2)
    sender.start()
    receiver = Receiver()
    try:
        bodies = make_bodies(12)
        outbox.add(bodies[:5], "b1")
        sender.notify()
        deadline = time.monotonic() + 5
        while not any(r.failed.get("connect") for r in reports) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(r.failed.get("connect") for r in reports)
        assert outbox.pending() == 5
        outbox.add(bodies[5:], "b2")
        sender.notify()
        receiver.start(port)

        assert sender.wait_idle(10)
        assert canon(receiver.bodies()) == canon(bodies)  # every body, each exactly once
        assert outbox.pending() == 0
    finally:
        sender.stop()
        receiver.stop()
    assert not sender.running


def test_refused_token_sends_one_request_logs_one_error_and_keeps_the_events(
    outbox: EventOutbox, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.default = 403
    outbox.add(make_bodies(5), "b1")
    sender = make_sender(receiver.start(), outbox)

    first = sender.deliver()
    second = sender.deliver()
    outbox.add(make_bodies(3, first=5), "b2")
    sender.start()
    sender.notify()
    assert sender.wait_idle(5)
    sender.notify()
    time.sleep(0.1)
    sender.stop()

    assert len(receiver.seen) == 1
    assert first == DeliveryReport(sent=0, failed={"http_403": 1}, pending=5, forbidden=True, rejected=0, requests=1)
    assert second == DeliveryReport(sent=0, failed={}, pending=5, forbidden=True, rejected=0, requests=0)
    assert sender.forbidden and outbox.pending() == 8
    errors = [r for r in caplog.records if r.name == SENDER_LOG and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "refused the service token" in errors[0].getMessage()
    assert TOKEN not in caplog.text and TOKEN not in repr(sender)


def test_malformed_bodies_are_not_retried_and_are_kept_as_rejected(
    outbox: EventOutbox, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    receiver.default = 400
    receiver.text = "data.count is required " + "x" * 500
    bodies = make_bodies(6)
    outbox.add(bodies, "b1")
    sender = make_sender(receiver.start(), outbox)

    report = sender.deliver()

    assert report == DeliveryReport(sent=0, failed={"http_400": 6}, pending=0, forbidden=False, rejected=6, requests=6)
    assert len(receiver.seen) == 6
    assert outbox.pending() == 0 and outbox.rejected_count() == 6
    kept = [json.loads(line) for p in outbox.rejected_files() for line in p.read_text().splitlines()]
    assert canon([k["body"] for k in kept]) == canon(bodies)
    assert {k["reason"] for k in kept} == {"HTTP 400: " + receiver.text[:200]}
    warnings = [r.getMessage() for r in caplog.records if r.name == SENDER_LOG and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "6 event(s)" in warnings[0] and "data.count is required" in warnings[0]
    assert sender.deliver().requests == 0 and len(receiver.seen) == 6
    sender.close()


@pytest.mark.parametrize(("status", "headers"), [(503, {}), (429, {"Retry-After": "0"}), (502, {})])
def test_overloaded_backend_is_retried_and_each_body_delivered_once(
    outbox: EventOutbox, receiver: Receiver, status: int, headers: dict[str, str]
) -> None:
    receiver.script = [status]
    receiver.extra_headers = {status: headers}
    bodies = make_bodies(3)
    outbox.add(bodies, "b1")
    sender = make_sender(receiver.start(), outbox)

    report = sender.deliver()

    assert report == DeliveryReport(sent=3, failed={}, pending=0, forbidden=False, rejected=0, requests=4)
    assert len(receiver.seen) == 4
    assert canon(receiver.bodies()) == canon([bodies[0], *bodies])  # the probe twice, the others once
    sender.close()


def test_retry_after_is_honoured_up_to_the_cap(outbox: EventOutbox, receiver: Receiver) -> None:
    receiver.script = [429]
    receiver.extra_headers = {429: {"Retry-After": "30"}}
    outbox.add(make_bodies(1), "b1")
    sender = make_sender(receiver.start(), outbox, backoff_s=0.001, retry_after_cap_s=0.3)

    started = time.monotonic()
    report = sender.deliver()
    elapsed = time.monotonic() - started

    assert report.sent == 1 and report.requests == 2
    assert 0.25 <= elapsed < 10  # waited the cap, not the backoff, nor the 30 s asked
    sender.close()


def test_backend_failing_after_all_retries_keeps_the_events_and_spares_the_rest(
    outbox: EventOutbox, receiver: Receiver
) -> None:
    receiver.default = 503
    outbox.add(make_bodies(8), "b1")
    sender = make_sender(receiver.start(), outbox, attempts=3)

    report = sender.deliver()

    assert report == DeliveryReport(sent=0, failed={"http_503": 1}, pending=8, forbidden=False, rejected=0, requests=3)
    assert len(receiver.seen) == 3
    sender.close()


def test_slow_backend_times_out_and_the_events_stay_pending(outbox: EventOutbox, receiver: Receiver) -> None:
    receiver.delay = 1.0
    outbox.add(make_bodies(6), "b1")
    sender = make_sender(receiver.start(), outbox, timeout_s=0.15, attempts=2)

    started = time.monotonic()
    report = sender.deliver()

    assert time.monotonic() - started < 5  # two timeouts of 0.15 s, not six bodies' worth of waiting
    assert report == DeliveryReport(sent=0, failed={"timeout": 1}, pending=6, forbidden=False, rejected=0, requests=2)
    assert outbox.pending() == 6
    sender.close()


def test_stop_leaves_undelivered_events_in_the_outbox(outbox: EventOutbox, receiver: Receiver) -> None:
    receiver.delay = 0.3
    outbox.add(make_bodies(40), "b1")
    sender = make_sender(receiver.start(), outbox, concurrency=2, timeout_s=2.0)
    sender.start()
    time.sleep(0.2)  # the probe is in flight
    sender.stop(timeout=5)

    assert not sender.running
    delivered = len(receiver.seen)  # every request that reached the backend was answered 200
    assert 1 <= delivered < 40
    assert outbox.pending() == 40 - delivered
    assert canon(receiver.bodies() + [b for p in outbox.files() for b in outbox.read(p)]) == canon(make_bodies(40))


def test_corrupt_outbox_file_is_set_aside_and_does_not_block_the_others(
    outbox: EventOutbox, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = make_bodies(3)
    outbox.add(bodies, "good")
    bad = outbox.pending_dir / "19990101T000000000000-bad.jsonl"
    bad.write_text('{"userId": "65a0"\n')
    sender = make_sender(receiver.start(), outbox)

    report = sender.deliver()

    assert report.sent == 3 and report.pending == 0
    assert canon(receiver.bodies()) == canon(bodies)
    assert (outbox.rejected_dir / f"{bad.name}.corrupt").exists() and not bad.exists()
    assert any("unreadable outbox file" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    sender.close()


def test_token_never_appears_in_logs_reprs_or_rejected_reasons(
    outbox: EventOutbox, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    receiver.default = 400
    receiver.text = f"invalid body; you sent Authorization: Bearer {TOKEN}"
    outbox.add(make_bodies(2), "b1")
    sender = make_sender(receiver.start(), outbox)
    report = sender.deliver()
    down = make_sender(free_port(), outbox, attempts=1)
    outbox.add(make_bodies(1, first=5), "b2")
    down_report = down.deliver()

    assert report.rejected == 2 and down_report.failed == {"connect": 1}
    assert "***" in caplog.text  # the echoed token was seen and masked
    texts = [caplog.text, repr(sender), repr(down), str(vars(sender)), repr(report), repr(outbox)]
    texts += [p.read_text() for p in outbox.rejected_files()]
    assert all(TOKEN not in text for text in texts)
    with pytest.raises(ValueError) as err:
        EventSender("ftp://nowhere", TOKEN, outbox)
    assert TOKEN not in str(err.value)
    sender.close()
    down.close()


def test_outbox_is_usable_while_the_process_umask_is_permissive(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        box = EventOutbox(tmp_path / "o")
        box.add(make_bodies(1), "b")
        assert stat.S_IMODE(box.files()[0].stat().st_mode) == 0o600
        assert stat.S_IMODE(box.pending_dir.stat().st_mode) == 0o700
    finally:
        os.umask(old)
