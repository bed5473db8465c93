"""Backups of the app's Postgres with pg_dump, checked by restoring them.

A dump nobody has restored is a hope, not a backup, so every dump gets a manifest (row counts
per table, checksum, versions, Alembic revision) that `verify_backup` checks against a real
restore into a scratch database on the same server.

The counts and the dump describe the same instant: `create_backup` exports the snapshot of a
REPEATABLE READ transaction, counts inside it, and hands the snapshot to `pg_dump --snapshot`
while the transaction is still open, so writes landing during the dump are in neither.

The client binaries must suit the server: pg_dump refuses servers newer than itself, and
pg_restore cannot read archives written by a newer pg_dump. Candidates come from
`settings.pg_bin_dir`, then PATH, then the embedded server's wheel (pgserver), and the oldest
one at least as new as what it must handle wins, since the closest version is the one whose
SQL the server is sure to accept.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from store.db import sqlalchemy_url

MANIFEST_FORMAT = 1
SCRATCH_PREFIX = "godo_verify_"
TOOL_TIMEOUT_SECONDS = 10.0
_VERSION = re.compile(r"\(PostgreSQL\)\s+((\d+)\S*)")


class BackupError(Exception):
    """Something the operator has to act on; the message is meant to be shown as it is."""


@dataclass(frozen=True)
class PgBinary:
    """A client program and the PostgreSQL version it belongs to."""

    path: Path
    major: int
    version: str  # as the program prints it, e.g. "16.2" or "15.20"

    def describe(self) -> str:
        return f"{self.path} ({self.version})"


@dataclass(frozen=True)
class LibpqTarget:
    """What a libpq program needs to reach a database, with the password kept out of argv
    (where `ps` shows it to every user of the machine)."""

    url: str
    env: dict[str, str]


@dataclass(frozen=True)
class Manifest:
    """What a dump must restore to; written next to it as `<dump stem>.manifest.json`."""

    dump: str
    database: str
    created_at: str
    sha256: str
    size_bytes: int
    server_version: str
    server_version_num: int
    pg_dump_version: str
    pg_dump_major: int
    alembic_revision: str | None
    tables: dict[str, int]
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data: dict[str, Any] = json.loads(text)
        if data.get("format") != MANIFEST_FORMAT:
            raise BackupError(f"unknown manifest format {data.get('format')!r}")
        names = set(cls.__dataclass_fields__)
        missing = names - set(data) - {"format"}
        if missing:
            raise BackupError(f"manifest lacks {', '.join(sorted(missing))}")
        data["tables"] = {str(k): int(v) for k, v in data["tables"].items()}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class BackupResult:
    dump_path: Path
    manifest_path: Path
    manifest: Manifest
    pg_dump: PgBinary


@dataclass(frozen=True)
class TableCheck:
    """One table's rows in the manifest against a restored database (None: table absent)."""

    table: str
    expected: int | None
    actual: int | None

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclass(frozen=True)
class RestoreReport:
    """How a restored database compares with the manifest of its dump."""

    manifest: Manifest
    pg_restore: PgBinary
    database: str
    checks: list[TableCheck]
    alembic_revision: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# --- connection details --------------------------------------------------------------------


def libpq_target(database_url: str) -> LibpqTarget:
    """Turn a SQLAlchemy URL (maybe `postgresql+psycopg://`) into a libpq URL plus PGPASSWORD.

    Built by hand rather than by SQLAlchemy's renderer because libpq percent-decodes every
    part but not `+`, so a socket path with a space must be written as `%20`; a socket
    directory goes in `?host=` as libpq wants.
    """
    url = make_url(database_url)
    env: dict[str, str] = {}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    query: dict[str, str] = {
        key: ",".join(value) if isinstance(value, tuple) else value
        for key, value in url.query.items()
    }
    authority = quote(url.username, safe="") + "@" if url.username else ""
    host = url.host or ""
    if host.startswith("/"):
        query.setdefault("host", host)
    elif ":" in host:
        authority += f"[{host}]"
    else:
        authority += quote(host, safe="")
    if url.port is not None:
        authority += f":{url.port}"
    rendered = f"postgresql://{authority}/{quote(url.database or '', safe='')}"
    if query:
        rendered += "?" + "&".join(
            f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in query.items()
        )
    return LibpqTarget(url=rendered, env=env)


