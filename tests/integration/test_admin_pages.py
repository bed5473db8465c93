"""The admin pages end to end: real Postgres and Redis, HTTP through the app, no mocks.

The numbers on the page are checked against what Postgres says directly (SQL and the
delta-method arithmetic in `postgres_arm_numbers`), not against the code that computes them.
"""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from scipy import stats

from core.settings import Settings
from core.tokens import issue_token
from serving.html import interval, number, p_value, percent, points, points_interval
from tests.integration.conftest import (
    ADMIN_EXPERIMENT,
    Z95,
    AdminWorld,
    admin_token,
    app_client,
    page_cells,
    postgres_arm_numbers,
    postgres_daily_points,
)

PROBLEM = "application/problem+json"
RATES = ("like_rate", "superlike_rate", "going_rate")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "path", ["/admin/experiments", f"/admin/experiments/{ADMIN_EXPERIMENT}", "/admin/users/7/feed"]
)
def test_pages_need_a_token_with_the_admin_role(
    client: TestClient, api_settings: Settings, admin_world: AdminWorld, path: str
) -> None:
    missing = client.get(path)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == PROBLEM
    assert missing.headers["www-authenticate"] == "Bearer"

    forged = client.get(path, headers=_bearer(admin_token(api_settings) + "x"))
    assert forged.status_code == 401
    assert forged.headers["content-type"] == PROBLEM

    plain = client.get(path, headers=_bearer(admin_token(api_settings, admin=False)))
    assert plain.status_code == 403
    assert plain.headers["content-type"] == PROBLEM
    assert "app_metadata.role" in plain.json()["detail"]

    ok = client.get(path, headers=_bearer(admin_token(api_settings)))
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/html")
    assert ok.headers["cache-control"] == "no-store"
    assert "script-src" not in ok.headers["content-security-policy"]
    assert "style-src 'sha256-" in ok.headers["content-security-policy"]


def test_the_role_claim_path_and_value_are_configurable(
    api_settings: Settings, admin_world: AdminWorld
) -> None:
    settings = api_settings.model_copy(
        update={"admin_role_claim": "app_metadata.roles", "admin_role": "experimenter"}
    )
    with app_client(settings) as client:
        as_list = issue_token(
            settings, 1, extra_claims={"app_metadata": {"roles": ["viewer", "experimenter"]}}
        )
        assert client.get("/admin/experiments", headers=_bearer(as_list)).status_code == 200
        other = issue_token(settings, 1, extra_claims={"app_metadata": {"roles": ["admin"]}})
        assert client.get("/admin/experiments", headers=_bearer(other)).status_code == 403
        # The default path no longer counts.
        old = issue_token(settings, 1, extra_claims={"app_metadata": {"role": "experimenter"}})
        assert client.get("/admin/experiments", headers=_bearer(old)).status_code == 403


def test_the_experiment_page_shows_what_postgres_holds(
    client: TestClient, api_settings: Settings, admin_world: AdminWorld, engine: sa.Engine
) -> None:
    response = client.get("/admin/experiments", headers=_bearer(admin_token(api_settings)))
    assert response.status_code == 200
    cells = page_cells(response.text)
    expected = postgres_arm_numbers(engine)
    for arm in ("control", "treatment"):
        truth = expected[(ADMIN_EXPERIMENT, arm)]
        row = {k[3]: v for k, v in cells.items() if k[:3] == (ADMIN_EXPERIMENT, "arms", arm)}
        assert row["users"] == number(truth["users"])
        assert row["impressions"] == number(truth["impressions"])
        for rate in RATES:
            assert row[rate] == percent(truth[rate])
            assert row[f"{rate}_interval"] == interval(truth[f"{rate}_low"], truth[f"{rate}_high"])
        srm = cells[(ADMIN_EXPERIMENT, "sample-ratio", arm, "users")]
        assert srm == number(truth["users"])
    # Traffic outside the experiment is the champion's row.
    champion = expected[(None, None)]
    assert cells[("", "arms", "champion", "impressions")] == number(champion["impressions"])
    assert cells[("", "arms", "champion", "like_rate")] == percent(champion["like_rate"])

    # Treatment against control: difference, interval and p-value of independent arms.
    control, treatment = (expected[(ADMIN_EXPERIMENT, a)] for a in ("control", "treatment"))
    for rate in RATES:
        diff = treatment[rate] - control[rate]
        spread = math.hypot(treatment[f"{rate}_se"], control[f"{rate}_se"])
        key = (ADMIN_EXPERIMENT, "tests", "treatment")
        assert cells[(*key, f"{rate}.diff")] == points(diff)
        assert cells[(*key, f"{rate}.interval")] == points_interval(
            diff - Z95 * spread, diff + Z95 * spread
        )
        assert cells[(*key, f"{rate}.p_value")] == p_value(
            float(2 * stats.norm.sf(abs(diff) / spread))
        )
    # The sample-ratio check: chi-square of users per arm against 0.5 / 0.5.
    seen = [control["users"], treatment["users"]]
    check = stats.chisquare(seen)
    assert f"p = {p_value(float(check.pvalue))}" in response.text
    assert "Sample ratio OK" in response.text

    # The chart: one point per arm per UTC day it served, no CDN, no script.
    days = postgres_daily_points(engine, ADMIN_EXPERIMENT)
    section = response.text.split(f'data-experiment="{ADMIN_EXPERIMENT}"', 1)[1]
    for arm, count in days.items():
        series = section.split(f'<g class="series" data-arm="{arm}">', 1)[1].split("</g>", 1)[0]
        assert series.count('<circle class="point"') == count
    assert "<script" not in response.text
    assert "http" not in response.text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_one_experiment_and_bad_input(
    client: TestClient, api_settings: Settings, admin_world: AdminWorld
) -> None:
    headers = _bearer(admin_token(api_settings))
    one = client.get(f"/admin/experiments/{ADMIN_EXPERIMENT}?metric=going_rate", headers=headers)
    assert one.status_code == 200
    assert "Going rate per day" in one.text
    assert "Outside every experiment" not in one.text

    unknown = client.get("/admin/experiments/no-such-thing", headers=headers)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM
    for path, status in [
        ("/admin/experiments/Bad%20Name", 422),
        ("/admin/experiments?days=0", 422),
        ("/admin/experiments?days=400", 422),
        ("/admin/experiments?metric=revenue", 422),
        ("/admin/users/0/feed", 422),
        ("/admin/users/abc/feed", 422),
        ("/admin/users/99999999999999999999/feed", 422),
        ("/admin/users/424242/feed", 404),
    ]:
        response = client.get(path, headers=headers)
        assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), path


