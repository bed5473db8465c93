"""Shared fixtures: real PostgreSQL and Redis for integration tests; running notebook cells
and dev.py the way a developer does; the live messages' documented schemas
(`docs/asyncapi.yaml`) for unit and integration tests alike.

`DATABASE_URL` / `REDIS_URL` point the tests at running servers (CI does this); otherwise the
embedded servers from `godo.services` start under a temporary folder. Each test session gets
its own freshly migrated database, and each test its own Redis key prefix, so runs never see
each other's data.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import redis
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from core.settings import REPO_ROOT
from godo import services
from sources.resend.fake import FakeResend
from store import migrate
from store.db import make_engine, sqlalchemy_url
from store.keys import RedisKeys
from store.schema import metadata

if TYPE_CHECKING:
    import nbformat

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def load_dev_py() -> ModuleType:
    """dev.py (a script, not a package module) imported, for its command table."""
    spec = importlib.util.spec_from_file_location("godo_dev_py", REPO_ROOT / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def execute_in_notebook_dir(notebook: nbformat.NotebookNode, env: Mapping[str, str]) -> None:
    """Run every cell in a `python3` kernel started in notebooks/, as JupyterLab and VS Code
    start the kernel of a notebook there; outputs land in `notebook`. A failing cell raises
    nbclient's CellExecutionError."""
    from nbclient import NotebookClient

    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=600,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's cwd
    )
    client.execute(env=dict(env))


ASYNCAPI = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"


@cache
def asyncapi_document() -> dict[str, Any]:
    """`docs/asyncapi.yaml`, parsed."""
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return document


def resolve_ref(node: Any) -> Any:
    """`node`, or what its local `$ref` (`#/components/messages/hello`) points at, followed
    until it is not a reference."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = asyncapi_document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def live_message_schemas() -> dict[str, dict[str, Any]]:
    """Each message type the server sends on `/v1/live` -> its documented payload schema,
    with the document's `components` beside it so its `$ref`s resolve."""
    document = asyncapi_document()
    schemas = {}
    for reference in document["operations"]["sendLiveEvents"]["messages"]:
        payload = resolve_ref(reference)["payload"]
        schemas[payload["properties"]["type"]["const"]] = {
            **payload,
            "components": document["components"],
        }
    return schemas


def assert_documented_live_message(message: dict[str, Any]) -> None:
    """Fail unless `message` is a documented type and valid against its schema."""
    schemas = live_message_schemas()
    assert message.get("type") in schemas, f"undocumented live message: {message}"
    schema = schemas[message["type"]]
    jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    ).validate(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ServiceUrls]:
    """Configured servers, or embedded ones started here and stopped when the session ends."""
    data_dir = Path(tmp_path_factory.mktemp("services"))
    urls = services.resolve(data_dir, os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"))
    yield urls
    if urls.embedded_postgres:
        services.stop_postgres(data_dir)
    if urls.embedded_redis:
        services.stop_redis(data_dir)


@pytest.fixture(scope="session")
def database_url(service_urls: services.ServiceUrls) -> Iterator[str]:
    """A new, migrated database for this test session, dropped at the end."""
    name = f"godo_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        sqlalchemy_url(service_urls.database_url), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(service_urls.database_url).set(database=name)
    rendered = url.render_as_string(hide_password=False)
    migrate.upgrade(rendered)
    yield rendered
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def session_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(session_engine: sa.Engine) -> sa.Engine:
    """The session's engine over empty tables."""
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with session_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    return session_engine


@pytest.fixture(scope="session")
def redis_client(service_urls: services.ServiceUrls) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(service_urls.redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_keys(redis_client: redis.Redis) -> Iterator[RedisKeys]:
    """A key namespace of this test's own, deleted afterwards."""
    keys = RedisKeys(prefix=f"godo-test-{uuid.uuid4().hex[:10]}")
    yield keys
    stale = list(redis_client.scan_iter(match=keys.namespace_pattern(), count=1000))
    if stale:
        redis_client.delete(*stale)


@pytest.fixture(scope="session")
def resend_server() -> Iterator[FakeResend]:
    """The local fake of Resend's API, one server for the session (`resend` resets it)."""
    with FakeResend() as server:
        yield server


@pytest.fixture
def resend(resend_server: FakeResend) -> Iterator[FakeResend]:
    """The fake Resend with nothing received and no faults armed, before and after the test."""
    resend_server.reset()
    yield resend_server
    resend_server.reset()
