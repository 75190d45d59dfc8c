"""Synthetic ``healthmetrics`` documents (SPEC §1) for demos, tests and benchmarks.

Every value is a pure function of the plan: users are generated independently from ``random.Random``
instances seeded from ``(seed, user index)`` and each day from ``(seed, user index, calendar day)``, so the
output does not depend on the batch size, and a user's valid day keeps its values whatever ``days``,
``today`` or ``invalid_share`` the plan asks for. ``_id``s and ``userId``s are hashes of the same keys, so
seeding a plan twice inserts nothing the second time (duplicate keys are counted, not raised).

Invalid documents are *extra* documents: the valid series (one document per user and present day) is the
same with or without them. Each invalid document breaks exactly one rule of SPEC §1 / docs/ANALYTICS.md,
so that it is rejected with a known reason (``INVALID_KIND_REASONS``):

- document-level kinds and the value-level kinds sit alone on a (user, day) key: a day the user skipped
  (at midnight, as the backend writes them), or, when the user has no skipped day left, a day before the
  plan's window — never on a valid document's key, which the unique ``{userId, date}`` index forbids and
  which would make a value-level document take part in the duplicate rule;
- ``duplicate_day`` is a second document of a present day, dated 10:00–10:59 UTC of that day (the unique
  index forbids a second midnight) and *older* (smaller ``updatedAt``) than the valid document, so the
  valid one wins the duplicate rule and the series is unchanged.

±Infinity is never generated: the local server (FerretDB) refuses it. NaN is generated only with
``SeedPlan(nan_values=True)``: FerretDB v1.24 cannot even read a message carrying NaN (or any Decimal128)
and closes the connection, so ``seed_collection`` refuses such a plan on FerretDB.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo.errors import BulkWriteError, OperationFailure

from health_analytics.mongo_client import is_local_server
from health_analytics.transforms.metrics import METRIC_NAMES, SOURCES, WEARABLE_FIELDS
from health_analytics.transforms.metrics import METRICS as CATALOG

UTC = dt.timezone.utc
_DAY = dt.timedelta(days=1)

# SPEC §1's catalog, shared with the engine (bounds inclusive).
METRICS: tuple[str, ...] = METRIC_NAMES
METRIC_RANGES: dict[str, tuple[float, float]] = {m.name: (m.low, m.high) for m in CATALOG}

# What each kind of invalid document breaks, and the docs/ANALYTICS.md reason the engine must give it.
INVALID_KIND_REASONS: dict[str, str] = {
    "wearable_field": "wearable_field",    # metrics.heartRate, top-level oxygenSaturation, ...
    "invalid_user_id": "invalid_user_id",  # a non-hex string, a number, or missing
    "invalid_date": "invalid_date",        # missing, an ISO string, or epoch seconds as a number
    "future_date": "future_date",          # midnight of a day after plan.today
    "invalid_source": "invalid_source",    # "fitbit", "Manual", "apple_health"
    "invalid_metrics": "invalid_metrics",  # missing, null, a string or an array
    "string_value": "invalid_value",       # one metric as a string ("8000")
    "bool_value": "invalid_value",         # one metric as a bool
    "nan_value": "invalid_value",          # one metric NaN (only with SeedPlan.nan_values, see above)
    "out_of_range": "out_of_range",        # negative steps, weight 500, 25 h of sleep, ...
    "duplicate_day": "duplicate_day",      # an older second document for a present day
}
INVALID_KINDS: tuple[str, ...] = tuple(INVALID_KIND_REASONS)
_VALUE_KINDS = frozenset({"string_value", "bool_value", "nan_value", "out_of_range"})

# The SPEC §2 worked-example user: fixed, whatever the seed, so that seeding it twice inserts it once.
PATTERN_USER_ID = ObjectId("655eed000000000000000001")
PATTERN_FIRST_DAY = dt.date(2025, 11, 5)
PATTERN_LAST_DAY = dt.date(2025, 11, 19)
_PATTERN_STEPS: dict[dt.date, int] = dict(
    zip(
        [PATTERN_FIRST_DAY + k * _DAY for k in range(15) if k != 7],  # 2025-11-12 is missing
        [7000, 7500, 8000, 8500, 9000, 9500, 10000, 8500, 8500, 8500, 8500, 18000, 8200, 8200],
    )
)

_SPIKE_SHARE = 0.02
_MISSING_SHARE_RANGE = (0.05, 0.15)  # per user; ~10 % of days missing on average


def _utc_today() -> dt.date:
    return dt.datetime.now(UTC).date()


@dataclass(frozen=True)
class SeedPlan:
    """What to generate: ``users`` × ``days`` days ending on ``today`` (a UTC date).

    ``now`` (optional, tz-aware) is the moment the data pretends to be written: no ``createdAt`` or
    ``updatedAt`` is later. Without it, timestamps of ``today``'s documents may lie up to the end of that
    day, i.e. a few hours in the wall clock's future when ``today`` is the real current day.
    """

    users: int
    days: int
    seed: int = 42
    invalid_share: float = 0.0
    pattern: bool = False
    today: dt.date = field(default_factory=_utc_today)
    now: dt.datetime | None = None
    nan_values: bool = False

    def __post_init__(self) -> None:
        if self.users < 0 or self.days < 1:
            raise ValueError("users must be ≥ 0 and days ≥ 1")
        if not 0.0 <= self.invalid_share < 1.0:
            raise ValueError("invalid_share must be in [0, 1): a share of 1 would need infinitely many documents")
        if isinstance(self.today, dt.datetime) or not isinstance(self.today, dt.date):
            raise ValueError("today must be a datetime.date (a UTC calendar day), not a datetime")
        if self.now is not None and (self.now.tzinfo is None or self.now < _midnight(self.today)):
            raise ValueError("now must be tz-aware and not before midnight UTC of today")
        if self.pattern and self.today < PATTERN_LAST_DAY:
            raise ValueError(f"the SPEC §2 pattern ends on {PATTERN_LAST_DAY}: today must not be earlier")

    @property
    def first_day(self) -> dt.date:
        return self.today - (self.days - 1) * _DAY

    @property
    def invalid_kinds(self) -> tuple[str, ...]:
        """The kinds this plan generates: all of INVALID_KINDS, NaN only on request."""
        return tuple(k for k in INVALID_KINDS if k != "nan_value" or self.nan_values)

    @property
    def timestamp_cap(self) -> dt.datetime:
        """No createdAt/updatedAt is later than this."""
        return self.now.astimezone(UTC) if self.now is not None else _midnight(self.today) + _DAY - dt.timedelta(milliseconds=1)


# --------------------------------------------------------------------------------------------------
# Deterministic randomness and ids
# --------------------------------------------------------------------------------------------------


def _digest(*parts: object, size: int) -> bytes:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=size).digest()


def _rng(*parts: object) -> random.Random:
    """A generator seeded from a tuple of keys, independent of PYTHONHASHSEED and of call order."""
    return random.Random(int.from_bytes(_digest(*parts, size=16), "big"))


def _oid(*parts: object) -> ObjectId:
    return ObjectId(_digest(*parts, size=12))


def user_id(seed: int, index: int) -> ObjectId:
    """The userId of synthetic user ``index`` under ``seed``."""
    return _oid("healthmetrics-seed", seed, "user", index)


def _doc_id(seed: int, index: int, day: dt.date, variant: str) -> ObjectId:
    return _oid("healthmetrics-seed", seed, "doc", index, day.isoformat(), variant)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _ms(n: float) -> dt.timedelta:
    """A whole number of milliseconds: BSON dates hold no more, so a round trip compares equal."""
    return dt.timedelta(milliseconds=int(n))


# --------------------------------------------------------------------------------------------------
# One user's habits and one day's values
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Profile:
    index: int
    user: ObjectId
    steps_mean: float
    weekday_factor: tuple[float, ...]  # Monday … Sunday
    km_per_step: float
    kcal_per_step: float
    active_min_per_step: float
    heart_points_per_min: float
    main_source: str
    weight: float
    weigh_day: int
    sleep_mean: float
    sleep_share: float
    hydration_mean: float
    hydration_share: float
    missing_share: float
    height: float


def _profile(seed: int, index: int) -> _Profile:
    """A user's personal baseline: an activity level, a weekly rhythm, and how diligently they log."""
    r = _rng("healthmetrics-seed", seed, "profile", index)
    weekend = r.uniform(0.55, 1.35)  # some users rest at weekends, others hike
    factors = tuple(1.0 + r.gauss(0, 0.06) for _ in range(5)) + tuple(weekend * (1.0 + r.gauss(0, 0.05)) for _ in range(2))
    return _Profile(
        index=index,
        user=user_id(seed, index),
        steps_mean=r.uniform(3000, 14000),
        weekday_factor=factors,
        km_per_step=r.uniform(0.0007, 0.0008),
        kcal_per_step=r.uniform(0.035, 0.055),
        active_min_per_step=r.uniform(0.006, 0.011),
        heart_points_per_min=r.uniform(0.5, 1.2),
        main_source=r.choices(SOURCES, weights=(0.5, 0.35, 0.15))[0],
        weight=r.uniform(50, 110),
        weigh_day=r.randrange(7),
        sleep_mean=r.uniform(6.0, 8.3),
        sleep_share=r.uniform(0.7, 0.95),
        hydration_mean=r.uniform(1.2, 3.0),
        hydration_share=r.uniform(0.1, 0.6),
        missing_share=r.uniform(*_MISSING_SHARE_RANGE),
        height=round(r.uniform(150, 195), 1),
    )


