"""Structured logs from the API: JSON lines that carry the request id of the request."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core.settings import Settings
from core.tokens import issue_token
from serving.app import create_app
from tests.integration.conftest import app_client


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"log_format": "json"})


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_response_has_a_request_id_and_a_callers_sane_one_is_kept(
    settings: Settings, engine: sa.Engine
) -> None:
    with app_client(settings) as client:
        made = client.get("/health").headers["x-request-id"]
        kept = client.get("/health", headers={"X-Request-ID": "lb-7f3a9c21"})
        replaced = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(made) == 32 and int(made, 16) >= 0
    assert kept.headers["x-request-id"] == "lb-7f3a9c21"
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"


def test_lines_logged_while_serving_are_json_with_that_requests_id(
    settings: Settings, engine: sa.Engine, capfd: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings)

    def noisy() -> dict[str, bool]:
        logging.getLogger("store.example").warning("looked something up", extra={"rows": 3})
        return {"ok": True}

    app.add_api_route("/noisy", noisy)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {issue_token(settings, 1)}"}
        response = client.get("/noisy", headers={**headers, "X-Request-ID": "req-123456789"})
    assert response.status_code == 200
    lines = [
        line
        for line in _json_lines(capfd.readouterr().err)
        if line.get("logger") == "store.example"
    ]
    assert lines, "the route's log line was not written as JSON"
    line = lines[-1]
    assert line["message"] == "looked something up"
    assert line["level"] == "WARNING"
    assert line["request_id"] == "req-123456789"
    assert line["rows"] == 3
    assert "time" in line
