"""Alembic environment: online migrations against the URL `store.migrate` hands in."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from store.db import sqlalchemy_url
from store.schema import include_name, metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
if not url:
    raise RuntimeError("set DATABASE_URL (or run migrations through `godo`)")

connectable = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()