def _clamp(value: float, metric: str) -> float:
    low, high = METRIC_RANGES[metric]
    return min(max(value, low), high)


def _day_document(p: _Profile, r: random.Random, day: dt.date, cap: dt.datetime) -> dict[str, Any]:
    """A valid document of one day; every draw happens in a fixed order so the result is reproducible."""
    spike = r.uniform(2.2, 3.2) if r.random() < _SPIKE_SHARE else 1.0
    steps = round(_clamp(p.steps_mean * p.weekday_factor[day.weekday()] * max(0.05, r.gauss(1.0, 0.2)) * spike, "steps"))
    distance = round(_clamp(steps * p.km_per_step * r.gauss(1.0, 0.02), "distance"), 2)
    calories = round(_clamp(steps * p.kcal_per_step * r.gauss(1.0, 0.05), "calories"))
    active = round(_clamp(steps * p.active_min_per_step * r.gauss(1.0, 0.1), "activeMinutes"))
    source = p.main_source if r.random() < 0.9 else "manual"
    hp_noise = r.gauss(1.0, 0.1)
    # A manual entry has no heart points: the backend fills the missing activity metric with 0.
    heart_points = 0 if source == "manual" else round(_clamp(active * p.heart_points_per_min * hp_noise, "heartPoints"))
    weighs = r.random() < (0.9 if day.weekday() == p.weigh_day else 0.03)  # about weekly
    weight_noise = r.gauss(0, 0.5)
    weight = round(_clamp(p.weight + weight_noise, "weight"), 1) if weighs else None
    sleeps = r.random() < p.sleep_share
    sleep_noise = r.gauss(0, 0.8) + (0.5 if day.weekday() >= 5 else 0.0)
    sleep = round(min(max(p.sleep_mean + sleep_noise, 3.0), 12.0) * 4) / 4 if sleeps else None
    drinks = r.random() < p.hydration_share
    hydration_noise = r.gauss(0, 0.4)
    hydration = round(min(max(p.hydration_mean + hydration_noise, 0.3), 6.0), 1) if drinks else None
    pressure = r.random() < 0.03
    systolic, diastolic = round(r.gauss(120, 10)), round(r.gauss(78, 7))
    temperature = round(r.gauss(36.7, 0.3), 1) if r.random() < 0.02 else None
    height = p.height if weighs and r.random() < 0.1 else None

    # Manual entries are typed in the evening, Google Fit syncs during the day, imports arrive days later;
    # about one document in seven is edited afterwards. Nothing is later than the plan's cap.
    if source == "manual":
        offset = r.uniform(18, 23.9) * 3_600_000
    elif source == "googlefit":
        offset = r.uniform(7, 23.9) * 3_600_000
    else:
        offset = r.uniform(1, 14) * 86_400_000
    edit = r.uniform(60_000, 2 * 86_400_000) if r.random() < 0.15 else 0
    midnight = _midnight(day)
    created = min(midnight + _ms(offset), cap)
    updated = min(created + _ms(edit), cap)
    return {
        "userId": p.user,
        "date": midnight,
        "metrics": {
            "steps": steps,
            "distance": distance,
            "calories": calories,
            "activeMinutes": active,
            "heartPoints": heart_points,
            "weight": weight,
            "sleepHours": sleep,
            "hydration": hydration,
            "height": height,
            "bloodPressure": {"systolic": systolic, "diastolic": diastolic} if pressure else None,
            "bodyTemperature": temperature,
        },
        "source": source,
        "activities": [],
        "createdAt": created,
        "updatedAt": updated,
    }


