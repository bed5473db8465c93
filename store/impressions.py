"""The impression log: every feed item served, from the API through Redis into Postgres.

Recording (API, per page served). The page is appended to one Redis stream
(`RedisKeys.impressions`) as a single entry, by one XADD awaited before the response goes
out: once a client holds an impression id, its impression is in Redis, so an API restart
loses nothing. The append cannot share the feed's existing round trip: which items a page
shows is known only after that round trip (the list comes back in it, and cancelled, full,
started or swiped events are dropped afterwards), and recording items that are then dropped
would log cards nobody saw. One entry per page (not per item) keeps the cost to one small
command. When the read already found Redis unreachable, nothing is tried (no second
timeout): the items go out without ids and the caller counts them lost.

Moving (the `impression_log` asset, every minute). Entries are read oldest first in
batches, their rows are COPYed into a staging table and inserted with
`ON CONFLICT DO NOTHING` in one transaction, and only after the commit are the entries
deleted from the stream (XDEL of exactly the ids read). A crash before the commit leaves the
entries to be read again; a crash after it re-inserts rows that are already there, which the
primary key (the uuid is a pure function of the entry) turns into no-ops. So every
impression lands once, whatever fails and however often the move runs.

Partitions. `impressions` is partitioned by UTC day. `ensure_partitions` creates days ahead
of time, the move creates the day of any row it inserts (a late entry), and
`drop_partitions_before` drops whole days past the retention; rows older than the retention
are not moved (counted as `expired`), so a stale entry cannot revive a dropped day.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
import redis
import redis.asyncio
import sqlalchemy as sa

from core.impression_ids import mint_page, page_nonce, served_ms
from store.breaker import CircuitOpenError
from store.feed import Feed
from store.keys import RedisKeys
from store.redis_batch import RedisBatcher

log = logging.getLogger(__name__)

ENTRY_FIELD = b"p"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PARTITION = re.compile(r"impressions_p([0-9]{8})")
_COLUMNS = (
    "impression_id",
    "served_at",
    "user_id",
    "event_id",
    "rank",
    "run_id",
    "model_version",
    "experiment",
    "arm",
    "propensity",
)
Row = tuple[uuid.UUID, datetime, int, str, int, str, str | None, str | None, str | None, float]


# --- recording (the API) ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedPage:
    """What recording a page gave: its items' ids in order (ASCII bytes, as the body carries
    them), or None when nothing was recorded; and how many impressions were lost."""

    ids: list[bytes] | None
    lost: int


NOT_RECORDED = RecordedPage(None, 0)


def page_entry(feed: Feed, *, nonce: bytes, served_at_ms: int) -> bytes:
    """The stream entry of one served page (field `p`); positions in `i` give each uuid."""
    return orjson.dumps(
        {
            "u": feed.user_id,
            "t": served_at_ms,
            "n": nonce.hex(),
            "r": feed.run_id,
            "m": feed.model_version,
            "x": feed.experiment,
            "a": feed.arm,
            "i": [[item.card.event_id, item.rank, item.propensity] for item in feed.items],
        }
    )


@dataclass(frozen=True)
class _Append:
    """A page ready to append: the XADD, and what its ids are minted from."""

    command: tuple[Any, ...]
    nonce: bytes
    served_at_ms: int


def _prepare(keys: RedisKeys, feed: Feed, now: datetime | None) -> _Append | RecordedPage:
    """The XADD for `feed`'s page, or the outcome when there is nothing to try."""
    if not feed.items or feed.run_id is None:
        return NOT_RECORDED
    if feed.redis_failed:
        return RecordedPage(None, len(feed.items))
    nonce, ms = page_nonce(), served_ms(now or datetime.now(UTC))
    entry = page_entry(feed, nonce=nonce, served_at_ms=ms)
    return _Append(("XADD", keys.impressions(), "*", ENTRY_FIELD, entry), nonce, ms)


async def record_impressions_async(
    *,
    redis_client: redis.asyncio.Redis | RedisBatcher,
    keys: RedisKeys,
    key: bytes,
    feed: Feed,
    now: datetime | None = None,
) -> RecordedPage:
    """Append `feed`'s page to the impression stream and mint its items' signed ids.

    Never raises for Redis: an unreachable Redis gives no ids and counts every item lost.
    With the API's `RedisBatcher`, the XADD shares a pipeline with concurrent requests' (it
    is still awaited: the ids are handed out only once the page is in the stream).
    """
    append = _prepare(keys, feed, now)
    if isinstance(append, RecordedPage):
        return append
    try:
        if isinstance(redis_client, RedisBatcher):
            await redis_client.send([append.command])
        else:
            await redis_client.execute_command(*append.command)
    except redis.RedisError as error:
        return _lost(feed, error)
    return RecordedPage(_ids(key, feed, append), 0)


