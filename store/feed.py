"""Reading a user's feed: Redis first, Postgres when Redis has nothing or is down.

Both paths return the same `Feed`, so serving does not care where it came from. The run gives
the ranked ids; cards are read live at read time (Postgres, or the API's cache that Redis
counters keep exact: `store.live_cache`). Items whose event
has started, was cancelled or is full, or that the user swiped since the run was published,
are dropped at read time; the published list itself is immutable.

Which run: the champion's (`feed:current`), unless the user is in a running experiment
(`store.experiments`: a hash of the user against the serving document kept in Redis), in
which case it is their arm's run (the arm's pointer). An arm not published yet serves the
champion, with a log line. The `Feed` names the experiment, arm and model version of the run
it was read from, so what was served can be attributed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, NamedTuple

import orjson
import redis
import redis.asyncio
import sqlalchemy as sa

from store.breaker import CircuitOpenError
from store.cards import EventCard, load_live_cards, load_mutual_friends
from store.experiments import Assignment, ServingExperiments, serving_document
from store.keys import RedisKeys
from store.live_cache import (
    FriendIds,
    LiveCache,
    LogHead,
    LogId,
    changes_command,
    head_commands,
    parse_changes,
)
from store.publish import CERTAIN, PUBLISHED_TIME_FORMAT
from store.redis_batch import RedisBatcher
from store.redis_values import text
from store.steps import (
    PostgresStep,
    RedisStep,
    Steps,
    on_one_connection,
    run_async,
    run_blocking,
)

log = logging.getLogger(__name__)

FeedSource = Literal["redis", "postgres", "none"]


class RunGone(LookupError):
    """The run a cursor pinned is no longer kept in either store: the client starts over."""


@dataclass(frozen=True)
class Feed:
    """A user's ranked feed. `cold_start` means the run had no list for this user.

    `has_more` says items ranked after the last one returned are still left to page through.
    `experiment` and `arm` name the experiment arm whose run was served (None: the champion's
    run); `model_version` is what ranked that run (a registry version or a rule), if known.
    `redis_failed` says Redis could not be reached for this read (so recording its
    impressions is not even tried: `store.impressions`).
    """

    user_id: int
    run_id: str | None
    source: FeedSource
    cold_start: bool
    items: list[FeedItem] = field(default_factory=list)
    has_more: bool = False
    experiment: str | None = None
    arm: str | None = None
    model_version: str | None = None
    redis_failed: bool = False


def read_feed(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    user_id: int,
    limit: int = 50,
    now: datetime | None = None,
    run_id: str | None = None,
    after_rank: int = 0,
    origin: tuple[float, float] | None = None,
    cache: LiveCache | None = None,
) -> Feed:
    """The published feed for `user_id`, at most `limit` items, freshest source first.

    `run_id` pins a run (a page cursor does, so paging stays in one list while a newer run
    is published) and `after_rank` continues after the last rank already served; ranks are
    stable within a run, so swipes between pages never shift what the next page starts at.
    Raises `RunGone` when the pinned run is kept by neither store any more.

    The run only says which events, in what order; cards are read live for the page's ids,
    so events cancelled or sold out since the run was published leave the feed at once, on
    both paths. With a `cache` (the API's), cards are reused while their Redis counters say
    they are unchanged (`store.live_cache`); without one, or when Redis is down, they come
    from Postgres. The viewer's friends come from Redis's shared copy when it is current.
    `origin` (lat, lon) fills each `distance_km`. Blocking; `read_feed_async` is the same
    read for the event loop.
    """
    page = _Page(limit=limit, after_rank=after_rank, run_id=run_id)
    steps = _feed_steps(keys, user_id, page, now or datetime.now(UTC), origin, cache)
    return run_blocking(steps, engine=engine, redis_client=redis_client)


async def read_feed_async(
    *,
    engine: sa.Engine,
    redis_client: redis.asyncio.Redis | RedisBatcher,
    keys: RedisKeys,
    user_id: int,
    limit: int = 50,
    now: datetime | None = None,
    run_id: str | None = None,
    after_rank: int = 0,
    origin: tuple[float, float] | None = None,
    cache: LiveCache | None = None,
) -> Feed:
    """`read_feed` on the event loop: Redis through the asyncio client (or the API's batcher,
    sharing pipelines with concurrent requests), Postgres in a thread."""
    page = _Page(limit=limit, after_rank=after_rank, run_id=run_id)
    steps = _feed_steps(keys, user_id, page, now or datetime.now(UTC), origin, cache)
    return await run_async(steps, engine=engine, redis_client=redis_client)


def _feed_steps(
    keys: RedisKeys,
    user_id: int,
    page: _Page,
    now: datetime,
    origin: tuple[float, float] | None,
    cache: LiveCache | None,
) -> Steps[Feed]:
    """The feed read as steps (`store.steps`): the list, the viewer's friends, the cards."""
    try:
        ranked = yield from _from_redis(keys, user_id, now, page, cache)
    except redis.RedisError as error:
        log.warning(
            "redis unavailable, reading feed of user %s from postgres",
            user_id,
            exc_info=not isinstance(error, CircuitOpenError),  # no trace per request while open
        )
        # Nothing more is asked of Redis: the rest is Postgres alone, in one thread hop.
        rest = _postgres_feed(keys, user_id, page, now, origin, None, redis_up=False)
        return (yield on_one_connection(rest))
    if ranked is None:  # Redis holds no run, or its keys expired
        return (yield from _postgres_feed(keys, user_id, page, now, origin, cache, redis_up=True))
    return (yield from _page_of(keys, user_id, page, now, origin, cache, ranked, redis_up=True))


def _postgres_feed(
    keys: RedisKeys,
    user_id: int,
    page: _Page,
    now: datetime,
    origin: tuple[float, float] | None,
    cache: LiveCache | None,
    *,
    redis_up: bool,
) -> Steps[Feed]:
    """The list from Postgres, then its page (from Postgres alone when Redis is down)."""
    ranked = yield PostgresStep(partial(_from_postgres, user_id=user_id, page=page, now=now))
    return (yield from _page_of(keys, user_id, page, now, origin, cache, ranked, redis_up=redis_up))


def _page_of(
    keys: RedisKeys,
    user_id: int,
    page: _Page,
    now: datetime,
    origin: tuple[float, float] | None,
    cache: LiveCache | None,
    ranked: _Ranked,
    *,
    redis_up: bool,
) -> Steps[Feed]:
    """The page of `ranked`: the viewer's friends, the live cards, what is left to show.

    With `redis_up` false it asks only Postgres (no friend copy, no card cache)."""
    friends = yield from _friends(keys, user_id, ranked.friend_ids if redis_up else None)
    position = (yield from _catch_up(keys, cache, ranked)) if redis_up else None
    cards = _Cards(cache, position)
    kept, more = yield from _hydrate(ranked.rows, page, now, cards)
    items = [
        FeedItem(
            card=card,
            rank=row.rank,
            score=row.score,
            reason=row.reason,
            friends_going=card.friends_going(friends),
            distance_km=card.distance_km(origin),
            propensity=row.propensity,
        )
        for row, card in kept
    ]
    return Feed(
        user_id,
        ranked.run_id,
        ranked.source,
        ranked.cold_start,
        items,
        more,
        ranked.experiment,
        ranked.arm,
        ranked.model_version,
        redis_failed=not redis_up,
    )


class FeedItem(NamedTuple):
    """One ranked event in a user's feed: its live card, where and why it was ranked, and
    what depends on the viewer (friends going as they allow, distance from `origin`).

    `propensity` is the probability the run chose this item for this slot given the items
    above it (`models.exploration`): 1.0 for a deterministic slot, the cold-start list and
    runs published before propensities were kept. Impressions log it; the API does not show
    it. A tuple rather than a dataclass: fifty are built per feed request."""

    card: EventCard
    rank: int
    score: float
    reason: str
    friends_going: int
    distance_km: float | None
    propensity: float = CERTAIN

    @property
    def event_id(self) -> str:
        return self.card.event_id


class _Row(NamedTuple):
    """A ranked event as the run holds it (a tuple: fifty are built per request).

    `propensity` is the published item's, 1.0 when the run wrote none (deterministic slots,
    and every run published before exploration)."""

    event_id: str
    rank: int
    score: float
    reason: str
    propensity: float


@dataclass(frozen=True)
class _Ranked:
    """A run's list for one user, before cards: what either store answers.

    On the Redis path, what the API's caches need rides along in the same round trip: the
    viewer's stored friend list, the catalogue epoch and the change log's head. None on the
    Postgres path, where nothing cached is trusted.
    """

    run_id: str | None
    source: FeedSource
    cold_start: bool
    rows: list[_Row]
    friend_ids: FriendIds | None = None
    epoch: int | None = None
    log_head: LogHead | None = None
    experiment: str | None = None
    arm: str | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class _Page:
    limit: int
    after_rank: int
    run_id: str | None


def _friends(keys: RedisKeys, user_id: int, stored: FriendIds | None) -> Steps[frozenset[int]]:
    """The viewer's mutual friends: Redis's shared copy when current, else Postgres (and the
    copy is stored again for the next read, by any process)."""
    cached = stored.cached() if stored is not None else None
    if cached is not None:
        return cached
    friends: frozenset[int] = yield PostgresStep(partial(load_mutual_friends, user_id=user_id))
    if stored is not None:
        try:
            yield RedisStep([stored.set_command(keys, user_id, friends)])
        except redis.RedisError:
            log.warning("could not store the friend list of user %s", user_id, exc_info=True)
    return friends


def _catch_up(keys: RedisKeys, cache: LiveCache | None, ranked: _Ranked) -> Steps[LogId | None]:
    """Bring `cache` up to the change log read with the list; the position cards are
    trusted at, or None when the cache cannot be used for this read."""
    if cache is None or ranked.epoch is None or ranked.log_head is None:
        return None
    head = ranked.log_head
    after = cache.catch_up_from(ranked.epoch, head)
    if after is not None:
        try:
            (reply,) = yield RedisStep([changes_command(keys, after, head.newest)])
        except redis.RedisError:
            log.warning("redis unavailable, reading cards from postgres", exc_info=True)
            return None
        changes, complete = parse_changes(reply)
        cache.apply(changes, head.newest, complete=complete)
    return head.newest


class _Cards:
    """Where a page's cards come from: the API's cache (at a log position), or Postgres."""

    def __init__(self, cache: LiveCache | None, position: LogId | None) -> None:
        self.cache = cache if position is not None else None
        self.position = position

    def of(self, event_ids: list[str]) -> Steps[dict[str, EventCard]]:
        if self.cache is None or self.position is None:
            return (yield PostgresStep(partial(load_live_cards, event_ids=event_ids)))
        found, missing = self.cache.lookup(event_ids)
        if missing:
            loaded = yield PostgresStep(partial(load_live_cards, event_ids=missing))
            self.cache.keep(loaded, self.position)
            found.update(loaded)
        return found


def _hydrate(
    rows: list[_Row], page: _Page, now: datetime, cards: _Cards
) -> Steps[tuple[list[tuple[_Row, EventCard]], bool]]:
    """Live cards for the rows after the cursor, dropping unshowable events, `limit` at most.

    Dropping happens before the page is cut, so `has_more` and the cursor stay exact. Cards
    are read for `limit + 1` rows first (one read when nothing is dropped, the usual case)
    and, while drops leave the page short, for twice as many of the following rows again.
    """
    rest = [r for r in rows if r.rank > page.after_rank]
    wanted = page.limit + 1  # one more than the page, to know whether another page exists
    kept: list[tuple[_Row, EventCard]] = []
    start, chunk = 0, wanted
    while len(kept) < wanted and start < len(rest):
        batch = rest[start : start + chunk]
        start += len(batch)
        chunk *= 2
        found = yield from cards.of(list(dict.fromkeys(r.event_id for r in batch)))
        for row in batch:
            card = found.get(row.event_id)
            if card is not None and card.showable(now):
                kept.append((row, card))
    return kept[: page.limit], len(kept) > page.limit


def mark_seen(
    *,
    redis_client: redis.Redis,
    keys: RedisKeys,
    user_id: int,
    event_ids: Iterable[str],
    ttl_seconds: int,
) -> None:
    """Remember swipes made since the served run was published, so the feed drops them.

    The served run is the champion's or, for a user in a running experiment, their arm's;
    both are marked (the arm's may be unpublished, and then the champion's is served).
    """
    ids = list(event_ids)
    if not ids:
        return
    current, document = redis_client.mget(keys.current_run(), keys.experiments())
    runs = {text(current)} if current is not None else set()
    assignment = ServingExperiments.parse(document).assignment(user_id, time.time())
    if assignment is not None:
        arm_run = redis_client.get(keys.arm_run(assignment.experiment, assignment.arm))
        if arm_run is not None:
            runs.add(text(arm_run))
    if not runs:
        return
    pipe = redis_client.pipeline(transaction=False)
    for run_id in sorted(runs):
        key = keys.seen(run_id, user_id)
        pipe.sadd(key, *ids)
        pipe.expire(key, ttl_seconds)
    pipe.execute()


def _from_redis(
    keys: RedisKeys, user_id: int, now: datetime, page: _Page, cache: LiveCache | None
) -> Steps[_Ranked | None]:
    """The list from Redis, or None when Redis holds no run (or the run's keys expired).

    Unpinned reads guess the run to serve (the user's arm's run, or the champion's, as seen
    last time) and check the guess in the same round trip: the pointers and the serving
    document ride along. The steady state costs one round trip; a wrong guess (a publish, a
    new or stopped experiment since) costs another. The viewer's stored friend list and the
    run's meta (experiment, arm, model version) ride along too.
    """
    moment = now.timestamp()
    pinned = page.run_id is not None
    run_id = page.run_id
    assignment: Assignment | None = None
    if not pinned and cache is not None:
        if cache.experiments is not None:
            assignment = cache.experiments.assignment(user_id, moment)
        run_id = _hint(cache, assignment)
    settled = False
    replies: list[Any] = []
    for _ in range(4):
        commands = _run_commands(keys, run_id, user_id) if run_id is not None else []
        if not pinned:
            commands += [("GET", keys.current_run()), ("GET", keys.experiments())]
            if assignment is not None:
                commands.append(("GET", keys.arm_run(assignment.experiment, assignment.arm)))
        replies = yield RedisStep(commands)
        if pinned:
            settled = True
            break
        pointers = replies[len(commands) - (3 if assignment is not None else 2) :]
        current, document = pointers[0], pointers[1]
        assigned = _experiments(cache, document).assignment(user_id, moment)
        if assigned != assignment:  # an experiment started, ended or stopped since the guess
            assignment = assigned
            run_id = _hint(cache, assignment) if assignment is not None else _maybe(current)
            continue
        target = current
        if assignment is not None:
            if pointers[2] is None:
                _unpublished_arm(assignment)
            else:
                target = pointers[2]
        if target is None:
            return None
        target_id = text(target)
        if cache is not None:
            if assignment is None or pointers[2] is None:
                cache.current_run_hint = _maybe(current)
            else:
                cache.arm_run_hints[assignment] = target_id
        if target_id != run_id:
            run_id = target_id  # published since the guess: read that run
            continue
        settled = True
        break
    if not settled or run_id is None:
        return None  # pointers kept moving: let Postgres answer
    own, fallback, seen, epoch, friends_version, friend_ids, newest, oldest, meta = replies[:9]
    blob = own if own is not None else fallback
    if blob is None:
        return None  # the run's keys expired: let Postgres answer
    seen_ids = {text(s) for s in seen}
    # The published start time spares the card reads the events that have started already.
    # Published times are all `YYYY-MM-DDTHH:MM:SSZ`, so comparing the text compares the times
    # (and skips parsing fifty datetimes per request).
    now_text = now.astimezone(UTC).strftime(PUBLISHED_TIME_FORMAT)
    kept = [
        _row_from_json(item)
        for item in orjson.loads(blob)
        if item["event_id"] not in seen_ids and (item.get("start_utc") or "9") > now_text
    ]
    if pinned and meta[3] is None:
        # A cursor may name only a run whose pointer was flipped (publish step 4, or a
        # restore): a staged or failed run's keys, or an older publisher's, are left to
        # Postgres, which serves a pinned run only if it was published.
        return None
    stored_friends = FriendIds(epoch, friends_version, friend_ids)
    experiment, arm, model_version = (_maybe(value) for value in meta[:3])
    return _Ranked(
        run_id,
        "redis",
        own is None,
        kept,
        stored_friends,
        epoch=int(epoch or 0),
        log_head=LogHead(newest, oldest),
        experiment=experiment,
        arm=arm,
        model_version=model_version,
    )


def _run_commands(keys: RedisKeys, run_id: str, user_id: int) -> list[tuple[Any, ...]]:
    """What a read needs of one run, and what the caches need, in one pipeline (9 replies)."""
    return [
        ("GET", keys.run_user_feed(run_id, user_id)),
        ("GET", keys.run_fallback(run_id)),
        ("SMEMBERS", keys.seen(run_id, user_id)),
        ("GET", keys.card_epoch()),
        ("GET", keys.friends_version(user_id)),
        ("GET", keys.friend_ids(user_id)),
        *head_commands(keys),
        ("HMGET", keys.run_meta(run_id), "experiment", "arm", "model_version", "published"),
    ]


def _hint(cache: LiveCache | None, assignment: Assignment | None) -> str | None:
    """The run this process last saw serving `assignment` (None: the champion's)."""
    if cache is None:
        return None
    if assignment is None:
        return cache.current_run_hint
    return cache.arm_run_hints.get(assignment)


def _experiments(cache: LiveCache | None, raw: bytes | None) -> ServingExperiments:
    """The serving document, parsed once per change when a cache keeps it."""
    if cache is None:
        return ServingExperiments.parse(raw)
    if cache.experiments is None or cache.experiments_raw != raw:
        cache.experiments = ServingExperiments.parse(raw)
        cache.experiments_raw = raw
    return cache.experiments


# When each unpublished arm was last logged: once a minute per process is enough to notice.
_UNPUBLISHED_LOGGED: dict[Assignment, float] = {}
_UNPUBLISHED_LOG_SECONDS = 60.0


def _unpublished_arm(assignment: Assignment) -> None:
    now = time.monotonic()
    if now - _UNPUBLISHED_LOGGED.get(assignment, -_UNPUBLISHED_LOG_SECONDS) >= 60.0:
        _UNPUBLISHED_LOGGED[assignment] = now
        log.warning(
            "arm %r of experiment %r has no published run yet: serving its users the champion",
            assignment.arm,
            assignment.experiment,
        )


_RUN_COLUMNS = "id, fallback, published_at, experiment, arm, model_version"
# The champion's newest run: arm runs are published beside it and never served by default.
_LATEST_RUN = sa.text(
    f"SELECT {_RUN_COLUMNS} FROM recommendation_runs "
    "WHERE status = 'published' AND experiment IS NULL ORDER BY published_at DESC LIMIT 1"
)
_LATEST_ARM_RUN = sa.text(
    f"SELECT {_RUN_COLUMNS} FROM recommendation_runs "
    "WHERE status = 'published' AND experiment = :experiment AND arm = :arm "
    "ORDER BY published_at DESC LIMIT 1"
)
# A pinned run may have been superseded since; it is still served while it is kept. Never a
# staged run, nor one marked failed (a publish that failed after marking it published).
_PINNED_RUN = sa.text(
    f"SELECT {_RUN_COLUMNS} FROM recommendation_runs "
    "WHERE id = :run_id AND status = 'published' AND published_at IS NOT NULL"
)
# Redis remembers swipes made since the run was published; Postgres reads them directly.
_SWIPED_SINCE = sa.text(
    "SELECT event_id FROM swipes WHERE user_id = :user_id AND created_at >= :since"
)
_USER_ROWS = sa.text(
    "SELECT rank, event_id, score, reason, propensity FROM recommendations "
    "WHERE run_id = :run_id AND user_id = :user_id ORDER BY rank"
)


def _from_postgres(conn: sa.Connection, *, user_id: int, page: _Page, now: datetime) -> _Ranked:
    if page.run_id is None:
        run = None
        assignment = serving_document(conn).assignment(user_id, now.timestamp())
        if assignment is not None:
            arm = {"experiment": assignment.experiment, "arm": assignment.arm}
            run = conn.execute(_LATEST_ARM_RUN, arm).first()
            if run is None:
                _unpublished_arm(assignment)
        if run is None:
            run = conn.execute(_LATEST_RUN).first()
    else:
        run = conn.execute(_PINNED_RUN, {"run_id": page.run_id}).first()
        if run is None:
            raise RunGone(page.run_id)
    if run is None:
        return _Ranked(None, "none", True, [])
    rows = [
        dict(r._mapping) for r in conn.execute(_USER_ROWS, {"run_id": run.id, "user_id": user_id})
    ]
    cold_start = not rows
    ranked = rows or list(run.fallback)
    swiped = {
        r.event_id
        for r in conn.execute(_SWIPED_SINCE, {"user_id": user_id, "since": run.published_at})
    }
    kept = [
        _Row(
            r["event_id"],
            int(r["rank"]),
            float(r["score"]),
            str(r["reason"]),
            float(r.get("propensity", CERTAIN)),  # the run's fallback JSON keeps none
        )
        for r in ranked
        if r["event_id"] not in swiped
    ]
    return _Ranked(
        str(run.id),
        "postgres",
        cold_start,
        kept,
        experiment=run.experiment,
        arm=run.arm,
        model_version=run.model_version,
    )


def _row_from_json(item: dict[str, Any]) -> _Row:
    # Typed already: the publisher wrote them from typed columns, and orjson keeps the types.
    # Runs published before propensities were kept have none: their slots were certain.
    return _Row(
        item["event_id"],
        item["rank"],
        item["score"],
        item["reason"],
        item.get("propensity", CERTAIN),
    )


def _maybe(value: bytes | str | None) -> str | None:
    return None if value is None else text(value)
