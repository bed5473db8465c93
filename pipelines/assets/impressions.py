"""The impression log: what the API served, moved from its Redis stream into Postgres.

`impression_log` runs every minute (`impressions_every_minute`): it makes sure today's
partition and the next few days' exist, moves every page waiting in the stream into the
daily partitions of `impressions` (acknowledging entries only after the commit, so a crash
moves them again and the primary key keeps each impression once: `store.impressions`), and
drops the days past the retention. The clock is run config, so tests and backfills can pin it.
"""

from datetime import UTC, datetime

import dagster as dg

from pipelines.resources import ImpressionRetentionResource, PostgresResource, RedisResource
from store.impressions import (
    drop_partitions_before,
    ensure_partitions,
    flush_impressions,
    retention_start,
)

GROUP = "impressions"


class ImpressionLogConfig(dg.Config):
    """`now` (ISO-8601) pins the clock; `batch_pages` entries are moved per transaction."""

    now: str | None = None
    batch_pages: int = 500

    def clock(self) -> datetime:
        if not self.now:
            return datetime.now(UTC)
        value = datetime.fromisoformat(self.now)
        return value if value.tzinfo else value.replace(tzinfo=UTC)


@dg.asset(group_name=GROUP, kinds={"redis", "postgres"})
def impression_log(
    context: dg.AssetExecutionContext,
    config: ImpressionLogConfig,
    postgres: PostgresResource,
    redis: RedisResource,
    impression_retention: ImpressionRetentionResource,
) -> dg.MaterializeResult:
    """Feed impressions moved from the API's Redis stream into daily Postgres partitions."""
    now = config.clock()
    engine = postgres.engine()
    ahead = ensure_partitions(
        engine, today=now.date(), days_ahead=impression_retention.partitions_ahead_days
    )
    moved = flush_impressions(
        engine=engine,
        redis_client=redis.client(),
        keys=redis.key_layout(),
        now=now,
        retention_days=impression_retention.retention_days,
        batch_pages=config.batch_pages,
    )
    keep_from = retention_start(now, impression_retention.retention_days)
    dropped = drop_partitions_before(engine, keep_from.date())
    if moved.malformed:
        context.log.warning(f"{moved.malformed} stream entries were not impressions: skipped")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": moved.inserted,
            "pages": moved.pages,
            "duplicates": moved.duplicates,
            "expired": moved.expired,
            "malformed": moved.malformed,
            "partitions_created": sorted(set(ahead + moved.partitions_created)),
            "partitions_dropped": dropped,
            "retention_days": impression_retention.retention_days,
        }
    )