def record_impressions(
    *,
    redis_client: redis.Redis,
    keys: RedisKeys,
    key: bytes,
    feed: Feed,
    now: datetime | None = None,
) -> RecordedPage:
    """`record_impressions_async` with the blocking client (scripts, the demo, tests)."""
    append = _prepare(keys, feed, now)
    if isinstance(append, RecordedPage):
        return append
    try:
        redis_client.execute_command(*append.command)
    except redis.RedisError as error:
        return _lost(feed, error)
    return RecordedPage(_ids(key, feed, append), 0)


def _lost(feed: Feed, error: redis.RedisError) -> RecordedPage:
    """Every item of the page lost: Redis failed, or its circuit breaker is open (then the
    XADD was never sent, and no traceback is logged per page: `store.breaker`)."""
    log.warning(
        "redis unavailable: %d impressions not recorded",
        len(feed.items),
        exc_info=not isinstance(error, CircuitOpenError),
    )
    return RecordedPage(None, len(feed.items))


def _ids(key: bytes, feed: Feed, append: _Append) -> list[bytes]:
    return mint_page(
        key,
        user_id=feed.user_id,
        event_ids=[item.card.event_id for item in feed.items],
        served_at_ms=append.served_at_ms,
        nonce=append.nonce,
    )


# --- moving into Postgres (the pipeline) -----------------------------------------------------


def served_at(ms: int) -> datetime:
    """Milliseconds since the epoch as an exact UTC datetime (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def entry_rows(entry: bytes) -> list[Row]:
    """The impression rows of one stream entry; ValueError when it is not one we wrote."""
    try:
        page = orjson.loads(entry)
        nonce = bytes.fromhex(page["n"])
        if len(nonce) != 14 or not page["r"]:
            raise ValueError("bad nonce or run")
        moment = served_at(int(page["t"]))
        user_id, run_id = int(page["u"]), str(page["r"])
        model_version, experiment, arm = page.get("m"), page.get("x"), page.get("a")
        rows: list[Row] = []
        for position, (event_id, rank, propensity) in enumerate(page["i"]):
            if not 0 < float(propensity) <= 1:
                raise ValueError(f"propensity {propensity} outside (0, 1]")
            rows.append(
                (
                    uuid.UUID(bytes=nonce + position.to_bytes(2, "big")),
                    moment,
                    user_id,
                    str(event_id),
                    int(rank),
                    run_id,
                    model_version,
                    experiment,
                    arm,
                    float(propensity),
                )
            )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"not an impression entry: {error}") from error
    return rows


@dataclass(frozen=True)
class Batch:
    """Stream entries read at once: their ids, their rows, and entries that held none we
    could read (acknowledged with the rest, so one bad entry cannot block the log)."""

    entry_ids: list[bytes]
    rows: list[Row]
    malformed: int


def read_batch(redis_client: redis.Redis, keys: RedisKeys, *, count: int) -> Batch:
    """The oldest `count` entries of the stream (not removed: see `acknowledge`)."""
    entries = redis_client.xrange(keys.impressions(), min="-", max="+", count=count)
    ids: list[bytes] = []
    rows: list[Row] = []
    malformed = 0
    for entry_id, fields in entries:
        ids.append(entry_id)
        try:
            rows.extend(entry_rows(fields[ENTRY_FIELD]))
        except (KeyError, ValueError):
            malformed += 1
            log.warning("skipping impression stream entry %r: not an entry the API wrote", entry_id)
    return Batch(ids, rows, malformed)


@dataclass(frozen=True)
class Moved:
    inserted: int
    duplicates: int
    expired: int
    partitions_created: list[str]


def move_batch(engine: sa.Engine, batch: Batch, *, keep_from: datetime) -> Moved:
    """Insert `batch`'s rows served at or after `keep_from`, in one transaction; rows already
    present are skipped. Creates the days the rows need first."""
    rows = [r for r in batch.rows if r[1] >= keep_from]
    expired = len(batch.rows) - len(rows)
    if not rows:
        return Moved(0, 0, expired, [])
    with engine.begin() as conn:
        created = create_partitions(conn, {r[1].date() for r in rows})
        conn.execute(
            sa.text("CREATE TEMP TABLE _stage_impressions (LIKE impressions) ON COMMIT DROP")
        )
        raw = conn.connection.driver_connection
        assert raw is not None, "move_batch needs a psycopg connection"
        columns = ", ".join(_COLUMNS)
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY _stage_impressions ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        inserted = conn.execute(
            sa.text(
                f"INSERT INTO impressions ({columns}) SELECT {columns} FROM _stage_impressions "
                "ON CONFLICT DO NOTHING"
            )
        ).rowcount
    return Moved(inserted, len(rows) - inserted, expired, created)


def acknowledge(redis_client: redis.Redis, keys: RedisKeys, entry_ids: Sequence[bytes]) -> int:
    """Delete exactly the entries moved (never trim by length or id range: entries appended
    since the read must stay)."""
    if not entry_ids:
        return 0
    deleted: int = redis_client.xdel(keys.impressions(), *entry_ids)
    return deleted


@dataclass
class FlushResult:
    """What one flush did, for the asset's metadata."""

    pages: int = 0
    inserted: int = 0
    duplicates: int = 0
    expired: int = 0
    malformed: int = 0
    partitions_created: list[str] = field(default_factory=list)