def _with_id(doc_id: ObjectId, doc: dict[str, Any]) -> dict[str, Any]:
    return {"_id": doc_id, **doc}


# --------------------------------------------------------------------------------------------------
# Invalid documents
# --------------------------------------------------------------------------------------------------


class _UserInvalids:
    """Builds one user's invalid documents, keeping every (userId, date) key unique."""

    def __init__(self, plan: SeedPlan, p: _Profile, valid: dict[dt.date, dict[str, Any]]) -> None:
        self.plan, self.p, self.valid = plan, p, valid
        self.r = _rng("healthmetrics-seed", plan.seed, "invalid", p.index)
        window = [plan.first_day + k * _DAY for k in range(plan.days)]
        missing = [d for d in window if d not in valid]
        self.r.shuffle(missing)
        self.free_days = missing  # popped from the end; then days before the window
        self.before_window = plan.first_day
        dup_candidates = sorted(d for d in valid if d < plan.today)  # strictly older timestamps are possible
        self.r.shuffle(dup_candidates)
        self.dup_days = dup_candidates
        self.keys: set[tuple[str, str]] = set()
        self.used_missing_user = self.used_missing_date = False

    def _free_day(self) -> dt.date:
        if self.free_days:
            return self.free_days.pop()
        self.before_window -= _DAY
        return self.before_window

    def _claim(self, user: object, date: object) -> bool:
        key = (repr(user), repr(date))
        if key in self.keys:
            return False
        self.keys.add(key)
        return True

    def _any_window_day(self) -> dt.date:
        return self.plan.first_day + self.r.randrange(self.plan.days) * _DAY

    def build(self, j: int, kind: str) -> tuple[str, dict[str, Any]]:
        """The j-th invalid document of this user, of ``kind`` (or a substitute when impossible)."""
        plan, p, r = self.plan, self.p, self.r
        cap = plan.timestamp_cap
        if kind == "duplicate_day" and not self.dup_days:
            kind = "invalid_source"  # no earlier present day to duplicate (tiny plans only)
        if kind in ("invalid_user_id", "invalid_date", "future_date", "duplicate_day"):
            anchor = self.dup_days.pop() if kind == "duplicate_day" else self._any_window_day()
        else:
            anchor = self._free_day()
        values = _rng("healthmetrics-seed", plan.seed, "invalid", p.index, j)
        doc = _day_document(p, values, anchor, cap)
        doc_id = _doc_id(plan.seed, p.index, anchor, f"x{j}")

        if kind == "wearable_field":
            name = r.choice(WEARABLE_FIELDS)
            value = r.randint(55, 110) if name == "heartRate" else r.randint(94, 99)
            (doc["metrics"] if r.random() < 0.6 else doc)[name] = value
            self._claim(p.user, doc["date"])
        elif kind == "invalid_user_id":
            variant = r.choice(("string", "number", "missing"))
            if variant == "missing" and self.used_missing_user:
                variant = "string"
            if variant == "string":
                doc["userId"] = f"user-{p.index}-{j}"  # not 24 hex digits
            elif variant == "number":
                doc["userId"] = p.index * 1_000_000 + j
            else:
                # A unique index treats a missing userId as null: offset by the user index (ms) so that
                # two users' missing-userId documents never share a date (for fewer than 86.4 M users).
                self.used_missing_user = True
                del doc["userId"]
                doc["date"] = doc["date"] + _ms(p.index)
        elif kind == "invalid_date":
            variant = r.choice(("missing", "string", "number"))
            if variant == "missing" and self.used_missing_date:
                variant = "string"
            if variant == "missing":
                self.used_missing_date = True  # one per user: a second would clash on {userId, null}
                del doc["date"]
            else:
                minute = 0
                while True:  # a string or number date is unique per user by construction of its text
                    moment = _midnight(anchor) + dt.timedelta(minutes=minute)
                    date_value: object = (
                        moment.strftime("%Y-%m-%dT%H:%M:%S.000Z") if variant == "string"
                        # Epoch *seconds*: FerretDB's unique index takes a number equal to a date's
                        # milliseconds for that date, so epoch ms would clash with the valid document.
                        else int(moment.timestamp())
                    )
                    if self._claim(p.user, date_value):
                        break
                    minute += 1
                doc["date"] = date_value
        elif kind == "future_date":
            ahead = r.randint(1, 30)
            while not self._claim(p.user, plan.today + ahead * _DAY):
                ahead += 1
            doc["date"] = _midnight(plan.today + ahead * _DAY)
            # Written by a phone with a wrong clock: stamped now, whatever its date.
            created = min(_midnight(plan.today) + _ms(r.uniform(8, 23) * 3_600_000), cap)
            doc["createdAt"] = doc["updatedAt"] = created
        elif kind == "invalid_source":
            doc["source"] = r.choice(("fitbit", "Manual", "apple_health"))
            self._claim(p.user, doc["date"])
        elif kind == "invalid_metrics":
            variant = r.choice(("missing", "null", "string", "array"))
            if variant == "missing":
                del doc["metrics"]
            else:
                doc["metrics"] = {"null": None, "string": "steps=8000", "array": []}[variant]
            self._claim(p.user, doc["date"])
        elif kind in _VALUE_KINDS:
            metrics = doc["metrics"]
            present = [m for m in METRICS if metrics[m] is not None]
            metric = r.choice(present)
            if kind == "string_value":
                metrics[metric] = str(metrics[metric])
            elif kind == "bool_value":
                metrics[metric] = r.random() < 0.5
            elif kind == "nan_value":
                metrics[metric] = math.nan
            elif metric == "weight":
                metrics[metric] = r.choice((500, 12.5, 0))
            elif r.random() < 0.4:
                metrics[metric] = -r.choice((1, 250, 0.5))
            else:
                metrics[metric] = round(METRIC_RANGES[metric][1] * r.uniform(1.2, 5), 1)
            self._claim(p.user, doc["date"])
        elif kind == "duplicate_day":
            original = self.valid[anchor]
            minute = r.randrange(60)
            while not self._claim(p.user, _midnight(anchor) + dt.timedelta(hours=10, minutes=minute)):
                minute = (minute + 1) % 60
            doc["date"] = _midnight(anchor) + dt.timedelta(hours=10, minutes=minute)
            metrics = copy.deepcopy(original["metrics"])
            for metric in ("steps", "calories", "activeMinutes"):
                metrics[metric] = round(_clamp(metrics[metric] * r.uniform(0.8, 0.97), metric))
            doc["metrics"] = metrics
            doc["source"] = original["source"]
            # Older than the valid document (whose createdAt is ≥ 07:00 of a past day): the valid one wins.
            created = _midnight(anchor) + _ms(r.uniform(1, 4) * 3_600_000)
            doc["createdAt"] = created
            doc["updatedAt"] = created + _ms(r.uniform(0, 3_600_000))
        else:  # pragma: no cover - INVALID_KINDS and this function are kept in step
            raise ValueError(f"unknown invalid kind {kind!r}")
        return kind, _with_id(doc_id, doc)


