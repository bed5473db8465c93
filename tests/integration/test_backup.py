"""`godo backup` against a real PostgreSQL: dumps, manifests, verification and restores.

Every test backs up a database of its own (migrated, a few rows in it), so restores and
deleted rows never reach the session's database, and checks that no scratch database from
`verify` outlives it.
"""

from __future__ import annotations

import json
import re
import stat
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from core.settings import get_settings
from godo import backup
from godo.backup_cli import backup_app
from godo.services import ServiceUrls
from store import migrate
from store.db import sqlalchemy_url

EXPECTED = {
    "alembic_version": 1,
    "calendar_tokens": 0,
    "devices": 0,
    "event_attendance": 1,
    "experiment_arms": 0,
    "experiments": 0,
    "events": 2,
    "friend_requests": 0,
    "friendships": 2,
    "impressions": 0,
    "invites": 0,
    "notification_log": 0,
    "notification_preferences": 0,
    "recommendation_runs": 0,
    "recommendations": 0,
    "swipes": 4,
    "users": 3,
    "venues": 1,
}
USER_NAMES = {"Ada", "Grace", "Edsger"}

runner = CliRunner()


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT")


def _seed(url: str) -> None:
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO users (id, display_name, metro) VALUES (:id, :name, 'oakland')"),
            [{"id": i, "name": name} for i, name in enumerate(sorted(USER_NAMES), start=1)],
        )
        conn.execute(sa.text("INSERT INTO venues (id, name, metro) VALUES ('v1', 'Hall', 'sf')"))
        conn.execute(
            sa.text(
                "INSERT INTO events (id, name, venue_id, metro, category, start_utc, is_free, "
                "status, is_active) VALUES (:id, :id, 'v1', 'sf', 'music', now(), true, "
                "'live', true)"
            ),
            [{"id": "e1"}, {"id": "e2"}],
        )
        conn.execute(
            sa.text(
                "INSERT INTO swipes (id, user_id, event_id, action) "
                "VALUES (gen_random_uuid(), :user, :event, 'like')"
            ),
            [{"user": u, "event": e} for u in (1, 2) for e in ("e1", "e2")],
        )
        conn.execute(sa.text("INSERT INTO friendships (user_id, friend_id) VALUES (1, 2), (2, 1)"))
        conn.execute(
            sa.text(
                "INSERT INTO event_attendance (user_id, event_id, status) VALUES (3, 'e1', 'going')"
            )
        )
    engine.dispose()


