"""Alembic migrations against a real PostgreSQL: round trip, and agreement with store.schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url

from godo.services import ServiceUrls
from store import migrate
from store.db import sqlalchemy_url
from store.schema import include_name, metadata


@pytest.fixture
def scratch_database(service_urls: ServiceUrls) -> Iterator[str]:
    """An empty database of its own, so up/down does not disturb the session's schema."""
    name = f"godo_migrate_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        sqlalchemy_url(service_urls.database_url), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield (
        make_url(service_urls.database_url).set(database=name).render_as_string(hide_password=False)
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trips(scratch_database: str) -> None:
    expected = {t.name for t in metadata.sorted_tables}
    migrate.upgrade(scratch_database)
    assert _tables(scratch_database) == expected
    migrate.downgrade(scratch_database)
    assert _tables(scratch_database) == set()
    migrate.upgrade(scratch_database)
    assert _tables(scratch_database) == expected


def test_migrations_match_the_schema_module(database_url: str) -> None:
    """store.schema is the readable truth only while autogenerate finds nothing to change."""
    engine = sa.create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": include_name}
        )
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []
