"""Publishing a recommendation run to Redis (hot feed) and Postgres (durable copy).

Postgres is the one authority for which run is current: the newest run of a lineage (the
champion's, or an experiment arm's) marked `published`. Redis' pointers are a cache of that
answer, and `store.recovery` (run by every API process's keeper, and by the next publish)
brings them back to it whenever they disagree or Redis lost them.

Order of operations, chosen so that a crash at any point leaves readers on a complete run:

0. Postgres: take this run's advisory lock on a connection held for the whole publish (a
   crashed publisher's connection closes, which releases it), and sweep to `failed` every
   `staged` run whose publisher holds no lock any more: a publish killed mid-way.
1. Postgres: insert the run as `staged` and COPY its rows, in one transaction.
2. Redis: write every user's list under keys that name the run (pipelined, with a TTL).
   Nothing points at these keys yet, so a half-written run is invisible.
3. Postgres: mark the run `published`: from here on it *is* the current run.
4. Redis: mark the run's meta `published`, then flip the one pointer to it (a single SET).
   A reader sees the whole old run or the whole new one, never a mix.

If anything fails, the run is marked `failed` and the error is raised; the previous run's keys
and rows are untouched, and the orphaned keys of the failed run expire on their own. If the
process dies instead, between 1 and 3 the run stays `staged` until the next publish or keeper
sweeps it; between 3 and 4 Postgres names the new run while Redis' pointer still names the
old one, until the keeper (`store.recovery.reconcile_feed`, every few seconds) flips it: both
runs are complete, so every reader still sees one whole run.

An experiment's arm is published the same way as a run of its own: the same steps, but
the pointer flipped in step 4 is the arm's (`RedisKeys.arm_run`), not `feed:current`, so each
arm flips atomically and only once its run is complete. The pipeline publishes every arm
first (`published_arms`) and the champion last (`published_feed`), so `feed_refreshed` goes
out when all of them are live.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import polars as pl
import redis
import sqlalchemy as sa

from store.cards import load_cards
from store.db import copy_frame
from store.keys import RedisKeys
from store.live_events import publish_feed_refreshed
from store.schema import recommendation_runs

RECOMMENDATION_COLUMNS = ("user_id", "rank", "event_id", "score", "reason", "propensity")
FALLBACK_COLUMNS = ("rank", "event_id", "score", "reason")
# A slot the feed did not draw was certain: what a row without a propensity means, here and
# for readers of runs published before the column existed (`store.feed`).
CERTAIN = 1.0
log = logging.getLogger(__name__)
_ITEM_FIELDS = (
    "event_id",
    "rank",
    "score",
    "reason",
    "propensity",
    "name",
    "category",
    "start_utc",
    "end_utc",
    "venue_name",
    "metro",
    "is_free",
    "price_min_cents",
)

# How the Redis copy writes times: fixed width and UTC, so readers may compare them as text.
PUBLISHED_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class PublishError(RuntimeError):
    """A run could not be published; readers stay on the previous run."""


@dataclass(frozen=True)
class PublishResult:
    run_id: str
    n_users: int
    n_rows: int
    n_fallback: int
    seconds: float


ProgressCallback = Callable[[int, int], None]
PublishStep = Literal["staged", "written", "published", "flipped"]
# Called after each step (tests and the chaos suite crash a publish there).
StepCallback = Callable[[PublishStep], None]
# The advisory lock class a publishing connection holds per run (`hashtext(run_id)` is the
# other half of the key), so a sweep can tell a live publish from a dead one.
_PUBLISH_LOCK_CLASS = 0x60D0
_LOCK_RUN = sa.text("SELECT pg_advisory_lock(:cls, hashtext(:run_id))")
_UNLOCK_RUN = sa.text("SELECT pg_advisory_unlock(:cls, hashtext(:run_id))")
_STAGED = sa.text("SELECT id FROM recommendation_runs WHERE status = 'staged' ORDER BY id")
_ABANDONED = sa.text(
    "UPDATE recommendation_runs SET status = 'failed' "
    "WHERE id = :run_id AND status = 'staged' "
    "AND pg_try_advisory_xact_lock(:cls, hashtext(:run_id)) RETURNING id"
)


def publish_run(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    run_id: str,
    model: str,
    recommendations: pl.DataFrame,
    fallback: pl.DataFrame,
    ttl_seconds: int,
    keep_runs: int = 5,
    batch_size: int = 500,
    on_progress: ProgressCallback | None = None,
    experiment: str | None = None,
    arm: str | None = None,
    model_version: str | None = None,
    on_step: StepCallback | None = None,
) -> PublishResult:
    """Publish one run; see the module docstring for the crash-safety argument.

    `recommendations` holds (user_id, rank, event_id, score, reason) and optionally
    `propensity` (the probability the slot's item was chosen, in (0, 1]; 1.0 when absent),
    ranks starting at 1; both stores keep the propensity with each item.
    `fallback` holds (rank, event_id, score, reason), the cold-start list. `on_progress`
    is called with (users written, users total) after each Redis batch. Once the run is
    live, Postgres keeps only the newest `keep_runs` runs of its lineage (the champion's, or
    the arm's); Redis expires its own by TTL. With `experiment` and `arm`, the run is that
    arm's and flips the arm's pointer; `model_version` names what ranked it. `on_step` is
    called after each step of the module docstring (1-4).
    """
    if (experiment is None) != (arm is None):
        raise ValueError("publish_run: an arm's run needs both `experiment` and `arm`")
    tags = {"experiment": experiment, "arm": arm, "model_version": model_version}
    started = time.perf_counter()
    if "propensity" not in recommendations.columns:
        recommendations = recommendations.with_columns(propensity=pl.lit(CERTAIN))
    recs = _validated(recommendations, RECOMMENDATION_COLUMNS, ("user_id", "rank"))
    if recs.height and not recs["propensity"].is_between(0.0, 1.0, closed="right").all():
        raise ValueError("publish_run: propensities must lie in (0, 1]")
    fall = _validated(fallback, FALLBACK_COLUMNS, ("rank",))
    n_users = recs["user_id"].n_unique()
    step: StepCallback = on_step or (lambda _: None)
    with publishing(engine, run_id):
        sweep_abandoned_runs(engine)
        with engine.begin() as conn:
            conn.execute(
                recommendation_runs.insert().values(
                    id=run_id,
                    status="staged",
                    model=model,
                    n_users=n_users,
                    n_rows=recs.height,
                    fallback=fall.select(FALLBACK_COLUMNS).to_dicts(),
                    **tags,
                )
            )
            copy_frame(conn, "recommendations", recs.with_columns(run_id=pl.lit(run_id)))
        step("staged")
        try:
            write_run(
                engine=engine,
                redis_client=redis_client,
                keys=keys,
                run_id=run_id,
                recommendations=recs,
                fallback=fall,
                ttl_seconds=ttl_seconds,
                tags={k: v for k, v in tags.items() if v is not None},
                batch_size=batch_size,
                on_progress=on_progress,
            )
            step("written")
            with engine.begin() as conn:
                conn.execute(
                    recommendation_runs.update()
                    .where(recommendation_runs.c.id == run_id)
                    .values(status="published", published_at=sa.func.now())
                )
            step("published")
            flip_pointer(redis_client, keys, run_id, experiment=experiment, arm=arm)
            step("flipped")
        except Exception as error:
            _mark_failed(engine, run_id)
            raise PublishError(f"publishing run {run_id} failed: {error}") from error
    if arm is None:
        publish_feed_refreshed(redis_client, keys, run_id)  # best effort: never fails it
    prune_runs(engine, keep=keep_runs)
    return PublishResult(run_id, n_users, recs.height, fall.height, time.perf_counter() - started)


def pointer_key(keys: RedisKeys, experiment: str | None, arm: str | None) -> str:
    """The pointer a lineage's run is served through: `feed:current`, or the arm's."""
    return keys.current_run() if arm is None else keys.arm_run(experiment or "", arm)


def flip_pointer(
    redis_client: redis.Redis,
    keys: RedisKeys,
    run_id: str,
    *,
    experiment: str | None,
    arm: str | None,
) -> None:
    """Mark the run's meta `published`, then point its lineage at it: a cursor may pin a run
    only once it carries the mark (`store.feed`). Two commands in order, not a MULTI, so the
    pointer and the meta may live on different Redis Cluster slots; a crash between them
    leaves a marked run nobody was served, which no cursor can name."""
    pipe = redis_client.pipeline(transaction=False)
    pipe.hset(keys.run_meta(run_id), "published", 1)
    pipe.set(pointer_key(keys, experiment, arm), run_id)
    pipe.execute()


@contextmanager
def publishing(engine: sa.Engine, run_id: str) -> Iterator[None]:
    """Hold `run_id`'s advisory lock for the block, on a connection of its own: while it is
    held the run's publisher is alive, so `sweep_abandoned_runs` leaves the run alone."""
    with engine.connect() as conn:
        conn.execute(_LOCK_RUN, {"cls": _PUBLISH_LOCK_CLASS, "run_id": run_id})
        conn.commit()  # a session lock: it outlives this transaction, not the connection
        try:
            yield
        finally:
            try:  # the pool keeps the connection open: the lock must be let go explicitly
                conn.execute(_UNLOCK_RUN, {"cls": _PUBLISH_LOCK_CLASS, "run_id": run_id})
                conn.commit()
            except sa.exc.SQLAlchemyError:
                conn.invalidate()  # closing the connection releases the lock as well


def sweep_abandoned_runs(engine: sa.Engine) -> list[str]:
    """Mark `failed` every `staged` run whose publisher is gone (its lock is free: the
    process died, or lost its connection); returns their ids. A live publish is untouched."""
    with engine.connect() as conn:
        staged = list(conn.execute(_STAGED).scalars())
    swept = []
    for run_id in staged:
        with engine.begin() as conn:
            if conn.execute(_ABANDONED, {"cls": _PUBLISH_LOCK_CLASS, "run_id": run_id}).first():
                swept.append(run_id)
    if swept:
        log.warning("marked %d abandoned staged runs failed: %s", len(swept), ", ".join(swept))
    return swept


def write_run(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    run_id: str,
    recommendations: pl.DataFrame,
    fallback: pl.DataFrame,
    ttl_seconds: int,
    tags: dict[str, str],
    batch_size: int = 500,
    on_progress: ProgressCallback | None = None,
    drop_missing: bool = False,
) -> int:
    """Write a run's keys (every user's list, the cold-start list, the meta) to Redis, with
    cards read from Postgres now; returns the users written. Shared by publishing and
    `store.recovery`'s restore. A publish refuses events missing from the catalogue; a
    restore (`drop_missing`) leaves out those deleted since, as a reader would."""
    with engine.connect() as conn:
        cards = load_cards(
            conn, recommendations["event_id"].unique().to_list() + fallback["event_id"].to_list()
        )
    if drop_missing:
        known = cards["event_id"].implode()
        recommendations = recommendations.filter(pl.col("event_id").is_in(known))
        fallback = fallback.filter(pl.col("event_id").is_in(known))
    blobs = _user_blobs(recommendations, cards)
    _write_redis(
        redis_client,
        keys,
        run_id,
        blobs,
        _fallback_blob(fallback, cards),
        ttl_seconds,
        batch_size,
        on_progress,
        tags,
    )
    return blobs.height


def _validated(
    frame: pl.DataFrame, columns: tuple[str, ...], unique: tuple[str, ...]
) -> pl.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"publish_run: missing columns {missing}")
    frame = frame.select(columns)
    if frame.height and frame.select(pl.struct(unique).is_duplicated().any()).item():
        raise ValueError(f"publish_run: duplicate {unique} rows")
    if frame.height and frame["rank"].min() < 1:  # type: ignore[operator]
        raise ValueError("publish_run: ranks start at 1")
    nulls = [c for c in columns if frame[c].null_count()]
    if nulls:
        raise ValueError(f"publish_run: null values in {nulls}")
    return frame


def _items(frame: pl.DataFrame, cards: pl.DataFrame) -> pl.DataFrame:
    """Join ranked rows to their cards and encode each row as one JSON object (the
    cold-start list has no propensity column: every one of its slots is certain)."""
    if "propensity" not in frame.columns:
        frame = frame.with_columns(propensity=pl.lit(CERTAIN))
    joined = frame.join(cards.drop("is_active"), on="event_id", how="inner")
    lost = frame.height - joined.height
    if lost:
        raise PublishError(f"{lost} recommended events are missing from the events table")
    return joined.with_columns(
        pl.col("start_utc").dt.strftime(PUBLISHED_TIME_FORMAT),
        pl.col("end_utc").dt.strftime(PUBLISHED_TIME_FORMAT),
    ).with_columns(item=pl.struct(_ITEM_FIELDS).struct.json_encode())


def _user_blobs(recs: pl.DataFrame, cards: pl.DataFrame) -> pl.DataFrame:
    return (
        _items(recs, cards)
        .sort("user_id", "rank")
        .group_by("user_id", maintain_order=True)
        .agg(blob=pl.concat_str(pl.lit("["), pl.col("item").str.join(","), pl.lit("]")))
    )


def _fallback_blob(fall: pl.DataFrame, cards: pl.DataFrame) -> str:
    items = _items(fall, cards).sort("rank")["item"].to_list()
    return "[" + ",".join(items) + "]"


def _write_redis(
    client: redis.Redis,
    keys: RedisKeys,
    run_id: str,
    blobs: pl.DataFrame,
    fallback_blob: str,
    ttl_seconds: int,
    batch_size: int,
    on_progress: ProgressCallback | None,
    tags: dict[str, str],
) -> None:
    total = blobs.height
    written = 0
    for batch in blobs.iter_slices(batch_size):
        pipe = client.pipeline(transaction=False)
        for user_id, blob in batch.iter_rows():
            pipe.set(keys.run_user_feed(run_id, user_id), blob, ex=ttl_seconds)
        pipe.execute()
        written += batch.height
        if on_progress is not None:
            on_progress(written, total)
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.run_fallback(run_id), fallback_blob, ex=ttl_seconds)
    meta: dict[str, str | int | float] = {"n_users": total, "published_at": time.time(), **tags}
    pipe.hset(keys.run_meta(run_id), mapping=meta)  # type: ignore[arg-type]
    pipe.expire(keys.run_meta(run_id), ttl_seconds)
    pipe.execute()


