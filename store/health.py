"""Liveness probes of the two stores serving depends on.

They live in `store` (not in a router) because they are queries, and every query stays out of
`serving`. Each probe answers a plain bool and logs the cause, so a health endpoint can report
which part failed without ever raising or leaking a connection string to its caller.
"""

from __future__ import annotations

import logging

import redis
import sqlalchemy as sa

log = logging.getLogger(__name__)


def postgres_ok(engine: sa.Engine) -> bool:
    """True when Postgres answers `SELECT 1` through `engine`'s pool."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()
    except sa.exc.SQLAlchemyError as error:
        log.warning("postgres health probe failed: %s", error.__class__.__name__, exc_info=True)
        return False
    return True


def redis_ok(client: redis.Redis) -> bool:
    """True when Redis answers `PING`."""
    try:
        return bool(client.ping())
    except redis.RedisError as error:
        log.warning("redis health probe failed: %s", error.__class__.__name__, exc_info=True)
        return False