def database_name(database_url: str) -> str:
    name = make_url(database_url).database
    if not name:
        raise BackupError("the database URL names no database")
    return name


def with_database(database_url: str, name: str) -> str:
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def _engine(database_url: str, **options: Any) -> Iterator[sa.Engine]:
    """A pool-less engine: a kept-open connection would block dropping a scratch database."""
    engine = sa.create_engine(sqlalchemy_url(database_url), poolclass=NullPool, **options)
    try:
        yield engine
    finally:
        engine.dispose()


@dataclass(frozen=True)
class ServerVersion:
    number: int  # server_version_num, e.g. 150020
    text: str  # server_version, e.g. "15.20 (Debian 15.20-0+deb12u1)"

    @property
    def major(self) -> int:
        return self.number // 10000


def server_version(conn: sa.Connection) -> ServerVersion:
    number = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    return ServerVersion(number, str(conn.execute(sa.text("SHOW server_version")).scalar_one()))


def server_version_of(database_url: str) -> ServerVersion:
    with _engine(database_url) as engine, engine.connect() as conn:
        return server_version(conn)


# --- which pg_dump / pg_restore ------------------------------------------------------------


def pgserver_bin_dir() -> Path | None:
    """The embedded server's binaries, found without importing pgserver (slow, and noisy)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall" / "bin"
        if candidate.is_dir():
            return candidate
    return None


def candidate_dirs(pg_bin_dir: Path | None) -> list[Path]:
    """Where to look, in order of preference: the configured folder, PATH, the wheel."""
    dirs: list[Path] = []
    if pg_bin_dir is not None:
        dirs.append(pg_bin_dir.expanduser())
    dirs.extend(Path(entry) for entry in os.environ.get("PATH", "").split(os.pathsep) if entry)
    embedded = pgserver_bin_dir()
    if embedded is not None:
        dirs.append(embedded)
    return dirs


def probe_binary(path: Path) -> PgBinary | None:
    """Ask a program its version; None when it is not a PostgreSQL client that answers."""
    try:
        result = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(result.stdout)
    if result.returncode != 0 or match is None:
        return None
    return PgBinary(path=path, major=int(match.group(2)), version=match.group(1))


def candidate_binaries(tool: str, pg_bin_dir: Path | None = None) -> list[PgBinary]:
    """Every runnable `tool` in the candidate folders, in preference order, each file once."""
    found: list[PgBinary] = []
    seen: set[Path] = set()
    for directory in candidate_dirs(pg_bin_dir):
        path = directory / tool
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        binary = probe_binary(path)
        if binary is not None:
            found.append(binary)
    return found


def choose_binary(tool: str, candidates: Sequence[PgBinary], minimum_major: int) -> PgBinary:
    """The oldest candidate whose major is at least `minimum_major` (earlier wins a tie)."""
    fitting = [c for c in candidates if c.major >= minimum_major]
    if fitting:
        return min(fitting, key=lambda c: c.major)  # min keeps the first of equals
    seen = ", ".join(c.describe() for c in candidates) or "none"
    raise BackupError(
        f"no {tool} of PostgreSQL {minimum_major} or newer found (found: {seen}); install "
        f"the PostgreSQL {minimum_major} client programs or point GODO_PG_BIN_DIR at them"
    )


def find_binary(tool: str, minimum_major: int, pg_bin_dir: Path | None = None) -> PgBinary:
    return choose_binary(tool, candidate_binaries(tool, pg_bin_dir), minimum_major)


# --- running the programs ------------------------------------------------------------------


def run_tool(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a client program without a shell; a failure carries its stderr, which says why."""
    try:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
        )
    except OSError as error:
        raise BackupError(f"could not run {args[0]}: {error}") from error
    if result.returncode != 0:
        name = Path(args[0]).name
        detail = result.stderr.strip() or result.stdout.strip() or "no output"
        raise BackupError(f"{name} failed (exit {result.returncode}):\n{detail}")
    return result


