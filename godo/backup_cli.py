"""`godo backup create | verify | restore`: the terminal face of `godo.backup`.

The commands reach the configured database (DATABASE_URL) or the embedded one, but unlike
the other commands they never migrate it: a backup should capture the schema as it is, and
a restore brings its own. `godo.backup` (SQLAlchemy, and Polars through `store.db`) is
imported inside the commands, so registering this app costs `godo token` nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings, get_settings
from godo import services
from godo.console import new_table, show

if TYPE_CHECKING:
    from godo import backup

backup_app = typer.Typer(
    help="Back up the app's PostgreSQL with pg_dump, prove a dump restores, restore it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

T = TypeVar("T")

Dump = Annotated[
    Path,
    typer.Argument(
        help="A .dump written by `godo backup create` (its .manifest.json beside it).",
        exists=True,
        dir_okay=False,
        resolve_path=True,
    ),
]


def _database_url(settings: Settings) -> str:
    """The configured database, else the embedded one (started if need be)."""
    if settings.database_url:
        return settings.database_url
    with console.status("Starting the embedded PostgreSQL..."):
        return services.start_postgres(settings.data_path)


def _describe_target(settings: Settings) -> str:
    """Name the database without starting or touching anything, password hidden."""
    from sqlalchemy.engine import make_url

    if settings.database_url:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    return f"the embedded PostgreSQL's database {services.DATABASE_NAME!r}"


@contextmanager
def _failures() -> Iterator[None]:
    """A BackupError is the operator's to fix, so show its message, not a traceback."""
    import sqlalchemy as sa

    from godo import backup

    try:
        yield
    except backup.BackupError as error:
        errors.print(f"[red bold]Backup error:[/] {error}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    except sa.exc.DBAPIError as error:  # unreachable server, missing CREATEDB right, ...
        errors.print(
            f"[red bold]PostgreSQL refused:[/] {error.orig}", soft_wrap=True, highlight=False
        )
        raise typer.Exit(1) from None


def _timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    return action(), time.perf_counter() - started


def _counts_table(counts: dict[str, int]) -> Table:
    table = new_table(("table", "rows"), numeric={"rows"})
    for name, rows in sorted(counts.items()):
        table.add_row(name, f"{rows:,}")
    return table


def _checks_table(checks: Iterable[backup.TableCheck], restored: str) -> Table:
    table = new_table(("table", "manifest", restored, ""), numeric={"manifest", restored})

    def shown(rows: int | None) -> str:
        return "-" if rows is None else f"{rows:,}"

    for check in checks:
        mark = "[green]ok[/]" if check.ok else "[red bold]MISMATCH[/]"
        table.add_row(check.table, shown(check.expected), shown(check.actual), mark)
    return table


def _report(report: backup.RestoreReport, seconds: float, what: str) -> None:
    manifest = report.manifest
    show(console, _checks_table(report.checks, what))
    console.print(
        f"{manifest.dump}: taken {manifest.created_at} from {manifest.database!r} "
        f"(PostgreSQL {manifest.server_version}, pg_dump {manifest.pg_dump_version}, "
        f"alembic {manifest.alembic_revision}); pg_restore {report.pg_restore.describe()}; "
        f"{seconds:.2f} s",
        soft_wrap=True,
        highlight=False,
    )


@backup_app.command("create")
def create(
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", help="Folder for the dump (default: GODO_BACKUP_DIR or .godo/backups)."
        ),
    ] = None,
) -> None:
    """Dump the database (custom format) with a manifest of its row counts and checksum."""
    from godo import backup

    settings = get_settings()
    url = _database_url(settings)
    folder = output_dir.expanduser().resolve() if output_dir else settings.backup_path
    with _failures(), console.status("Dumping..."):
        result, seconds = _timed(
            lambda: backup.create_backup(url, folder, pg_bin_dir=settings.pg_bin_dir)
        )
    manifest = result.manifest
    show(console, _counts_table(manifest.tables))
    console.print(
        f"pg_dump {result.pg_dump.describe()} against PostgreSQL {manifest.server_version}; "
        f"{manifest.size_bytes:,} bytes in {seconds:.2f} s; alembic {manifest.alembic_revision}",
        soft_wrap=True,
        highlight=False,
    )
    console.print(f"[green]Backup[/] {result.dump_path}", soft_wrap=True, highlight=False)
    console.print(f"Manifest {result.manifest_path}", soft_wrap=True, highlight=False)


@backup_app.command("verify")
def verify(dump: Dump) -> None:
    """Check the checksum, restore into a scratch database, compare row counts, drop it."""
    from godo import backup

    settings = get_settings()
    url = _database_url(settings)
    with _failures(), console.status("Restoring into a scratch database..."):
        report, seconds = _timed(
            lambda: backup.verify_backup(url, dump, pg_bin_dir=settings.pg_bin_dir)
        )
    _report(report, seconds, "restored")
    if not report.ok:
        errors.print(
            f"[red bold]Verification failed[/] for {dump.name}:\n  " + "\n  ".join(report.problems),
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(
        f"[green]Verified[/] {dump.name}: it restores to what the manifest says.", soft_wrap=True
    )


@backup_app.command("restore")
def restore(
    dump: Dump,
    yes: Annotated[
        bool, typer.Option("--yes", help="Really replace the configured database's contents.")
    ] = False,
) -> None:
    """Replace the configured database's contents with a dump, in one transaction."""
    from godo import backup

    settings = get_settings()
    if not yes:
        errors.print(
            f"[red bold]Refusing to restore[/] {dump.name} into {_describe_target(settings)} "
            "without --yes: it drops and recreates every table the dump holds. Nothing was "
            "changed.",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(2)
    url = _database_url(settings)
    with _failures(), console.status(f"Restoring into {_describe_target(settings)}..."):
        report, seconds = _timed(
            lambda: backup.restore_backup(url, dump, pg_bin_dir=settings.pg_bin_dir)
        )
    _report(report, seconds, "now")
    if not report.ok:
        errors.print(
            f"[red bold]Restored, but the database differs from the manifest[/] of "
            f"{dump.name}:\n  " + "\n  ".join(report.problems),
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(
        f"[green]Restored[/] {dump.name} into {report.database!r}; counts match.", soft_wrap=True
    )
