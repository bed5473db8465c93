"""The admin pages in a real browser: Playwright driving Debian's Chromium against uvicorn.

Chromium is the system's (`/usr/bin/chromium`, or `GODO_CHROMIUM`), never a build downloaded
by Playwright's installer: `python3 dev.py test` (and `python3 dev.py browsers`) install
Debian's package when it is missing. A missing browser fails this test rather than skipping
it, so a green suite always means the pages were seen in a browser.

Checks what a person would: the sign-in form, the numbers on the page against Postgres, that
the chart is drawn (one point per arm and day), that the page's CSP blocks nothing it needs
(no console errors), the way to a user's feed; and saves screenshots under the test's tmp
folder (and to `docs/` with `GODO_UPDATE_SCREENSHOTS=1`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import sqlalchemy as sa
from playwright.sync_api import Page

from core.settings import Settings
from serving.html import interval, number, percent
from tests.integration.conftest import (
    ADMIN_EXPERIMENT,
    AdminWorld,
    admin_token,
    collect_page_errors,
    postgres_arm_numbers,
    postgres_daily_points,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_experiment_page_in_chromium(
    page: Page,
    live_api: str,
    api_settings: Settings,
    admin_world: AdminWorld,
    engine: sa.Engine,
    tmp_path: Path,
) -> None:
    unauthorised = page.goto(f"{live_api}/admin/experiments")
    assert unauthorised is not None and unauthorised.status == 401
    # From here on nothing may fail: a CSP violation or a failed load is a console error.
    errors: list[str] = []
    collect_page_errors(page, errors)

    page.goto(f"{live_api}/admin/login")
    page.fill("#token", admin_token(api_settings))
    page.click("button[type=submit] >> text=Sign in")
    page.wait_for_url(f"{live_api}/admin/experiments")
    assert page.title() == "Experiments · Godo admin"

    expected = postgres_arm_numbers(engine)
    section = page.locator(f'section[data-experiment="{ADMIN_EXPERIMENT}"]')
    for arm in ("control", "treatment"):
        truth = expected[(ADMIN_EXPERIMENT, arm)]
        row = section.locator(f'table.arms tr[data-arm="{arm}"]')

        def cell(metric: str, row: object = row) -> str:
            return str(row.locator(f'td[data-metric="{metric}"]').inner_text()).strip()  # type: ignore[attr-defined]

        assert cell("users") == number(truth["users"])
        assert cell("impressions") == number(truth["impressions"])
        for rate in ("like_rate", "superlike_rate", "going_rate"):
            assert cell(rate) == percent(truth[rate])
            assert cell(f"{rate}_interval") == interval(truth[f"{rate}_low"], truth[f"{rate}_high"])

    # The chart is drawn: one visible point per arm and UTC day with impressions.
    chart = section.locator("svg.chart")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    for arm, days in postgres_daily_points(engine, ADMIN_EXPERIMENT).items():
        assert chart.locator(f'g.series[data-arm="{arm}"] circle.point').count() == days
    # The stylesheet applied (the CSP allowed it by hash): the header is dark.
    background = page.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(31, 41, 55)"

    shot = tmp_path / "admin-experiments.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("GODO_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS / "admin-experiments.png")

    # On to one user's feed through the header's form.
    page.fill("#user-id", str(admin_world.feed_user))
    page.click("header button[type=submit]")
    page.wait_for_url(f"{live_api}/admin/users/{admin_world.feed_user}/feed")
    assert page.locator('td[data-field="arm"]').first.inner_text() == admin_world.feed_arm
    assert page.locator("table.feed tbody tr").count() == 4
    assert page.locator("table.history tbody tr").count() == 15
    page.screenshot(path=str(tmp_path / "admin-user-feed.png"), full_page=True)

    assert errors == []
