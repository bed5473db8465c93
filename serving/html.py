"""Server-rendered HTML for the admin pages: one Jinja2 environment, its filters, its CSP.

Autoescape is on for every template (not only `.html`), and undefined names fail loudly
(`StrictUndefined`), so a typo in a template is a test failure, not an empty cell.

The pages load nothing: no script, no image, no font, no other origin. Their only style is
`admin.css`, inlined into each page and allowed by its SHA-256 in the page's own
`Content-Security-Policy` (a route's header wins over the API-wide `default-src 'none'` that
`serving.security` adds). Charts are inline SVG whose colours are presentation attributes,
which a CSP does not govern, so no `'unsafe-inline'` is needed anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import math
from importlib import resources
from typing import Any, Final

import jinja2
from fastapi.responses import HTMLResponse
from markupsafe import Markup

TEMPLATES: Final = resources.files("serving") / "templates"
_CSS: Final = (TEMPLATES / "admin" / "admin.css").read_text(encoding="utf-8")
_CSS_HASH: Final = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
ADMIN_CSP: Final = "; ".join(
    [
        "default-src 'none'",
        f"style-src 'sha256-{_CSS_HASH}'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
# Admin pages show data about users: never cached by a browser or a proxy.
_HEADERS: Final = {"Content-Security-Policy": ADMIN_CSP, "Cache-Control": "no-store"}
DASH: Final = "–"


def percent(value: float | None, digits: int = 2) -> str:
    """0.12345 -> "12.35%"; a missing value is a dash."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value * 100:.{digits}f}%"


def interval(low: float | None, high: float | None, digits: int = 2) -> str:
    """A 95% interval of a rate, "[10.10%, 14.60%]"; a dash without one."""
    if low is None or high is None:
        return DASH
    return f"[{percent(low, digits)}, {percent(high, digits)}]"


def points(value: float | None, digits: int = 2) -> str:
    """A difference of two rates in percentage points, signed: "+1.23 pp"."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value * 100:+.{digits}f} pp"


def points_interval(low: float | None, high: float | None, digits: int = 2) -> str:
    if low is None or high is None:
        return DASH
    return f"[{low * 100:+.{digits}f}, {high * 100:+.{digits}f}] pp"


def number(value: float | None, digits: int = 2) -> str:
    """A count with thousands separators, or a plain number with `digits` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def p_value(value: float | None) -> str:
    """Four decimals, "<0.0001" below that."""
    if value is None or not math.isfinite(value):
        return DASH
    return "<0.0001" if value < 0.0001 else f"{value:.4f}"


_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("serving", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(
    percent=percent,
    interval=interval,
    points=points,
    points_interval=points_interval,
    number=number,
    p_value=p_value,
)
_environment.globals["css"] = Markup(_CSS)  # our own file, hashed above: not escaped


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template `name` with `context`, with the admin CSP and no caching."""
    body = _environment.get_template(name).render(**context)
    return HTMLResponse(body, status_code=status_code, headers=_HEADERS)
