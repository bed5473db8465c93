"""Putting Redis back in line with Postgres, which decides which run is current.

Why: Redis is a cache of the published runs. It can lose them (restarted empty, keys expired
while the pipeline stalled) or disagree with Postgres (a publish killed after marking its run
`published` but before flipping the pointer). Until this runs, the first case serves every
feed from the slower Postgres fallback, and the second serves the old run from Redis while
the fallback and `/health` name the new one.

`reconcile_feed` compares, for every lineage (the champion's run and each serving
experiment arm's), the run Postgres has published with the pointer Redis holds and whether
that run's keys are complete (its meta is there). When they differ it rewrites the run's keys
from Postgres' durable copy (the same writer as a publish, `store.publish.write_run`), adds
back the "seen since publish" marks from the swipes table, rewrites the experiments' serving
document, and then flips the pointer. Each API process runs it every few seconds
(`serving.keeper`), so this happens without a human and without Dagster's daemon; a Redis lock
lets one process do the writing while the others keep serving.

Races with a publish: Redis is read before Postgres, and the pointer is flipped only if it
still holds what was read (compare-and-set in Lua). So a reconcile that read an older run
than a concurrent publish can never flip the pointer back to it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
import redis
import sqlalchemy as sa

from store.db import read_frame
from store.experiments import sync_serving
from store.keys import RedisKeys
from store.publish import (
    FALLBACK_COLUMNS,
    RECOMMENDATION_COLUMNS,
    pointer_key,
    sweep_abandoned_runs,
    write_run,
)
from store.redis_values import text

log = logging.getLogger(__name__)

RESTORE_LOCK_SECONDS = 300
_SEEN_BATCH = 1000

# The published run of every lineage that may serve: the champion's, and the arms of
# experiments not stopped and not ended (a stopped experiment's arms serve nobody).
_CURRENT_RUNS = sa.text(
    """
SELECT DISTINCT ON (r.experiment, r.arm)
       r.id, r.experiment, r.arm, r.model_version, r.published_at, r.fallback
FROM recommendation_runs AS r
LEFT JOIN experiments AS x ON x.name = r.experiment
WHERE r.status = 'published' AND r.published_at IS NOT NULL
  AND (r.experiment IS NULL OR (x.stopped_at IS NULL AND x.end_at > now()))