# --------------------------------------------------------------------------------------------------
# The public generator
# --------------------------------------------------------------------------------------------------


def _invalid_count(r: random.Random, valid: int, share: float) -> int:
    """Extra documents so that invalid/(valid + invalid) ≈ share; the fraction is drawn, not rounded."""
    target = valid * share / (1.0 - share)
    whole = int(target)
    return whole + (1 if r.random() < target - whole else 0)


def generate_with_kinds(plan: SeedPlan) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Every document of the plan with its invalid kind (None for a valid document). Pure, lazy."""
    cap = plan.timestamp_cap
    kinds = plan.invalid_kinds
    for index in range(plan.users):
        p = _profile(plan.seed, index)
        valid: dict[dt.date, dict[str, Any]] = {}
        for k in range(plan.days):
            day = plan.first_day + k * _DAY
            r = _rng("healthmetrics-seed", plan.seed, "day", index, day.toordinal())
            if r.random() < p.missing_share:
                continue
            doc = _with_id(_doc_id(plan.seed, index, day, "v"), _day_document(p, r, day, cap))
            valid[day] = doc
            yield None, doc
        if plan.invalid_share > 0 and kinds:
            invalids = _UserInvalids(plan, p, valid)
            count = _invalid_count(invalids.r, len(valid), plan.invalid_share)
            offset = invalids.r.randrange(len(kinds))  # round-robin from a random start: every kind gets its share
            for j in range(count):
                yield invalids.build(j, kinds[(offset + j) % len(kinds)])
    if plan.pattern:
        for doc in pattern_documents():
            yield None, doc


def generate_documents(plan: SeedPlan) -> Iterator[dict[str, Any]]:
    """The plan's documents, valid and invalid; deterministic for the plan, no I/O."""
    for _, doc in generate_with_kinds(plan):
        yield doc