# --- what a database holds -----------------------------------------------------------------


def public_tables(conn: sa.Connection) -> list[str]:
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
        )
    )
    return [str(name) for name in rows.scalars()]


def count_rows(conn: sa.Connection) -> dict[str, int]:
    """Exact rows of every public table (alembic_version included); estimates would not
    catch a restore that lost a handful of rows."""
    quote_name = conn.dialect.identifier_preparer.quote
    return {
        table: int(
            conn.execute(sa.text(f"SELECT count(*) FROM public.{quote_name(table)}")).scalar_one()
        )
        for table in public_tables(conn)
    }


def alembic_revision(conn: sa.Connection, tables: Mapping[str, int]) -> str | None:
    if "alembic_version" not in tables:
        return None
    revisions = conn.execute(sa.text("SELECT version_num FROM public.alembic_version")).scalars()
    return ",".join(sorted(str(r) for r in revisions)) or None


def _snapshot_of(database_url: str) -> tuple[dict[str, int], str | None]:
    with _engine(database_url) as engine, engine.connect() as conn:
        tables = count_rows(conn)
        return tables, alembic_revision(conn, tables)


# --- files ---------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def manifest_path(dump: Path) -> Path:
    return dump.with_name(f"{dump.stem}.manifest.json")


def read_manifest(dump: Path) -> Manifest:
    path = manifest_path(dump)
    if not path.is_file():
        raise BackupError(f"no manifest for {dump.name}: expected {path}")
    try:
        return Manifest.from_json(path.read_text())
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise BackupError(f"unreadable manifest {path}: {error}") from error


def check_checksum(dump: Path) -> Manifest:
    """The manifest, once the dump is proven to be the file it describes."""
    manifest = read_manifest(dump)
    actual = sha256_file(dump)
    if actual != manifest.sha256:
        raise BackupError(
            f"checksum mismatch for {dump}: manifest says sha256 {manifest.sha256}, the file "
            f"has {actual}; the dump is corrupt or not the one the manifest describes"
        )
    return manifest


def backup_name(database: str, when: datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database)
    return f"godo-{safe}-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}.dump"