def test_the_user_page_shows_the_feed_and_the_attributed_history(
    client: TestClient, api_settings: Settings, admin_world: AdminWorld, engine: sa.Engine
) -> None:
    user = admin_world.feed_user
    response = client.get(f"/admin/users/{user}/feed", headers=_bearer(admin_token(api_settings)))
    assert response.status_code == 200
    cells = page_cells(response.text)
    assert cells[("", "served", "", "experiment")] == ADMIN_EXPERIMENT
    assert cells[("", "served", "", "arm")] == admin_world.feed_arm
    with engine.connect() as conn:
        published = conn.execute(
            sa.text(
                "SELECT r.rank, r.event_id, r.score, r.reason, r.propensity "
                "FROM recommendations r JOIN recommendation_runs u ON u.id = r.run_id "
                "WHERE r.user_id = :user AND u.arm = :arm ORDER BY r.rank"
            ),
            {"user": user, "arm": admin_world.feed_arm},
        ).all()
        history = conn.execute(
            sa.text(
                "SELECT i.impression_id::text AS id, i.rank, "
                "(SELECT s.action FROM swipes s WHERE s.impression_id = i.impression_id "
                " ORDER BY s.created_at DESC, s.id DESC LIMIT 1) AS action, "
                "EXISTS (SELECT 1 FROM event_attendance a WHERE a.impression_id = "
                " i.impression_id AND a.status = 'going') AS going "
                "FROM impressions i WHERE i.user_id = :user"
            ),
            {"user": user},
        ).all()
    assert len(published) == 4
    for row in published:
        assert cells[("", "feed", row.event_id, "rank")] == str(row.rank)
        assert cells[("", "feed", row.event_id, "score")] == number(row.score, 4)
        assert cells[("", "feed", row.event_id, "reason")] == row.reason
        assert cells[("", "feed", row.event_id, "propensity")].startswith(number(row.propensity, 4))
    assert len(history) == 15
    for row in history:
        assert cells[("", "history", row.id, "action")] == (row.action or "–")
        assert cells[("", "history", row.id, "going")] == ("going" if row.going else "–")


def test_a_browser_signs_in_with_a_form_and_a_cookie(
    client: TestClient, api_settings: Settings, admin_world: AdminWorld
) -> None:
    form = client.get("/admin/login")
    assert form.status_code == 200 and "<form" in form.text
    refused = client.post(
        "/admin/login",
        data={"token": admin_token(api_settings, admin=False)},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers
    signed_in = client.post(
        "/admin/login",
        data={"token": admin_token(api_settings), "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/admin/experiments"  # never off-site
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
    page = client.get("/admin/experiments")  # the cookie alone now
    assert page.status_code == 200
    assert client.get("/v1/feed").status_code == 401  # the cookie is not an API credential
    client.get("/admin/logout")
    assert client.get("/admin/experiments").status_code == 401