def pattern_documents() -> list[dict[str, Any]]:
    """The 14 documents of the SPEC §2 worked example.

    heartPoints and hydration are null (not 0) so that exactly six metrics have values: the worked
    example counts 14 days × 6 metrics × 3 ranges = 252 snapshots.
    """
    docs = []
    for day, steps in _PATTERN_STEPS.items():
        written = _midnight(day) + dt.timedelta(hours=20)
        docs.append({
            "_id": _oid("healthmetrics-seed", "pattern", day.isoformat()),
            "userId": PATTERN_USER_ID,
            "date": _midnight(day),
            "metrics": {
                "steps": steps,
                "distance": round(steps * 0.0007, 4),  # 4.9, 5.25, …: the decimal, not 4.8999…
                "calories": steps * 4 // 100,           # steps·0.04, exact for these step counts
                "activeMinutes": 120 if day == dt.date(2025, 11, 17) else 60,
                "heartPoints": None,
                "weight": 72.5,
                "sleepHours": 7.5,
                "hydration": None,
                "height": None,
                "bloodPressure": None,
                "bodyTemperature": None,
            },
            "source": "manual",
            "activities": [],
            "createdAt": written,
            "updatedAt": written,
        })
    return docs


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


HEALTHMETRICS_INDEXES: tuple[tuple[str, list[tuple[str, int]], bool], ...] = (
    ("userId_1_date_1", [("userId", 1), ("date", 1)], True),
    ("date_-1", [("date", -1)], False),
    ("source_1", [("source", 1)], False),
    ("updatedAt_1", [("updatedAt", 1)], False),
)


