"""The admin pages: experiments with their online metrics, and one user's feed (HTML).

`GET /admin/experiments[/{name}]` and `GET /admin/users/{user_id}/feed`, server-rendered
with Jinja2 (`serving.html`), for people who run experiments. Behind a token whose admin
role claim (`GODO_ADMIN_ROLE_CLAIM`, `GODO_ADMIN_ROLE`) says so: no token is a 401, a token
without the role a 403, both problem+json like the rest of the API.

How a browser sends the token: `Authorization: Bearer` works as for the API (scripts,
tests), but a browser cannot add a header to a link it follows, so `POST /admin/login`
takes the token from a form once and keeps it in a cookie: HttpOnly (page scripts cannot
read it; the pages have none anyway), `SameSite=Strict` (no other site can make the browser
send it: the pages only read, and a login is a same-site form post), `Path=/admin` (never
sent to the API), `Secure` outside development, and expiring with the token. A `?token=`
query parameter was the other choice and was refused: it lands in browser history, in proxy
and server access logs and in every link copied from the page.

The pages are left out of the OpenAPI document: they are not part of the app's API.
"""

from __future__ import annotations

import time
from typing import Annotated, Final, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from serving.charts import daily_rates_chart
from serving.deps import (
    ADMIN_COOKIE,
    AdminClaims,
    EngineDep,
    KeysDep,
    LiveCacheDep,
    RedisDep,
    SettingsDep,
    verify_admin_token,
)
from serving.html import render
from serving.problem_types import TOKEN_MISSING
from serving.problems import ProblemError
from store.admin import (
    MAX_WINDOW_DAYS,
    SRM_ALPHA,
    UnknownExperiment,
    UnknownUser,
    experiments_report,
    user_feed_report,
)

router = APIRouter(prefix="/admin", include_in_schema=False)

ChartMetric = Literal["like_rate", "superlike_rate", "going_rate"]
CHART_METRICS: Final[dict[str, str]] = {
    "like_rate": "Like rate",
    "superlike_rate": "Superlike rate",
    "going_rate": "Going rate",
}
TESTED_METRICS: Final[dict[str, str]] = {
    **CHART_METRICS,
    "swipes_per_session": "Swipes per session",
}
HISTORY_LIMIT: Final = 100
HOME: Final = "/admin/experiments"
_MAX_BODY: Final = 16_384  # a login form holds one token

DaysQuery = Annotated[
    int, Query(ge=1, le=MAX_WINDOW_DAYS, description="Days of impressions, ending now.")
]
MetricQuery = Annotated[ChartMetric, Query(description="The rate the chart shows per day.")]
ExperimentName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/experiments")
def experiments_page(
    _: AdminClaims, engine: EngineDep, days: DaysQuery = 7, metric: MetricQuery = "like_rate"
) -> HTMLResponse:
    """Every experiment's arms with metrics, tests against control, sample ratio, chart."""
    return _experiments(engine, days, metric, None)


@router.get("/experiments/{name}")
def experiment_page(
    _: AdminClaims,
    engine: EngineDep,
    name: ExperimentName,
    days: DaysQuery = 7,
    metric: MetricQuery = "like_rate",
) -> HTMLResponse:
    """One experiment's section alone; 404 when no experiment has that name."""
    return _experiments(engine, days, metric, name)


def _experiments(
    engine: EngineDep, days: int, metric: ChartMetric, name: str | None
) -> HTMLResponse:
    try:
        report = experiments_report(engine, window_days=days, experiment=name)
    except UnknownExperiment as error:
        raise HTTPException(status_code=404, detail=str(error)) from error
    charts = {
        e.name: daily_rates_chart(e.daily, [arm.name for arm in e.arms], report.days, metric)
        for e in report.experiments
    }
    return render(
        "admin/experiments.html",
        title=f"Experiment {name}" if name else "Experiments",
        report=report,
        charts=charts,
        metric=metric,
        chart_metrics=CHART_METRICS,
        tested_metrics=TESTED_METRICS,
        window_days=days,
        max_days=MAX_WINDOW_DAYS,
        srm_alpha=SRM_ALPHA,
    )


@router.get("/users")
def find_user(_: AdminClaims, user_id: Annotated[int, Query(ge=1, le=2**63 - 1)]) -> Response:
    """The header's lookup form: on to that user's feed page."""
    return RedirectResponse(f"/admin/users/{user_id}/feed", status_code=303)


@router.get("/users/{user_id}/feed")
def user_feed_page(
    _: AdminClaims,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
    cache: LiveCacheDep,
    user_id: UserId,
) -> HTMLResponse:
    """One user's feed now (rank, score, reason, propensity, arm) and impression history."""
    try:
        report = user_feed_report(
            engine=engine,
            redis_client=redis_client,
            keys=keys,
            user_id=user_id,
            cache=cache,
            history_limit=HISTORY_LIMIT,
        )
    except UnknownUser as error:
        raise HTTPException(status_code=404, detail=str(error)) from error
    return render(
        "admin/user_feed.html",
        title=f"User {user_id}",
        report=report,
        history_limit=HISTORY_LIMIT,
    )


@router.get("/login")
def login_page(settings: SettingsDep, next: str = HOME) -> HTMLResponse:
    """The sign-in form (the only admin page that needs no token)."""
    return render(
        "admin/login.html",
        title="Sign in",
        next=_local(next),
        claim=settings.admin_role_claim,
        role=settings.admin_role,
    )


@router.post("/login")
async def login(request: Request, settings: SettingsDep) -> RedirectResponse:
    """Check the posted token (401/403 like every page), keep it in the admin cookie."""
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise HTTPException(status_code=413, detail="The login form is too large.")
    form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=4)
    token = (form.get("token") or [""])[0].strip()
    if not token:
        raise ProblemError(
            TOKEN_MISSING,
            "Missing token: paste an access token with the admin role.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    claims = await verify_admin_token(settings, token)
    response = RedirectResponse(_local((form.get("next") or [HOME])[0]), status_code=303)
    response.set_cookie(
        ADMIN_COOKIE,
        token,
        max_age=max(int(claims["exp"] - time.time()), 0),
        path="/admin",
        secure=settings.environment != "development",
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/logout")
def logout() -> RedirectResponse:
    """Forget the admin cookie."""
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(ADMIN_COOKIE, path="/admin", httponly=True, samesite="strict")
    return response


def _local(target: str) -> str:
    """`target` when it is a path of these pages, else the home page: a login link can never
    send the browser to another site (`//evil.example` and `/admin\\..` included)."""
    if target.startswith("/admin/") and "//" not in target and "\\" not in target:
        return target
    return HOME
