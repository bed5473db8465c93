"""A/B experiments: which users see which published run, decided by a hash, not a table.

An experiment splits a share of a *layer's* users between arms by weight; each arm names what
it serves, a registered model (a version number or an alias of the ranker in the MLflow
registry, `model:7`, `model:champion`) or a rule (`rule:popularity`). Why each piece:

- **Assignment is a pure function** of (salt, user id): `unit_hash` maps the pair to a uniform
  number in [0, 1) with blake2b (Python's `hash` is salted per process), and the arm is where
  that number falls among the cumulative weights. Nothing is stored per user, every process
  agrees, and a user keeps their arm across sessions for the experiment's whole life.
- **Layers** make room for experiments that run at the same time. Within a layer a user is in
  at most one experiment: each experiment takes a range of the layer's hash space
  (`traffic`, all of it by default), and two experiments of one layer may overlap in time only
  on disjoint ranges; creating one that would share users with another is refused. Layers
  hash with their own salt, so layers are independent of each other. The feed serves one run,
  so a user in experiments of two layers is served by the one that started first (ties by
  name); the other loses that user, and since the layers' hashes are independent it loses
  them evenly from every arm, which keeps its comparison fair.
- **Serving without Postgres:** create, stop and every publish write the experiments that
  can serve (not stopped, not ended) as one small JSON document to Redis (`serving_document`),
  read in the feed's existing pipeline; start and end are compared at request time, so a
  scheduled experiment starts and an ended one stops on time. Stopping rewrites the document,
  so the very next request of every user is the champion's again. Postgres stays the truth:
  the feed's Postgres path resolves from these tables, and a publish rewrites the document.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import redis
import sqlalchemy as sa

from store.keys import RedisKeys
from store.schema import experiment_arms, experiments

WEIGHT_TOLERANCE = 1e-9
RULES = ("popularity",)
DEFAULT_LAYER = "default"
DEFAULT_DURATION = timedelta(days=14)
# Names end up in Redis keys (`...:arm:{experiment}:{arm}`), so no ':' and nothing exotic.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# Serialises the writers of the serving document (see `sync_serving`).
_SYNC_LOCK = 0x60D0_E4E1

ServesKind = Literal["model", "rule"]
Status = Literal["scheduled", "running", "ended", "stopped"]


class ExperimentError(ValueError):
    """An experiment was refused or cannot be changed; the message names the problem."""


# --------------------------------------------------------------------------------------------
# Assignment (pure)
# --------------------------------------------------------------------------------------------


def unit_hash(salt: str, user_id: int) -> float:
    """A uniform number in [0, 1) for (salt, user): the same in every process and session."""
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def layer_salt(layer: str) -> str:
    """The salt of a layer's hash space (which experiment of the layer a user falls in)."""
    return f"layer\x1f{layer}"


def arm_index(cumulative: Sequence[float], u: float) -> int:
    """Where `u` in [0, 1) falls among cumulative weights (zero-weight arms are never hit)."""
    index = bisect.bisect_right(cumulative, u)
    if index < len(cumulative):
        return index
    # Weights may sum to a hair under 1: the rest belongs to the last arm with weight.
    last = len(cumulative) - 1
    while last > 0 and cumulative[last] == cumulative[last - 1]:
        last -= 1
    return last


@dataclass(frozen=True)
class Assignment:
    """The experiment and arm a user is in."""

    experiment: str
    arm: str


@dataclass(frozen=True)
class ServingExperiment:
    """What the feed needs of an experiment: when, whose (layer and traffic range), and how
    its users split (arm names and weights). Times are epoch seconds, compared per request."""

    name: str
    salt: str
    layer: str
    traffic: tuple[float, float]
    start: float
    end: float
    arms: tuple[tuple[str, float], ...]
    cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sums: list[float] = []
        total = 0.0
        for _, weight in self.arms:
            total += weight
            sums.append(total)
        object.__setattr__(self, "cumulative", tuple(sums))

    def includes(self, user_id: int) -> bool:
        """Whether the user falls in this experiment's range of its layer."""
        low, high = self.traffic
        if low <= 0.0 and high >= 1.0:
            return True
        return low <= unit_hash(layer_salt(self.layer), user_id) < high

    def arm_for(self, user_id: int) -> str:
        """The user's arm (whether or not they are in the experiment's traffic)."""
        return self.arms[arm_index(self.cumulative, unit_hash(self.salt, user_id))][0]

    def live_at(self, now: float) -> bool:
        return self.start <= now < self.end

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "salt": self.salt,
            "layer": self.layer,
            "traffic": list(self.traffic),
            "start": self.start,
            "end": self.end,
            "arms": [[name, weight] for name, weight in self.arms],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServingExperiment:
        low, high = data["traffic"]
        return cls(
            name=data["name"],
            salt=data["salt"],
            layer=data["layer"],
            traffic=(float(low), float(high)),
            start=float(data["start"]),
            end=float(data["end"]),
            arms=tuple((str(name), float(weight)) for name, weight in data["arms"]),
        )