ORDER BY r.experiment, r.arm, r.published_at DESC, r.id DESC
"""
)
_SEEN_SINCE = sa.text(
    "SELECT user_id, array_agg(DISTINCT event_id) AS event_ids FROM swipes "
    "WHERE created_at >= :since GROUP BY user_id"
)
# KEYS: the pointer. ARGV: the pointer's value when read ('' for none), the run id to set.
_REPOINT_LUA = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class CurrentRun:
    """The run Postgres says a lineage serves (`experiment`/`arm` None: the champion's)."""

    run_id: str
    experiment: str | None
    arm: str | None
    model_version: str | None
    published_at: datetime
    fallback: list[dict[str, object]]

    @property
    def lineage(self) -> str:
        return "champion" if self.arm is None else f"arm {self.experiment}/{self.arm}"


@dataclass(frozen=True)
class Drift:
    """A lineage where Redis does not serve Postgres' run, and why."""

    run: CurrentRun
    pointer: str | None  # the run Redis' pointer names
    complete: bool  # whether the run's keys are in Redis

    def reason(self) -> str:
        run = self.run
        if self.pointer is None:
            return f"redis holds no run for the {run.lineage} (postgres: {run.run_id})"
        if self.pointer != run.run_id:
            return (
                f"redis serves run {self.pointer} for the {run.lineage} while postgres "
                f"published {run.run_id}"
            )
        return f"redis lost the keys of run {run.run_id} ({run.lineage})"


@dataclass
class Reconciled:
    """What one `reconcile_feed` saw and did."""

    swept: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    repointed: list[str] = field(default_factory=list)
    busy: bool = False  # another process holds the restore lock


def current_runs(conn: sa.Connection) -> list[CurrentRun]:
    return [
        CurrentRun(
            str(row.id),
            row.experiment,
            row.arm,
            row.model_version,
            row.published_at,
            list(row.fallback),
        )
        for row in conn.execute(_CURRENT_RUNS)
    ]


def find_drift(
    redis_client: redis.Redis, keys: RedisKeys, runs: list[CurrentRun]
) -> tuple[list[Drift], bool]:
    """The lineages Redis does not serve as Postgres says (one round trip), and whether the
    experiments' serving document is missing."""
    pipe = redis_client.pipeline(transaction=False)
    for run in runs:
        pipe.get(pointer_key(keys, run.experiment, run.arm))
        pipe.exists(keys.run_meta(run.run_id))
    pipe.exists(keys.experiments())
    replies = pipe.execute()
    drift = []
    for index, run in enumerate(runs):
        pointer, complete = replies[2 * index], bool(replies[2 * index + 1])
        named = None if pointer is None else text(pointer)
        if named != run.run_id or not complete:
            drift.append(Drift(run, named, complete))
    return drift, not replies[-1]


def reconcile_feed(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    ttl_seconds: int,
    lock_seconds: int = RESTORE_LOCK_SECONDS,
) -> Reconciled:
    """Sweep abandoned publishes, then make Redis serve what Postgres published (module
    docstring). Raises `redis.RedisError` or SQLAlchemy errors when a store is down."""
    result = Reconciled(swept=sweep_abandoned_runs(engine))
    with engine.connect() as conn:
        lineages = current_runs(conn)
    drift, document_missing = find_drift(redis_client, keys, lineages)
    with engine.connect() as conn:  # after Redis was read: see "Races" above
        if current_runs(conn) != lineages:
            return result  # a publish landed in between: look again next time
    result.drift = drift
    if not drift and not document_missing:
        return result
    token = secrets.token_hex(16)
    if not redis_client.set(keys.restore_lock(), token, nx=True, px=lock_seconds * 1000):
        result.busy = True
        return result
    try:
        if document_missing:
            sync_serving(engine=engine, redis_client=redis_client, keys=keys)
        for item in drift:
            run = item.run
            if not item.complete:
                restore_run(engine, redis_client, keys, run, ttl_seconds)
                result.restored.append(run.run_id)
            redis_client.hset(keys.run_meta(run.run_id), "published", 1)  # as a publish does
            flipped = redis_client.eval(
                _REPOINT_LUA,
                1,
                pointer_key(keys, run.experiment, run.arm),
                item.pointer or "",
                run.run_id,
            )
            if flipped:
                result.repointed.append(run.run_id)
            log.warning("%s: %s", item.reason(), "fixed" if flipped else "changed meanwhile")
    finally:
        redis_client.eval(_RELEASE_LUA, 1, keys.restore_lock(), token)
    return result


def restore_run(
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    run: CurrentRun,
    ttl_seconds: int,
) -> int:
    """Write `run`'s keys from Postgres' copy, and the seen marks of swipes since it was
    published (Redis lost them with the run); returns the users written."""
    columns = ", ".join(RECOMMENDATION_COLUMNS)
    quoted = run.run_id.replace("'", "''")
    with engine.connect() as conn:
        rows = read_frame(
            conn,
            f"SELECT {columns} FROM recommendations WHERE run_id = '{quoted}'",
            {
                "user_id": pl.Int64(),
                "rank": pl.Int64(),
                "event_id": pl.Utf8(),
                "score": pl.Float64(),
                "reason": pl.Utf8(),
                "propensity": pl.Float64(),
            },
        )
        seen = conn.execute(_SEEN_SINCE, {"since": run.published_at}).all()
    fallback = pl.DataFrame(
        run.fallback,
        schema={
            "rank": pl.Int64(),
            "event_id": pl.Utf8(),
            "score": pl.Float64(),
            "reason": pl.Utf8(),
        },
    ).select(FALLBACK_COLUMNS)
    tags = {"published": "1"}
    tags.update({k: v for k, v in _tags(run).items() if v is not None})
    written = write_run(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        run_id=run.run_id,
        recommendations=rows,
        fallback=fallback,
        ttl_seconds=ttl_seconds,
        tags=tags,
        drop_missing=True,
    )
    for start in range(0, len(seen), _SEEN_BATCH):
        pipe = redis_client.pipeline(transaction=False)
        for user_id, event_ids in seen[start : start + _SEEN_BATCH]:
            pipe.sadd(keys.seen(run.run_id, user_id), *event_ids)
            pipe.expire(keys.seen(run.run_id, user_id), ttl_seconds)
        pipe.execute()
    log.warning("restored run %s (%s) into redis: %d users", run.run_id, run.lineage, written)
    return written


def _tags(run: CurrentRun) -> dict[str, str | None]:
    return {"experiment": run.experiment, "arm": run.arm, "model_version": run.model_version}
