"""Engines and bulk I/O for the app's Postgres.

Bulk paths use COPY (through psycopg 3) because row-by-row INSERT of a few hundred thousand
recommendations or swipes is tens of times slower and holds locks for longer.

COPY speaks CSV, which has no lists, so `text[]` columns travel as Postgres array literals
(`{music,"food & drink"}`): `copy_frame` renders `List(Utf8)` columns as literals and
`read_frame` parses them back when the schema asks for `List(Utf8)`. Both are vectorised
Polars expressions, so an array column does not cost the COPY path its speed.
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


def make_engine(database_url: str, *, pool_size: int = 5, max_overflow: int = 10) -> sa.Engine:
    """An engine with a small pool; `pool_pre_ping` survives a restarted server."""
    return sa.create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
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
    frame = frame.with_columns(
        pg_array_literal(name) for name, dtype in frame.schema.items() if dtype == pl.List(pl.Utf8)
    )
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
    UTC when `schema` says `pl.Datetime(time_zone="UTC")`; a `text[]` column comes back as
    `List(Utf8)` when `schema` says so.
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
    if dtype == pl.List(pl.Utf8):
        return parse_pg_array(name)
    return column.cast(dtype).alias(name)


# One array element as Postgres prints it: a double-quoted string (backslash escapes `"` and
# `\`, may hold commas, braces, spaces, newlines) or a bare run without separators.
_ARRAY_ELEMENT = r'(?s)"(?:[^"\\]|\\.)*"|[^,{}"]+'


def pg_array_literal(name: str) -> pl.Expr:
    """A `List(Utf8)` column as Postgres one-dimensional array literals, for COPY.

    Every element is double-quoted with `\\` and `"` backslash-escaped, so commas, braces,
    spaces and a category literally named "NULL" survive; a null element is the bare NULL
    and a null list stays null (COPY's NULL). An empty list is `{}`.
    """
    element = pl.element()
    quoted = (
        pl.lit('"')
        + element.str.replace_all("\\", "\\\\", literal=True).str.replace_all(
            '"', '\\"', literal=True
        )
        + pl.lit('"')
    )
    items = pl.col(name).list.eval(
        pl.when(element.is_null()).then(pl.lit("NULL")).otherwise(quoted)
    )
    return (pl.lit("{") + items.list.join(",") + pl.lit("}")).alias(name)


def parse_pg_array(name: str) -> pl.Expr:
    """Postgres' text output of a one-dimensional `text[]` back into `List(Utf8)`.

    Postgres quotes an element whenever it is empty, holds a separator, brace, quote,
    backslash or whitespace, or reads as NULL, so a bare NULL is always a null element.
    """
    element = pl.element()
    unquoted = (
        element.str.strip_prefix('"').str.strip_suffix('"').str.replace_all(r"(?s)\\(.)", "$1")
    )
    return (
        pl.col(name)
        .str.extract_all(_ARRAY_ELEMENT)
        .list.eval(
            pl.when(element.str.starts_with('"'))
            .then(unquoted)
            .when(element.str.to_uppercase() == "NULL")
            .then(pl.lit(None, dtype=pl.Utf8))
            .otherwise(element)
        )
        .cast(pl.List(pl.Utf8))
        .alias(name)
    )


def truncate(conn: sa.Connection, tables: Sequence[str]) -> None:
    """Empty tables in one statement (used when a synthetic city is reseeded)."""
    if tables:
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