@dataclass(frozen=True)
class ServingExperiments:
    """Every experiment that may serve, in precedence order (earliest start, then name)."""

    experiments: tuple[ServingExperiment, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.experiments, key=lambda e: (e.start, e.name)))
        object.__setattr__(self, "experiments", ordered)

    def assignment(self, user_id: int, now: float) -> Assignment | None:
        """The experiment and arm serving `user_id` at `now` (epoch seconds); None: champion."""
        for experiment in self.experiments:
            if experiment.live_at(now) and experiment.includes(user_id):
                return Assignment(experiment.name, experiment.arm_for(user_id))
        return None

    def document(self) -> bytes:
        """The JSON kept in Redis under `RedisKeys.experiments`."""
        return orjson.dumps({"experiments": [e.to_json() for e in self.experiments]})

    @classmethod
    def parse(cls, raw: bytes | str | None) -> ServingExperiments:
        """The document read back; a missing key means no experiment."""
        if raw is None:
            return NO_EXPERIMENTS
        data = orjson.loads(raw)
        return cls(tuple(ServingExperiment.from_json(e) for e in data["experiments"]))


NO_EXPERIMENTS = ServingExperiments()


# --------------------------------------------------------------------------------------------
# Definitions and validation (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Serves:
    """What an arm serves: a registered model (version number or alias) or a rule."""

    kind: ServesKind
    ref: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}"

    @classmethod
    def parse(cls, text: str) -> Serves:
        """`model:<version or alias>` or `rule:<name>`."""
        kind, _, ref = text.strip().partition(":")
        if kind not in ("model", "rule") or not ref:
            raise ExperimentError(
                f"{text!r} names nothing to serve: write model:<version or alias> "
                f"or rule:<{'|'.join(RULES)}>"
            )
        return cls("model" if kind == "model" else "rule", ref)


