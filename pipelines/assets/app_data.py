"""The app's own data, extracted from Postgres into the DuckDB warehouse for training."""

from collections.abc import Callable

import dagster as dg
import polars as pl
import sqlalchemy as sa

from pipelines.assets.common import frame_output
from pipelines.resources import PostgresResource
from store.app_data import read_attendance, read_friendships, read_swipes, read_users

# In production the app writes these tables; on a laptop the synthetic city does.
UPSTREAM = ["synthetic_activity"]


def _extract(
    postgres: PostgresResource, read: Callable[[sa.Connection], pl.DataFrame]
) -> dg.Output[pl.DataFrame]:
    with postgres.engine().connect() as conn:
        return frame_output(read(conn))


@dg.asset(group_name="app_data", deps=UPSTREAM, kinds={"postgres", "duckdb"})
def app_users(postgres: PostgresResource) -> dg.Output[pl.DataFrame]:
    """Users with their metro and home location."""
    return _extract(postgres, read_users)


@dg.asset(group_name="app_data", deps=UPSTREAM, kinds={"postgres", "duckdb"})
def app_friendships(postgres: PostgresResource) -> dg.Output[pl.DataFrame]:
    """The friend graph, one row per direction."""
    return _extract(postgres, read_friendships)


@dg.asset(group_name="app_data", deps=UPSTREAM, kinds={"postgres", "duckdb"})
def app_swipes(postgres: PostgresResource) -> dg.Output[pl.DataFrame]:
    """Every like, pass and superlike, with the deck position it was shown at."""
    return _extract(postgres, read_swipes)


@dg.asset(group_name="app_data", deps=UPSTREAM, kinds={"postgres", "duckdb"})
def app_attendance(postgres: PostgresResource) -> dg.Output[pl.DataFrame]:
    """RSVPs: who is going to or interested in what."""
    return _extract(postgres, read_attendance)