def ensure_healthmetrics_indexes(collection) -> list[str]:
    """The backend's indexes (unique per user and day) plus the poller's ``updatedAt``; idempotent."""
    names = []
    for name, keys, unique in HEALTHMETRICS_INDEXES:
        try:
            names.append(collection.create_index(keys, name=name, unique=unique))
        except OperationFailure as exc:
            if exc.code in (85, 86):  # IndexOptionsConflict / IndexKeySpecsConflict
                raise RuntimeError(
                    f"{collection.name} already has an index like {name} with other options "
                    f"(needed: keys {keys}, unique={unique}); drop it and seed again"
                ) from exc
            raise
    return names


@dataclass
class SeedReport:
    generated: int
    inserted: int
    already_present: int
    invalid: int
    users: int
    duration_s: float


def _insert(collection, batch: list[dict[str, Any]]) -> tuple[int, int]:
    """(inserted, already present) for one unordered batch; any error but a duplicate key is raised."""
    try:
        collection.insert_many(batch, ordered=False)
        return len(batch), 0
    except BulkWriteError as exc:
        details = exc.details
        others = [e for e in details.get("writeErrors", []) if e.get("code") != 11000]
        if others or details.get("writeConcernErrors"):
            raise
        return details.get("nInserted", 0), len(details.get("writeErrors", []))


def seed_collection(
    collection,
    plan: SeedPlan,
    *,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> SeedReport:
    """Create the indexes, then insert the plan in unordered batches; documents already there are counted.

    ``progress`` receives the number of documents handled so far after each batch.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be ≥ 1")
    started = time.perf_counter()
    if plan.nan_values and is_local_server(collection.database.client):
        raise ValueError("the local server (FerretDB) refuses NaN and drops the connection: seed without nan_values")
    ensure_healthmetrics_indexes(collection)
    generated = inserted = present = invalid = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal inserted, present
        done, dup = _insert(collection, batch)
        inserted += done
        present += dup
        batch.clear()
        if progress is not None:
            progress(generated)

    for kind, doc in generate_with_kinds(plan):
        generated += 1
        invalid += kind is not None
        batch.append(doc)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return SeedReport(
        generated=generated,
        inserted=inserted,
        already_present=present,
        invalid=invalid,
        users=plan.users + (1 if plan.pattern else 0),
        duration_s=time.perf_counter() - started,
    )