@dataclass(frozen=True)
class ArmSpec:
    name: str
    weight: float
    serves: Serves

    @classmethod
    def parse(cls, text: str) -> ArmSpec:
        """`NAME=WEIGHT:model:<version or alias>` or `NAME=WEIGHT:rule:<name>`."""
        name, equals, rest = text.partition("=")
        weight_text, colon, serves = rest.partition(":")
        if not equals or not colon:
            raise ExperimentError(
                f"arm {text!r}: write NAME=WEIGHT:model:<version or alias> or "
                "NAME=WEIGHT:rule:<name>"
            )
        try:
            weight = float(weight_text)
        except ValueError:
            raise ExperimentError(f"arm {name!r}: weight {weight_text!r} is not a number") from None
        return cls(name.strip(), weight, Serves.parse(serves))


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment as asked for, before it is checked and stored."""

    name: str
    arms: tuple[ArmSpec, ...]
    start: datetime
    end: datetime
    layer: str = DEFAULT_LAYER
    traffic: tuple[float, float] = (0.0, 1.0)
    salt: str = ""  # empty: a random one is drawn at creation


def validate(spec: ExperimentSpec, *, model_registered: Callable[[str], bool]) -> None:
    """Raise `ExperimentError` naming the first problem of `spec` that needs no database.

    `model_registered(ref)` says whether a version number or alias of the ranker exists in the
    registry (the caller owns the registry; `store` talks to no MLflow).
    """
    for label, value in (("experiment", spec.name), ("layer", spec.layer)):
        if not _NAME.fullmatch(value):
            raise ExperimentError(
                f"{label} name {value!r} is not allowed: use 1-63 lower-case letters, digits, "
                "'-' or '_', starting with a letter or digit"
            )
    if len(spec.arms) < 2:
        raise ExperimentError(f"experiment {spec.name!r} needs at least two arms to compare")
    seen: set[str] = set()
    for arm in spec.arms:
        if not _NAME.fullmatch(arm.name):
            raise ExperimentError(
                f"arm name {arm.name!r} is not allowed: use 1-63 lower-case letters, digits, "
                "'-' or '_', starting with a letter or digit"
            )
        if arm.name in seen:
            raise ExperimentError(f"duplicate arm name {arm.name!r}: arm names must be unique")
        seen.add(arm.name)
        if not math.isfinite(arm.weight) or not 0.0 <= arm.weight <= 1.0:
            raise ExperimentError(f"arm {arm.name!r}: weight {arm.weight} is not in [0, 1]")
    total = math.fsum(arm.weight for arm in spec.arms)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ExperimentError(
            f"arm weights sum to {total!r}, not 1 (tolerance {WEIGHT_TOLERANCE:g}): "
            + ", ".join(f"{a.name}={a.weight:g}" for a in spec.arms)
        )
    for arm in spec.arms:
        serves = arm.serves
        if serves.kind == "rule" and serves.ref not in RULES:
            raise ExperimentError(
                f"arm {arm.name!r}: unknown rule {serves.ref!r} (known: {', '.join(RULES)})"
            )
        if serves.kind == "model" and not model_registered(serves.ref):
            raise ExperimentError(
                f"arm {arm.name!r}: the registry has no model version or alias {serves.ref!r}"
            )
    if spec.start.tzinfo is None or spec.end.tzinfo is None:
        raise ExperimentError("start and end must carry a time zone")
    if spec.end <= spec.start:
        raise ExperimentError(
            f"end {spec.end.isoformat()} is not after start {spec.start.isoformat()}"
        )
    low, high = spec.traffic
    if not (0.0 <= low < high <= 1.0):
        raise ExperimentError(
            f"traffic {low:g}:{high:g} is not a range of the layer: need 0 <= from < to <= 1"
        )


# --------------------------------------------------------------------------------------------
# Postgres
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    name: str
    weight: float
    serves: Serves


@dataclass(frozen=True)
class Experiment:
    """A stored experiment."""

    name: str
    salt: str
    layer: str
    traffic: tuple[float, float]
    start: datetime
    end: datetime
    created_at: datetime
    stopped_at: datetime | None
    arms: tuple[Arm, ...]

    def status(self, now: datetime) -> Status:
        if self.stopped_at is not None:
            return "stopped"
        if now < self.start:
            return "scheduled"
        return "running" if now < self.end else "ended"

    def serving(self) -> ServingExperiment:
        end = self.end if self.stopped_at is None else min(self.end, self.stopped_at)
        return ServingExperiment(
            name=self.name,
            salt=self.salt,
            layer=self.layer,
            traffic=self.traffic,
            start=self.start.timestamp(),
            end=end.timestamp(),
            arms=tuple((arm.name, arm.weight) for arm in self.arms),
        )


# Experiments of a layer that share users with [start, end) x [low, high): a stopped one
# counts until it was stopped.
_OVERLAPPING = sa.text(
    """
SELECT name FROM experiments
WHERE layer = :layer
  AND start_at < :end_at
  AND LEAST(end_at, COALESCE(stopped_at, end_at)) > :start_at
  AND traffic_from < :traffic_to
  AND traffic_to > :traffic_from
