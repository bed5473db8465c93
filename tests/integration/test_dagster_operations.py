"""The production Dagster instance (dagster.yaml over Postgres), its sensors and alerts.

Everything runs against the session's real Postgres: the instance keeps its runs in a
database of its own there, exactly as `godo dagster` and production do.
"""

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core.settings import Settings
from godo.dagster_home import ENV_VAR, REPO_ROOT, prepare_dagster_home
from godo.services import ServiceUrls
from pipelines.alerts import AlertsResource, describe_failure
from pipelines.jobs import RUN_CONFIG
from pipelines.logs import json_lines_logger
from pipelines.resources import PostgresResource
from pipelines.sensors import refresh_sensor, report_run_failures
from store.db import sqlalchemy_url

# --- the instance ------------------------------------------------------------------------


@pytest.fixture
def instance(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The repo's dagster.yaml in a temp DAGSTER_HOME, storing in a scratch database."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    name = f"godo_dagster_test_{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, dagster_database=name, _env_file=None)  # type: ignore[call-arg]
    home = prepare_dagster_home(settings, database_url)
    with dg.DagsterInstance.from_config(str(home)) as dagster_instance:
        yield dagster_instance
    admin = sa.create_engine(sqlalchemy_url(database_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_instance_stores_runs_in_postgres_with_the_production_settings(
    instance: dg.DagsterInstance, database_url: str
) -> None:
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    queue = instance.get_concurrency_config().run_queue_config
    assert queue is not None and queue.max_concurrent_runs == 4
    limits = {
        (limit["key"], limit.get("value")): limit["limit"] for limit in queue.tag_concurrency_limits
    }
    assert limits == {
        ("godo/pipeline", "ingest"): 3,
        ("godo/pipeline", "retrain"): 1,
        ("godo/pipeline", "publish"): 1,
        ("godo/pipeline", "synthetic"): 1,
        ("godo/pipeline", "outreach"): 1,
        ("godo/pipeline", "impressions"): 1,
    }
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert instance.telemetry_enabled is False
    # On the app's server, in a database of its own.
    stored = make_url(instance.run_storage.postgres_url)  # type: ignore[attr-defined]
    assert stored.host == make_url(database_url).host
    assert stored.database != make_url(database_url).database


def test_a_run_is_kept_in_postgres_and_logs_json_lines_with_its_run_id(
    instance: dg.DagsterInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    @dg.asset
    def shout(context: dg.AssetExecutionContext) -> int:
        context.log.info("counting the city")
        return 3

    job = dg.Definitions(
        assets=[shout], loggers={"console": json_lines_logger}
    ).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, run_config=RUN_CONFIG)
    assert result.success
    stored = instance.get_run_by_id(result.run_id)
    assert stored is not None and stored.is_success
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("run_id") == result.run_id]
    assert any("counting the city" in str(line.get("message")) for line in mine)
    assert all(line["level"] and line["time"] and line["job_name"] for line in mine)
    assert not any(key.startswith("dagster_") for line in mine for key in line)
    # One line per event: Dagster's coloured console logger is replaced, not doubled.
    assert " - counting the city" not in capfd.readouterr().err


# --- refresh when swipes pile up ----------------------------------------------------------


def _seed_swipes(engine: sa.Engine, published_at: datetime, before: int, after: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, display_name, metro) VALUES (1, 'A', 'sf')"))
        conn.execute(sa.text("INSERT INTO venues (id, name, metro) VALUES ('v', 'Hall', 'sf')"))
        conn.execute(
            sa.text(
                "INSERT INTO events (id, name, venue_id, metro, category, start_utc, is_free, "
                "status, is_active) SELECT 'e' || g, 'E', 'v', 'sf', 'music', now() + interval "
                "'1 day', true, 'live', true FROM generate_series(1, :n) AS g"
            ),
            {"n": before + after},
        )
        conn.execute(
            sa.text(
                "INSERT INTO recommendation_runs (id, model, status, published_at, fallback) "
                "VALUES ('r1', 'm', 'published', :at, '[]')"
            ),
            {"at": published_at},
        )
        for i in range(before + after):
            created = published_at + timedelta(minutes=(i - before) + (1 if i >= before else -1))
            conn.execute(
                sa.text(
                    "INSERT INTO swipes (id, user_id, event_id, action, client_id, created_at) "
                    "VALUES (:id, 1, :e, 'like', :c, :t)"
                ),
                {"id": uuid.uuid4(), "e": f"e{i + 1}", "c": str(uuid.uuid4()), "t": created},
            )


def test_refresh_is_requested_once_enough_swipes_arrived_since_the_publish(
    engine: sa.Engine, database_url: str
) -> None:
    published = datetime.now(UTC) - timedelta(hours=2)
    _seed_swipes(engine, published, before=5, after=3)
    postgres = PostgresResource(database_url=database_url)

    def evaluate(threshold: int, cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
        with dg.build_sensor_context(cursor=cursor, resources={"postgres": postgres}) as context:
            return refresh_sensor(min_new_swipes=threshold)(context)  # type: ignore[no-any-return]

    waiting = evaluate(4)
    assert isinstance(waiting, dg.SkipReason) and "3 new swipes" in str(waiting.skip_message)

    result = evaluate(3)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    assert request.tags["godo/new_swipes"] == "3"
    assert result.cursor is not None

    # The refresh it asked for may still be running: the same swipes never ask twice.
    again = evaluate(3, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason) and "0 new swipes" in str(again.skip_message)


# --- failed runs are reported -----------------------------------------------------------


class _FakeSentry(BaseHTTPRequestHandler):
    """Sentry's envelope endpoint, keeping what the SDK sends (the real SDK, over HTTP)."""

    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sentry_dsn() -> Iterator[str]:
    _FakeSentry.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeSentry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/42"
    server.shutdown()


def _failed_run_context(
    instance: dg.DagsterInstance, error: Exception
) -> dg.RunFailureSensorContext:
    @dg.asset
    def breaks() -> None:
        raise error

    result = dg.materialize([breaks], instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name="report_run_failures",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()


def test_a_failed_run_is_logged_and_sent_to_sentry(
    instance: dg.DagsterInstance, sentry_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    context = _failed_run_context(instance, RuntimeError("warehouse is locked"))
    failure = describe_failure(context)
    assert [s.step_key for s in failure.steps] == ["breaks"]
    assert failure.steps[0].error_class == "RuntimeError"

    report_run_failures(context, alerts=AlertsResource(sentry_dsn=sentry_dsn))

    assert any(
        "warehouse is locked" in r.getMessage() for r in caplog.records if r.levelname == "ERROR"
    )
    (envelope,) = _FakeSentry.received
    assert b"warehouse is locked" in envelope
    assert context.dagster_run.run_id.encode() in envelope


def test_without_a_dsn_a_failure_is_only_logged(
    instance: dg.DagsterInstance, caplog: pytest.LogCaptureFixture
) -> None:
    context = _failed_run_context(instance, ValueError("bad partition"))
    assert AlertsResource(sentry_dsn=None).report(describe_failure(context)) is False
    assert any("bad partition" in r.getMessage() for r in caplog.records)


# --- `godo dagster` ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_godo_dagster_serves_the_ui_and_daemon_on_the_postgres_instance(
    tmp_path: Path, database_url: str, service_urls: ServiceUrls
) -> None:
    """The real command, as a developer runs it: UI answering, daemon heartbeating in
    Postgres, the code location loaded."""
    port = _free_port()
    name = f"godo_dagster_test_{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in (ENV_VAR, "DAGSTER_HOME")},
        "DATABASE_URL": database_url,
        "REDIS_URL": service_urls.redis_url,
        "GODO_DATA_DIR": str(tmp_path),
        "GODO_DAGSTER_DATABASE": name,
    }
    command = [
        sys.executable,
        "-c",
        "from godo.cli import app; app()",
        "dagster",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        info = _wait_for_json(f"http://127.0.0.1:{port}/server_info", process, timeout=150)
        assert "dagster_webserver_version" in info
        locations = _graphql(
            port, "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
        )
        names = [e["name"] for e in locations["workspaceOrError"]["locationEntries"]]
        assert names == ["godo"]
        home = tmp_path.resolve() / "dagster"
        assert (home / "dagster.yaml").read_text() == (REPO_ROOT / "dagster.yaml").read_text()
        env_for_instance = {ENV_VAR: dagster_postgres_url_for(database_url, name)}
        with _environ(env_for_instance), dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 90
            while not instance.get_daemon_heartbeats() and time.monotonic() < deadline:
                time.sleep(2)
            assert "SCHEDULER" in instance.get_daemon_heartbeats()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        admin = sa.create_engine(sqlalchemy_url(database_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def dagster_postgres_url_for(database_url: str, name: str) -> str:
    return (
        make_url(database_url)
        .set(drivername="postgresql+psycopg2", database=name)
        .render_as_string(hide_password=False)
    )


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _wait_for_json(
    url: str, process: subprocess.Popen[bytes], *, timeout: float
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"godo dagster exited with {process.returncode}:\n{err[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    deadline = time.monotonic() + 120
    while True:
        with urllib.request.urlopen(request, timeout=30) as response:
            data: dict[str, Any] = json.loads(response.read())["data"]
        entries = data.get("workspaceOrError", {}).get("locationEntries")
        if entries is not None or time.monotonic() > deadline:
            return data
        time.sleep(1)
