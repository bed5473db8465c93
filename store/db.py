"""Engines and bulk I/O for the app's Postgres.

Bulk paths use COPY (through psycopg 3) because row-by-row INSERT of a few hundred thousand
recommendations or swipes is tens of times slower and holds locks for longer.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import make_url


def sqlalchemy_url(database_url: str) -> str:
    """Point a plain `postgresql://` URL at the psycopg 3 driver SQLAlchemy should use."""
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def make_engine(database_url: str, *, pool_size: int = 5) -> sa.Engine:
    """An engine with a small pool; `pool_pre_ping` survives a restarted server."""
    return sa.create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def copy_frame(conn: sa.Connection, table: str, frame: pl.DataFrame) -> int:
    """COPY a DataFrame into `table` inside the caller's transaction; returns rows written.

    Columns are matched by name, so the frame may hold them in any order but not extra ones.
    """
    if frame.height == 0:
        return 0
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    payload = frame.write_csv(include_header=False, null_value="\\N", datetime_format=None)
    raw = conn.connection.driver_connection
    assert raw is not None, "copy_frame needs a psycopg connection"
    with raw.cursor() as cursor:
        statement = f"COPY {table} ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
        with cursor.copy(statement) as copy:
            copy.write(payload.encode())
    return frame.height


def read_frame(
    conn: sa.Connection, query: str, schema: dict[str, pl.DataType] | None = None
) -> pl.DataFrame:
    """Run `query` through COPY ... TO STDOUT and load the CSV into Polars.

    Timestamps are rendered by Postgres in ISO form with an offset, which Polars parses to
    UTC when `schema` says `pl.Datetime(time_zone="UTC")`.
    """
    raw = conn.connection.driver_connection
    assert raw is not None, "read_frame needs a psycopg connection"
    buffer = io.BytesIO()
    with raw.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'UTC'")
        with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv, HEADER true)") as copy:
            for block in copy:
                buffer.write(block)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pl.DataFrame(schema=schema)
    text_schema = dict.fromkeys(schema or {}, pl.Utf8)
    frame = pl.read_csv(buffer, schema_overrides=text_schema, infer_schema_length=0)
    if not schema:
        return frame
    return frame.select(_cast(name, dtype) for name, dtype in schema.items())


def _cast(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        return column.str.to_datetime(time_zone="UTC", time_unit="us").alias(name)
    if dtype == pl.Boolean:
        return (column == "t").alias(name)
    return column.cast(dtype).alias(name)


def truncate(conn: sa.Connection, tables: Sequence[str]) -> None:
    """Empty tables in one statement (used when a synthetic city is reseeded)."""
    if tables:
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