ORDER BY start_at, name
"""
)


def create_experiment(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    spec: ExperimentSpec,
    model_registered: Callable[[str], bool],
) -> Experiment:
    """Check `spec`, store it and refresh the serving document; `ExperimentError` if refused.

    The overlap check and the insert run under a table lock that only writers of experiments
    take, so two concurrent creations cannot both pass the check.
    """
    validate(spec, model_registered=model_registered)
    salt = spec.salt or secrets.token_hex(8)
    with engine.begin() as conn:
        conn.execute(sa.text("LOCK TABLE experiments IN SHARE ROW EXCLUSIVE MODE"))
        if conn.execute(
            sa.select(experiments.c.name).where(experiments.c.name == spec.name)
        ).first():
            raise ExperimentError(f"an experiment named {spec.name!r} exists already")
        clash = [
            row.name
            for row in conn.execute(
                _OVERLAPPING,
                {
                    "layer": spec.layer,
                    "start_at": spec.start,
                    "end_at": spec.end,
                    "traffic_from": spec.traffic[0],
                    "traffic_to": spec.traffic[1],
                },
            )
        ]
        if clash:
            raise ExperimentError(
                f"experiment {spec.name!r} would overlap {', '.join(map(repr, clash))} in time "
                f"on the same users of layer {spec.layer!r}: use another --layer, a disjoint "
                "--traffic range, or times that do not overlap"
            )
        conn.execute(
            experiments.insert().values(
                name=spec.name,
                salt=salt,
                layer=spec.layer,
                traffic_from=spec.traffic[0],
                traffic_to=spec.traffic[1],
                start_at=spec.start,
                end_at=spec.end,
            )
        )
        conn.execute(
            experiment_arms.insert(),
            [
                {
                    "experiment": spec.name,
                    "name": arm.name,
                    "position": position,
                    "weight": arm.weight,
                    "serves_kind": arm.serves.kind,
                    "serves": arm.serves.ref,
                }
                for position, arm in enumerate(spec.arms)
            ],
        )
    sync_serving(engine=engine, redis_client=redis_client, keys=keys)
    created = get_experiment(engine, spec.name)
    assert created is not None
    return created


def stop_experiment(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    name: str,
) -> Experiment:
    """Stop `name` now: its users get the champion from their next request.

    The serving document is rewritten even when the experiment was stopped already, so a
    retry after a Redis failure repairs it; an unknown, stopped or ended one is refused.
    """
    with engine.begin() as conn:
        conn.execute(sa.text("LOCK TABLE experiments IN SHARE ROW EXCLUSIVE MODE"))
        stopped = conn.execute(
            experiments.update()
            .where(
                experiments.c.name == name,
                experiments.c.stopped_at.is_(None),
                experiments.c.end_at > sa.func.now(),
            )
            .values(stopped_at=sa.func.now())
            .returning(experiments.c.name)
        ).first()
    sync_serving(engine=engine, redis_client=redis_client, keys=keys)
    found = get_experiment(engine, name)
    if found is None:
        raise ExperimentError(f"no experiment named {name!r}")
    if stopped is None:
        if found.stopped_at is not None:
            raise ExperimentError(
                f"experiment {name!r} was stopped already, at {found.stopped_at.isoformat()}"
            )
        raise ExperimentError(f"experiment {name!r} ended at {found.end.isoformat()}")
    return found


def list_experiments(engine: sa.Engine) -> list[Experiment]:
    """Every stored experiment, newest start first."""
    with engine.connect() as conn:
        return _load(conn)


def arm_weights(engine: sa.Engine) -> list[dict[str, object]]:
    """(experiment, arm, weight) of every stored arm, in each experiment's arm order: what the
    online metrics' sample-ratio check and choice of control read."""
    return [
        {"experiment": experiment.name, "arm": arm.name, "weight": arm.weight}
        for experiment in list_experiments(engine)
        for arm in experiment.arms
    ]


def get_experiment(engine: sa.Engine, name: str) -> Experiment | None:
    with engine.connect() as conn:
        found = _load(conn, experiments.c.name == name)
    return found[0] if found else None


def serving_experiments(conn: sa.Connection) -> list[Experiment]:
    """The experiments that serve now or later: not stopped and not ended."""
    return _load(conn, experiments.c.stopped_at.is_(None), experiments.c.end_at > sa.func.now())


def serving_document(conn: sa.Connection) -> ServingExperiments:
    """What the feed's Postgres path assigns users with (the same as Redis's document)."""
    return ServingExperiments(tuple(e.serving() for e in serving_experiments(conn)))


def sync_serving(*, engine: sa.Engine, redis_client: redis.Redis, keys: RedisKeys) -> int:
    """Write the serving document to Redis; returns how many experiments it holds.

    Under a transaction-scoped advisory lock, so concurrent writers (a stop and a publish)
    are serialised and the last one to write read the newest state.
    """
    with engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SYNC_LOCK)))
        document = serving_document(conn)
        redis_client.set(keys.experiments(), document.document())
    return len(document.experiments)


def _load(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> list[Experiment]:
    rows = conn.execute(
        sa.select(experiments).where(*where).order_by(experiments.c.start_at.desc())
    ).all()
    if not rows:
        return []
    arms: dict[str, list[Arm]] = {}
    for arm in conn.execute(
        sa.select(experiment_arms)
        .where(experiment_arms.c.experiment.in_([r.name for r in rows]))
        .order_by(experiment_arms.c.experiment, experiment_arms.c.position)
    ):
        arms.setdefault(arm.experiment, []).append(
            Arm(arm.name, arm.weight, Serves(arm.serves_kind, arm.serves))
        )
    return [
        Experiment(
            name=row.name,
            salt=row.salt,
            layer=row.layer,
            traffic=(row.traffic_from, row.traffic_to),
            start=row.start_at,
            end=row.end_at,
            created_at=row.created_at,
            stopped_at=row.stopped_at,
            arms=tuple(arms.get(row.name, ())),
        )
        for row in rows
    ]


def utc(moment: datetime) -> datetime:
    """`moment` with UTC assumed when it carries no zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
