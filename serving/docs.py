"""The API's documentation: `/docs` and `/redoc` served without a CDN, and operation ids.

`/docs` (Swagger UI) and `/redoc` (ReDoc) are served with their scripts from the app itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and ReDoc's fonts from Google), so
on a closed network they are blank. These are FastAPI's documented self-hosting pattern
(`get_swagger_ui_html` / `get_redoc_html` pointed at a `StaticFiles` mount), with the bundles
from the `fastapi-offline` package: it ships `swagger-ui-bundle.js`, `swagger-ui.css` and
`redoc.standalone.js` (Swagger UI: Apache-2.0, ReDoc: MIT), and `uv lock` pins its version, so
upgrading the UIs is a lock bump, not files to copy by hand. Only those files (and the
favicon) are served, read from the installed package.

Served only where `Settings.serves_docs` says (development by default), like `/openapi.json`.

Operation ids are what client generators name their methods after, so they are short and
stable: the camelCase of the handler's name (`get_feed` -> `getFeed`, `post_swipes` ->
`postSwipes`), method first, instead of FastAPI's default (`get_feed_v1_feed_get`), which
changes with the path. Renaming a handler renames its operation:
`tests/unit/serving/test_openapi.py` lists every one, so that is always a deliberate change.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from serving.problem_types import PROBLEM_TYPES

SWAGGER_UI_PATH = "/docs"
REDOC_PATH = "/redoc"
DOCS_PATHS = (SWAGGER_UI_PATH, REDOC_PATH)
# Under `/docs/`, so the security headers give the assets the docs pages' CSP.
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
ASSETS = (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON)


def api_description() -> str:
    """The OpenAPI document's description: what every operation shares, and what the
    operations list cannot show (the problem kinds, from their registry; the WebSocket)."""
    kinds = "\n".join(
        f"| `{kind.code}` | `{kind.uri}` | {kind.status} | {kind.when} |" for kind in PROBLEM_TYPES
    )
    return f"""\
**Errors** are RFC 9457 problems (`application/problem+json`). Branch on `type` or `code`, never
on `detail` (written for people, it may change); a kind is never renamed. Also in the
repository's `docs/problems.md`, with what the app should do about each.

| code | type | status | when |
| --- | --- | --- | --- |
{kinds}

**Live updates**: `GET /v1/live` is a WebSocket, which OpenAPI cannot describe: its messages,
parameters and close codes are in the repository's `docs/asyncapi.yaml` (AsyncAPI 3.0).
"""


def operation_id(route: APIRoute) -> str:
    """`route`'s OpenAPI operationId: its handler's name in camelCase (`get_my_calendar` ->
    `getMyCalendar`). FastAPI's `generate_unique_id_function`."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def install_docs(app: FastAPI) -> tuple[str, ...]:
    """Serve both pages and their assets when `app` serves its OpenAPI document.

    Returns the pages' paths (none when the document is off), for `install_security`.
    """
    openapi_url = app.openapi_url
    if openapi_url is None:
        return ()
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{ASSETS_PATH}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
            # No badge from swagger.io's online validator: nothing leaves this origin.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
            with_google_fonts=False,
        )

    # Plain Starlette routes (GET and HEAD), as FastAPI registers its own docs pages.
    app.add_route(SWAGGER_UI_PATH, swagger_ui, include_in_schema=False)
    app.add_route(REDOC_PATH, redoc, include_in_schema=False)
    return DOCS_PATHS


def _root(request: Request) -> str:
    """The ASGI `root_path` (a proxy's mount point), as FastAPI's own docs pages use it."""
    return str(request.scope.get("root_path", "")).rstrip("/")