@pytest.fixture
def source_url(service_urls: ServiceUrls) -> Iterator[str]:
    """A migrated database with a few rows in most tables, dropped after the test, which also
    fails if a `godo_verify_*` scratch database it made is still there."""
    name = f"godo_backup_{uuid.uuid4().hex[:8]}"
    admin = _admin(service_urls.database_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    scratch_before = _scratch_databases(service_urls.database_url)
    url = make_url(service_urls.database_url).set(database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        migrate.upgrade(rendered)
        _seed(rendered)
        yield rendered
        assert _scratch_databases(service_urls.database_url) <= scratch_before
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def cli_env(source_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the CLI's settings at this test's database and a backup folder of its own."""
    backup_dir = tmp_path / "backups"
    monkeypatch.setenv("DATABASE_URL", source_url)
    monkeypatch.setenv("GODO_BACKUP_DIR", str(backup_dir))
    monkeypatch.delenv("GODO_DATABASE_URL", raising=False)
    monkeypatch.delenv("GODO_PG_BIN_DIR", raising=False)
    get_settings.cache_clear()
    yield backup_dir
    get_settings.cache_clear()


def _scratch_databases(url: str) -> set[str]:
    admin = _admin(url)
    with admin.connect() as conn:
        names = conn.execute(
            sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'godo\\_verify\\_%'")
        ).scalars()
        found = set(names)
    admin.dispose()
    return found


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.connect() as conn:
        counts = backup.count_rows(conn)
    engine.dispose()
    return counts


def _execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def _user_names(url: str) -> set[str]:
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.connect() as conn:
        names = set(conn.execute(sa.text("SELECT display_name FROM users")).scalars())
    engine.dispose()
    return names


def _schema(url: str) -> set[tuple[str, str]]:
    """Every relation and constraint of the public schema, to see that nothing was dropped."""
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT 'relation', c.relname FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                "UNION ALL SELECT 'constraint', k.conname FROM pg_constraint k "
                "JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'public'"
            )
        )
        found = {(str(kind), str(name)) for kind, name in rows}
    engine.dispose()
    return found


def _rewrite_manifest(dump: Path, **changes: object) -> None:
    path = backup.manifest_path(dump)
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_create_writes_a_timestamped_dump_and_a_manifest(source_url: str, tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = backup.create_backup(source_url, tmp_path)
    database = backup.database_name(source_url)

    match = re.fullmatch(rf"godo-{database}-(\d{{8}}T\d{{6}}Z)\.dump", result.dump_path.name)
    assert match, result.dump_path.name
    stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC)
    assert result.dump_path.read_bytes()[:5] == b"PGDMP"  # custom format
    assert result.manifest_path == tmp_path / f"{result.dump_path.stem}.manifest.json"
    manifest = backup.Manifest.from_json(result.manifest_path.read_text())
    assert manifest == result.manifest
    assert manifest.tables == EXPECTED
    assert manifest.sha256 == backup.sha256_file(result.dump_path)
    assert manifest.size_bytes == result.dump_path.stat().st_size
    engine = sa.create_engine(sqlalchemy_url(source_url))
    with engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        server = backup.server_version(conn)
    engine.dispose()
    assert manifest.alembic_revision == revision
    assert (manifest.server_version_num, manifest.server_version) == (server.number, server.text)
    assert manifest.pg_dump_major >= server.major
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [result.dump_path.name, result.manifest_path.name]
    )  # no .partial left behind
    assert stat.S_IMODE(result.dump_path.stat().st_mode) == 0o600
    with pytest.raises(backup.BackupError, match="already exists"):
        backup.create_backup(source_url, tmp_path, now=stamp)


def test_cli_reports_an_unreachable_database_without_a_traceback(
    source_url: str, cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = make_url(source_url).set(database=f"{backup.database_name(source_url)}_gone")
    monkeypatch.setenv("DATABASE_URL", missing.render_as_string(hide_password=False))
    get_settings.cache_clear()
    result = runner.invoke(backup_app, ["create"])
    assert result.exit_code == 1
    assert "PostgreSQL refused" in result.output
    assert "does not exist" in result.output
    assert not cli_env.exists() or not any(cli_env.iterdir())


def test_counts_and_dump_come_from_one_snapshot(source_url: str, tmp_path: Path) -> None:
    """Rows inserted while the dump runs must be in neither the counts nor the dump."""
    stop = threading.Event()
    inserted = 0

    def write() -> None:
        nonlocal inserted
        engine = sa.create_engine(sqlalchemy_url(source_url), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            while not stop.is_set():
                conn.execute(
                    sa.text(
                        "INSERT INTO swipes (id, user_id, event_id, action) "
                        "VALUES (gen_random_uuid(), 3, 'e2', 'pass')"
                    )
                )
                inserted += 1
        engine.dispose()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = backup.create_backup(source_url, tmp_path)
    finally:
        stop.set()
        writer.join()
    assert inserted > 0
    report = backup.verify_backup(source_url, result.dump_path)
    assert report.ok, report.problems


def test_cli_create_prints_the_path_and_the_counts(cli_env: Path) -> None:
    result = runner.invoke(backup_app, ["create"])
    assert result.exit_code == 0, result.output
    dumps = list(cli_env.glob("*.dump"))
    assert len(dumps) == 1
    assert str(dumps[0]) in result.output
    for table, rows in EXPECTED.items():
        assert f"\n{table}\t{rows:,}\n" in result.output, table  # plain rows in a pipe


def test_verify_passes_and_drops_its_scratch_database(source_url: str, cli_env: Path) -> None:
    dump = backup.create_backup(source_url, cli_env).dump_path
    report = backup.verify_backup(source_url, dump)
    assert report.ok, report.problems
    assert report.database.startswith(backup.SCRATCH_PREFIX)
    assert {c.table: c.actual for c in report.checks} == EXPECTED
    assert report.database not in _scratch_databases(source_url)

    result = runner.invoke(backup_app, ["verify", str(dump)])
    assert result.exit_code == 0, result.output
    assert f"Verified {dump.name}" in result.output


def test_verify_fails_on_a_corrupted_dump(source_url: str, cli_env: Path) -> None:
    dump = backup.create_backup(source_url, cli_env).dump_path
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))

    with pytest.raises(backup.BackupError, match="checksum mismatch"):
        backup.verify_backup(source_url, dump)
    result = runner.invoke(backup_app, ["verify", str(dump)])
    assert result.exit_code == 1
    assert "checksum mismatch" in result.output


def test_verify_lists_counts_that_disagree_with_the_manifest(
    source_url: str, cli_env: Path
) -> None:
    dump = backup.create_backup(source_url, cli_env).dump_path
    tables = {name: rows for name, rows in EXPECTED.items() if name != "venues"}
    _rewrite_manifest(dump, tables={**tables, "users": 99, "tickets": 5})

    report = backup.verify_backup(source_url, dump)
    assert not report.ok
    assert sorted(report.problems) == [
        "tickets: missing (manifest: 5 rows)",
        "users: 3 rows, manifest says 99",
        "venues: 1 rows, but not in the manifest",
    ]
    result = runner.invoke(backup_app, ["verify", str(dump)])
    assert result.exit_code == 1
    assert "Verification failed" in result.output
    assert "users: 3 rows, manifest says 99" in result.output


def test_restore_without_yes_refuses_and_changes_nothing(source_url: str, cli_env: Path) -> None:
    dump = backup.create_backup(source_url, cli_env).dump_path
    _execute(source_url, "DELETE FROM swipes")
    before = _counts(source_url)

    result = runner.invoke(backup_app, ["restore", str(dump)])
    assert result.exit_code == 2
    assert "Refusing to restore" in result.output
    assert "--yes" in result.output
    assert _counts(source_url) == before == {**EXPECTED, "swipes": 0}


def test_restore_with_yes_brings_the_rows_back(source_url: str, cli_env: Path) -> None:
    dump = backup.create_backup(source_url, cli_env).dump_path
    _execute(
        source_url,
        "DELETE FROM swipes",
        "DELETE FROM users WHERE id = 1",  # cascades to friendships
        "INSERT INTO users (id, display_name, metro) VALUES (42, 'Intruder', 'sf')",
    )
    assert _counts(source_url) != EXPECTED

    result = runner.invoke(backup_app, ["restore", str(dump), "--yes"])
    assert result.exit_code == 0, result.output
    assert "counts match" in result.output
    assert _counts(source_url) == EXPECTED
    assert _user_names(source_url) == USER_NAMES


def test_a_failed_restore_leaves_the_database_as_it_was(source_url: str, tmp_path: Path) -> None:
    """A table the dump does not know depends on `users`, so dropping `users` fails midway;
    with --single-transaction nothing of the restore may stick."""
    dump = backup.create_backup(source_url, tmp_path).dump_path
    _execute(
        source_url,
        "DELETE FROM swipes",
        "CREATE TABLE badges (user_id bigint REFERENCES users (id))",
        "INSERT INTO badges VALUES (2)",
    )
    before, schema = _counts(source_url), _schema(source_url)

    with pytest.raises(backup.BackupError, match="pg_restore failed") as failure:
        backup.restore_backup(source_url, dump)
    assert "depend" in str(failure.value)  # pg_restore's own stderr is surfaced
    assert _counts(source_url) == before == {**EXPECTED, "swipes": 0, "badges": 1}
    assert _schema(source_url) == schema  # not even a foreign key was dropped


def test_binary_selection_picks_the_servers_major_or_the_closest_newer(source_url: str) -> None:
    server = backup.server_version_of(source_url)
    for tool in ("pg_dump", "pg_restore"):
        candidates = backup.candidate_binaries(tool)
        chosen = backup.choose_binary(tool, candidates, server.major)
        assert chosen in candidates
        assert chosen.major == min(c.major for c in candidates if c.major >= server.major)
        newest = max(c.major for c in candidates)
        with pytest.raises(backup.BackupError) as failure:
            backup.choose_binary(tool, candidates, newest + 1)
        for candidate in candidates:
            assert str(candidate.path) in str(failure.value)
        assert f"PostgreSQL {newest + 1} or newer" in str(failure.value)


def test_configured_bin_dir_comes_first_and_each_binary_once() -> None:
    embedded = backup.pgserver_bin_dir()
    if embedded is None:
        pytest.skip("pgserver is not installed")
    candidates = backup.candidate_binaries("pg_restore", pg_bin_dir=embedded)
    assert candidates[0].path == embedded / "pg_restore"
    resolved = [c.path.resolve() for c in candidates]
    assert len(resolved) == len(set(resolved))
    same_major = [c for c in candidates if c.major == candidates[0].major]
    assert backup.choose_binary("pg_restore", same_major, candidates[0].major) == candidates[0]


def test_a_dump_from_a_newer_pg_dump_gets_a_newer_pg_restore(
    source_url: str, tmp_path: Path
) -> None:
    """pg_restore cannot read archives of a newer pg_dump, so the manifest's pg_dump major
    sets a floor above the server's; restoring with a newer pg_restore must still work."""
    server = backup.server_version_of(source_url)
    newer = [c for c in backup.candidate_binaries("pg_restore") if c.major > server.major]
    if not newer:
        pytest.skip(f"no pg_restore newer than the server's {server.major}")
    dump = backup.create_backup(source_url, tmp_path).dump_path
    _rewrite_manifest(dump, pg_dump_major=min(c.major for c in newer))
    report = backup.verify_backup(source_url, dump)
    assert report.pg_restore.major == min(c.major for c in newer)
    assert report.ok, report.problems


def test_libpq_target_keeps_the_password_out_of_the_url() -> None:
    target = backup.libpq_target(
        "postgresql+psycopg://app:s3cr%40t@db.internal:6543/godo?sslmode=require"
    )
    assert target.url == "postgresql://app@db.internal:6543/godo?sslmode=require"
    assert target.env == {"PGPASSWORD": "s3cr@t"}

    socket = backup.libpq_target("postgresql://postgres:@/godo?host=/tmp/pg sock")
    assert socket.url == "postgresql://postgres@/godo?host=%2Ftmp%2Fpg%20sock"
    assert socket.env == {}