def _write_private(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a manifest."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.chmod(0o600)
    os.replace(partial, path)


# --- the three operations ------------------------------------------------------------------


def create_backup(
    database_url: str,
    backup_dir: Path,
    *,
    pg_bin_dir: Path | None = None,
    now: datetime | None = None,
) -> BackupResult:
    """Dump the database and write its manifest; counts and dump share one snapshot."""
    when = now or datetime.now(UTC)
    database = database_name(database_url)
    dump = backup_dir / backup_name(database, when)
    if dump.exists() or manifest_path(dump).exists():
        raise BackupError(f"{dump} already exists; not overwriting a backup")
    server = server_version_of(database_url)
    pg_dump = find_binary("pg_dump", server.major, pg_bin_dir)
    target = libpq_target(database_url)
    backup_dir.mkdir(parents=True, exist_ok=True)
    partial = dump.with_name(dump.name + ".partial")
    try:
        with _engine(database_url) as engine, engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot = str(conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())
                tables = count_rows(conn)
                revision = alembic_revision(conn, tables)
                run_tool(
                    [
                        str(pg_dump.path),
                        "--format=custom",
                        f"--snapshot={snapshot}",
                        f"--file={partial}",
                        f"--dbname={target.url}",
                    ],
                    target.env,
                )
        partial.chmod(0o600)
        digest = sha256_file(partial)
        size = partial.stat().st_size
        os.replace(partial, dump)
    finally:
        partial.unlink(missing_ok=True)
    manifest = Manifest(
        dump=dump.name,
        database=database,
        created_at=when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        sha256=digest,
        size_bytes=size,
        server_version=server.text,
        server_version_num=server.number,
        pg_dump_version=pg_dump.version,
        pg_dump_major=pg_dump.major,
        alembic_revision=revision,
        tables=tables,
    )
    _write_private(manifest_path(dump), manifest.to_json())
    return BackupResult(
        dump_path=dump, manifest_path=manifest_path(dump), manifest=manifest, pg_dump=pg_dump
    )


def compare(
    manifest: Manifest, actual: Mapping[str, int], revision: str | None
) -> tuple[list[TableCheck], list[str]]:
    """Per-table checks and the human-readable list of everything that disagrees."""
    names = sorted(set(manifest.tables) | set(actual))
    checks = [TableCheck(name, manifest.tables.get(name), actual.get(name)) for name in names]
    problems: list[str] = []
    for check in checks:
        if check.ok:
            continue
        if check.actual is None:
            problems.append(f"{check.table}: missing (manifest: {check.expected} rows)")
        elif check.expected is None:
            problems.append(f"{check.table}: {check.actual} rows, but not in the manifest")
        else:
            problems.append(f"{check.table}: {check.actual} rows, manifest says {check.expected}")
    if revision != manifest.alembic_revision:
        problems.append(
            f"alembic revision {revision!r}, manifest says {manifest.alembic_revision!r}"
        )
    return checks, problems


def _restore_binary(database_url: str, manifest: Manifest, pg_bin_dir: Path | None) -> PgBinary:
    """pg_restore must match the server and be able to read what the dump's pg_dump wrote."""
    server = server_version_of(database_url)
    return find_binary("pg_restore", max(server.major, manifest.pg_dump_major), pg_bin_dir)


def verify_backup(
    database_url: str, dump: Path, *, pg_bin_dir: Path | None = None
) -> RestoreReport:
    """Restore into a throwaway database on the same server and compare with the manifest.

    The scratch database is dropped whatever happens, so a failed check leaves nothing behind.
    """
    manifest = check_checksum(dump)
    pg_restore = _restore_binary(database_url, manifest, pg_bin_dir)
    scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    scratch_url = with_database(database_url, scratch)
    target = libpq_target(scratch_url)
    with _engine(database_url, isolation_level="AUTOCOMMIT") as admin:
        with admin.connect() as conn:
            # template0: template1 may hold local additions that would collide with the dump.
            conn.execute(sa.text(f'CREATE DATABASE "{scratch}" TEMPLATE template0'))
        try:
            run_tool(
                [
                    str(pg_restore.path),
                    "--no-owner",
                    "--exit-on-error",
                    f"--dbname={target.url}",
                    str(dump),
                ],
                target.env,
            )
            actual, revision = _snapshot_of(scratch_url)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
    checks, problems = compare(manifest, actual, revision)
    return RestoreReport(manifest, pg_restore, scratch, checks, revision, problems)


def restore_backup(
    database_url: str, dump: Path, *, pg_bin_dir: Path | None = None
) -> RestoreReport:
    """Replace the database's contents with the dump's, all or nothing.

    `--single-transaction` makes a failed restore roll back to the database as it was;
    `--clean --if-exists` drops what the dump recreates; `--no-owner` lets another role than
    the dump's restore it.
    """
    manifest = check_checksum(dump)
    pg_restore = _restore_binary(database_url, manifest, pg_bin_dir)
    target = libpq_target(database_url)
    run_tool(
        [
            str(pg_restore.path),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            f"--dbname={target.url}",
            str(dump),
        ],
        target.env,
    )
    actual, revision = _snapshot_of(database_url)
    checks, problems = compare(manifest, actual, revision)
    return RestoreReport(
        manifest, pg_restore, database_name(database_url), checks, revision, problems
    )
