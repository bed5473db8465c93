"""`/docs` and `/redoc` work on a closed network: every script, stylesheet and icon they load
comes from the app itself (`serving.docs`), and a real browser draws both pages with every
request to another host refused."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from playwright.sync_api import Page, Route

from core.settings import Settings
from serving.docs import ASSETS_PATH, REDOC_JS, SWAGGER_CSS, SWAGGER_JS
from tests.integration.conftest import app_client, collect_page_errors

PAGES = {"/docs": {SWAGGER_JS, SWAGGER_CSS}, "/redoc": {REDOC_JS}}
# Each bundle, and a name only that bundle defines (so an empty or wrong file fails).
SCRIPTS = {SWAGGER_JS: "SwaggerUIBundle", REDOC_JS: "Redoc"}
# ReDoc draws its vendor's logo from this URL in the sidebar's "API docs by Redocly" link, with
# no option to turn it off; the docs CSP refuses it (the browser logs that) and ReDoc drops
# the image when it fails to load. Nothing else may be refused.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def _references(html: str) -> list[str]:
    """Every URL the page loads or hands to its script: src, href, spec-url and `url: '...'`."""
    return re.findall(r'(?:src|href|spec-url)="([^"]*)"', html) + re.findall(
        r"url: '([^']*)'", html
    )


@pytest.mark.parametrize("path", sorted(PAGES))
def test_the_docs_pages_reference_only_this_origin(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert "://" not in response.text  # no absolute URL of any scheme, CDN or other
    references = _references(response.text)
    assert "/openapi.json" in references
    assert {f"{ASSETS_PATH}/{name}" for name in PAGES[path]} <= set(references)
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        assert client.get(reference).status_code == 200, reference


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_bundles_are_served_as_javascript(client: TestClient, name: str) -> None:
    response = client.get(f"{ASSETS_PATH}/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert len(response.content) > 500_000  # the whole bundle, not a stub
    assert SCRIPTS[name] in response.text
    assert "etag" in response.headers  # browsers revalidate instead of downloading again


def test_the_stylesheet_is_served_as_css(client: TestClient) -> None:
    response = client.get(f"{ASSETS_PATH}/{SWAGGER_CSS}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert ".swagger-ui" in response.text


def test_behind_a_proxy_prefix_the_pages_name_prefixed_assets(
    api_settings: Settings, engine: sa.Engine
) -> None:
    with app_client(api_settings, root_path="/api") as client:
        swagger = _references(client.get("/docs").text)
        redoc = _references(client.get("/redoc").text)
    assert f"/api{ASSETS_PATH}/{SWAGGER_JS}" in swagger and "/api/openapi.json" in swagger
    assert f"/api{ASSETS_PATH}/{REDOC_JS}" in redoc and "/api/openapi.json" in redoc


def test_swagger_ui_and_redoc_render_with_no_other_host(
    page: Page, live_api: str, tmp_path: Path
) -> None:
    """Chromium loads both pages with every request off the API's own origin aborted: the
    operations must still be drawn, with nothing refused and no console error (a CSP
    violation is one) but ReDoc's logo."""
    origin = urlsplit(live_api).netloc
    elsewhere: list[str] = []

    def only_this_origin(route: Route) -> None:
        if urlsplit(route.request.url).netloc == origin or route.request.url.startswith(
            ("blob:", "data:")
        ):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_origin)
    errors: list[str] = []
    collect_page_errors(page, errors)

    page.goto(f"{live_api}/docs")
    page.wait_for_selector(".swagger-ui .opblock")
    assert "Godo API" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".swagger-ui .opblock").count() >= 20  # one block per operation
    assert page.locator('.opblock[id$="-getFeed"]').count() == 1  # deep links by operation id
    page.screenshot(path=str(tmp_path / "swagger-ui.png"))

    page.goto(f"{live_api}/redoc")
    page.wait_for_selector("redoc h1")
    assert "Godo API" in page.locator("redoc h1").first.inner_text()
    assert page.locator('[data-section-id^="tag/feed"]').count() >= 1
    page.screenshot(path=str(tmp_path / "redoc.png"))

    assert elsewhere == []
    logo = [e for e in errors if REDOC_LOGO in e and "Content Security Policy" in e]
    assert page.locator(f'img[src="{REDOC_LOGO}"]').count() == 0  # dropped, not broken
    assert [e for e in errors if e not in logo] == []