def prune_runs(engine: sa.Engine, *, keep: int) -> int:
    """Delete all but the newest `keep` runs of each lineage (the champion's, and each
    experiment arm's); their rows go by cascade. Returns the runs deleted.

    A lineage's published run is always among its newest, so readers never lose it, however
    many arms a publish adds.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1: the published run must survive")
    runs = recommendation_runs.c
    position = (
        sa.func.row_number()
        .over(
            partition_by=(runs.experiment, runs.arm),
            order_by=(runs.created_at.desc(), runs.id.desc()),
        )
        .label("position")
    )
    ranked = sa.select(runs.id, position).subquery()
    stale = sa.select(ranked.c.id).where(ranked.c.position > keep)
    with engine.begin() as conn:
        result = conn.execute(recommendation_runs.delete().where(runs.id.in_(stale)))
    return result.rowcount


def _mark_failed(engine: sa.Engine, run_id: str) -> None:
    """Best effort: a failed run must never be picked up as published."""
    try:
        with engine.begin() as conn:
            conn.execute(
                recommendation_runs.update()
                .where(recommendation_runs.c.id == run_id)
                .values(status="failed")
            )
    except sa.exc.SQLAlchemyError:
        log.exception(
            "could not mark run %s as failed; it stays 'staged' and is never read", run_id
        )