def flush_impressions(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    now: datetime,
    retention_days: int,
    batch_pages: int = 500,
    max_pages: int | None = None,
) -> FlushResult:
    """Move the stream into `impressions` until it is empty (or `max_pages` were moved):
    read, insert and commit, then acknowledge, batch after batch (module docstring)."""
    keep_from = retention_start(now, retention_days)
    result = FlushResult()
    while max_pages is None or result.pages < max_pages:
        count = batch_pages if max_pages is None else min(batch_pages, max_pages - result.pages)
        batch = read_batch(redis_client, keys, count=count)
        if not batch.entry_ids:
            break
        moved = move_batch(engine, batch, keep_from=keep_from)
        acknowledge(redis_client, keys, batch.entry_ids)
        result.pages += len(batch.entry_ids)
        result.inserted += moved.inserted
        result.duplicates += moved.duplicates
        result.expired += moved.expired
        result.malformed += batch.malformed
        result.partitions_created += moved.partitions_created
        if len(batch.entry_ids) < count:
            break
    return result


# --- daily partitions ------------------------------------------------------------------------


def retention_start(now: datetime, retention_days: int) -> datetime:
    """The first moment kept: midnight UTC `retention_days` days before today."""
    first_day = now.astimezone(UTC).date() - timedelta(days=retention_days)
    return datetime.combine(first_day, time(), UTC)


def partition_name(day: date) -> str:
    return f"impressions_p{day:%Y%m%d}"


_PARTITIONS = sa.text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'impressions'::regclass"
)


def partition_days(conn: sa.Connection) -> dict[date, str]:
    """The existing daily partitions of `impressions`, by day."""
    days: dict[date, str] = {}
    for (name,) in conn.execute(_PARTITIONS):
        match = _PARTITION.fullmatch(name)
        if match is not None:
            days[datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return days


def create_partitions(conn: sa.Connection, days: Iterable[date]) -> list[str]:
    """Create the partitions of `days` that do not exist yet; returns the names created."""
    existing = partition_days(conn)
    created = []
    for day in sorted(set(days) - set(existing)):
        name = partition_name(day)
        start, end = day.isoformat(), (day + timedelta(days=1)).isoformat()
        conn.execute(
            sa.text(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF impressions "
                f"FOR VALUES FROM ('{start} 00:00:00+00') TO ('{end} 00:00:00+00')"
            )
        )
        created.append(name)
    return created


def ensure_partitions(engine: sa.Engine, *, today: date, days_ahead: int) -> list[str]:
    """Today's partition and `days_ahead` more, so inserts never wait on DDL at midnight."""
    with engine.begin() as conn:
        return create_partitions(conn, (today + timedelta(days=d) for d in range(days_ahead + 1)))


def drop_partitions_before(engine: sa.Engine, day: date) -> list[str]:
    """Drop every daily partition of a day before `day` (the retention); returns their names."""
    with engine.begin() as conn:
        old = [name for d, name in sorted(partition_days(conn).items()) if d < day]
        for name in old:
            conn.execute(sa.text(f"DROP TABLE {name}"))
    return old
