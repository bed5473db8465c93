"""Prometheus metrics and Sentry for the API.

Metrics live in a `CollectorRegistry` of each app's own (on `app.state.metrics`), not in
prometheus-client's global default registry: tests build many apps in one process, and a
global registry would either refuse the second app's metrics (duplicate names) or mix the
counts of every app. `GET /metrics` exposes that registry in the Prometheus text format.

Request latency is measured by a pure ASGI middleware rather than `BaseHTTPMiddleware`, which
buffers through an extra task per request and changes how exceptions and background tasks
behave. The `route` label is the matched route template (`/v1/feed`), never the raw path, so
ids in URLs and scanners probing random paths cannot blow up the label cardinality.

The `record_*` helpers do nothing on an app without metrics, so routers can call them
whether or not `install_observability` ran (a test app built without it keeps working).
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass

import sentry_sdk
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.impression_ids import REJECT_REASONS
from core.settings import Settings, get_settings
from serving.problems import problem

log = logging.getLogger(__name__)

# Feed reads take a few ms from Redis and tens of ms from Postgres; seconds mean trouble.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UNMATCHED_ROUTE = "unmatched"
FEED_SOURCES = ("redis", "postgres", "cold_start")
CACHE_RESULTS = ("hit", "miss")
RATE_LIMIT_SCOPES = ("user", "ip")
IMPRESSION_OUTCOMES = ("recorded", "lost")
ATTRIBUTION_ACTIONS = ("swipe", "rsvp")
ATTRIBUTION_OUTCOMES = ("attributed", *REJECT_REASONS)
# Anything else a client sends as a method is folded into "other", for the same cardinality
# reason as route templates.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Metrics:
    """One app's registry and the metrics registered in it."""

    registry: CollectorRegistry
    request_duration: Histogram
    feed_source: Counter
    cache_requests: Counter
    rate_limited: Counter
    emails: Counter
    impressions: Counter
    attributions: Counter


def create_metrics() -> Metrics:
    """A fresh registry with every metric of the API; label values known up front are
    pre-created at 0, so `rate()` and alerts see a series before its first event."""
    registry = CollectorRegistry(auto_describe=True)
    metrics = Metrics(
        registry=registry,
        request_duration=Histogram(
            "godo_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status class.",
            ["method", "route", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        feed_source=Counter(
            "godo_feed_source_total",
            "Feeds served, by where they came from (cold_start: the run's fallback list).",
            ["source"],
            registry=registry,
        ),
        cache_requests=Counter(
            "godo_cache_requests_total",
            "Lookups in an application cache, by cache and hit or miss.",
            ["cache", "result"],
            registry=registry,
        ),
        rate_limited=Counter(
            "godo_rate_limited_total",
            "Requests refused by the rate limiter, by the key that ran out (user or ip).",
            ["scope"],
            registry=registry,
        ),
        # Same name and labels as the pipelines' textfile counter (pipelines.notification_
        # metrics), so one query adds the API's invitations to the scheduled sends.
        emails=Counter(
            "godo_notifications_total",
            "Notifications sent by the API, by channel, kind and outcome (sent or failed).",
            ["channel", "kind", "outcome"],
            registry=registry,
        ),
        impressions=Counter(
            "godo_impressions_total",
            "Feed items served, by whether their impression was recorded (in the Redis "
            "stream) or lost (Redis unreachable: the items went out without ids).",
            ["outcome"],
            registry=registry,
        ),
        attributions=Counter(
            "godo_impression_attributions_total",
            "Impression ids sent with swipes and RSVPs: attributed, or ignored and why "
            "(malformed, forged, foreign_user, other_event, expired).",
            ["action", "outcome"],
            registry=registry,
        ),
    )
    for source in FEED_SOURCES:
        metrics.feed_source.labels(source=source)
    for scope in RATE_LIMIT_SCOPES:
        metrics.rate_limited.labels(scope=scope)
    for outcome in IMPRESSION_OUTCOMES:
        metrics.impressions.labels(outcome=outcome)
    for action in ATTRIBUTION_ACTIONS:
        for outcome in ATTRIBUTION_OUTCOMES:
            metrics.attributions.labels(action=action, outcome=outcome)
    return metrics


def install_observability(app: FastAPI) -> None:
    """Give `app` its metrics, the latency middleware, `GET /metrics`, and Sentry if configured.

    Call before the app starts serving (Starlette refuses middleware after that). A second
    call is a no-op, so code that installs it on an app `create_app` already equipped (tests
    written before the factory did it) does not register every metric and route twice.
    """
    if isinstance(getattr(app.state, "metrics", None), Metrics):
        return
    metrics = create_metrics()
    app.state.metrics = metrics
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    settings: Settings = getattr(app.state, "settings", None) or get_settings()
    token = settings.metrics_token
    public = token is None and settings.environment == "development"

    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text exposition of this app's registry, for the scraper only.

        With `metrics_token` set the scrape must send it as a bearer token (compared in
        constant time); without one, the counts are public in development and not served at
        all elsewhere, so production never exposes them by default.
        """
        if not public:
            if token is None:
                return problem(request, 404, f"No route matches {request.url.path}.")
            given = request.headers.get("authorization", "")
            expected = f"Bearer {token.get_secret_value()}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return problem(
                    request,
                    401,
                    "Send the metrics token as `Authorization: Bearer <token>`.",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False)
    init_sentry(settings)


def init_sentry(settings: Settings) -> bool:
    """Start Sentry when `sentry_dsn` is set; returns whether it did.

    Traces are off (`traces_sample_rate=0`): Prometheus covers latency, Sentry is for errors.
    `send_default_pii=False` keeps bearer tokens, cookies and client IPs out of events. The
    FastAPI/Starlette integrations switch on by themselves when those packages are installed.
    """
    if settings.sentry_dsn is None:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment,
        traces_sample_rate=0.0,
        send_default_pii=False,
    )
    log.info("sentry enabled (environment=%s)", settings.environment)
    return True


class RequestMetricsMiddleware:
    """Times every HTTP request into `godo_http_request_duration_seconds`.

    The route template is read from the scope after the app ran: FastAPI's router puts the
    matched route there (in the same scope dict this middleware passed down). No route means
    nothing matched (a 404), labelled `unmatched`. A request that raised past the app's
    handlers is counted as 5xx, which is what the server error middleware outside answers.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status_code = 500

        async def send_and_capture_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_capture_status)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.request_duration.labels(
                method=method,
                route=_route_template(scope),
                status_class=f"{status_code // 100}xx",
            ).observe(elapsed)


def _route_template(scope: Scope) -> str:
    """The matched route's full template, e.g. `/v1/feed`, or `unmatched`.

    Since FastAPI 0.137 an included router's routes are no longer copied with their prefix:
    `scope["route"]` is the original route (`/feed`), and the prefixed template is on the
    effective route context in `scope["fastapi"]`. Sentry's FastAPI integration reads it the
    same way. Older FastAPI has no such context and `scope["route"].path` is already full.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    fastapi_scope = scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    for candidate in (getattr(context, "path", None), getattr(route, "path", None)):
        if isinstance(candidate, str) and candidate:
            return candidate
    return UNMATCHED_ROUTE


def record_feed_source(request: HTTPConnection | Starlette, source: str) -> None:
    """Count one feed served from `source`: "redis", "postgres" or "cold_start" (the run's
    fallback list, or no run at all). Raises on any other value: that is a caller's bug."""
    if source not in FEED_SOURCES:
        raise ValueError(f"feed source must be one of {FEED_SOURCES}, not {source!r}")
    metrics = _metrics(request)
    if metrics is not None:
        metrics.feed_source.labels(source=source).inc()


def record_cache(app_or_request: HTTPConnection | Starlette, cache: str, hit: bool) -> None:
    """Count one lookup in the cache named `cache` (e.g. "calendar") as a hit or a miss.

    Takes the app too, so code outside a request (a warm-up at startup) can count lookups.
    `cache` becomes a label value: pass a fixed name, never anything derived from a request.
    """
    metrics = _metrics(app_or_request)
    if metrics is not None:
        metrics.cache_requests.labels(cache=cache, result="hit" if hit else "miss").inc()


def record_rate_limited(request: HTTPConnection | Starlette, scope: str) -> None:
    """Count one request refused by the rate limiter for running out its `scope` budget."""
    if scope not in RATE_LIMIT_SCOPES:
        raise ValueError(f"rate limit scope must be one of {RATE_LIMIT_SCOPES}, not {scope!r}")
    metrics = _metrics(request)
    if metrics is not None:
        metrics.rate_limited.labels(scope=scope).inc()


def record_notification(request: HTTPConnection, *, channel: str, kind: str, outcome: str) -> None:
    """Count one notification the API sent (or failed to send) itself, e.g. an invitation."""
    metrics = _metrics(request)
    if metrics is not None:
        metrics.emails.labels(channel=channel, kind=kind, outcome=outcome).inc()


def _metrics(app_or_request: HTTPConnection | Starlette) -> Metrics | None:
    """The app's metrics, or None when `install_observability` was not called on it."""
    app = app_or_request.app if isinstance(app_or_request, HTTPConnection) else app_or_request
    metrics = getattr(app.state, "metrics", None)
    return metrics if isinstance(metrics, Metrics) else None


def record_impressions(request: HTTPConnection, *, recorded: int, lost: int) -> None:
    """Count a page's impressions: recorded in the stream, or lost with Redis down."""
    metrics = _metrics(request)
    if metrics is None:
        return
    if recorded:
        metrics.impressions.labels(outcome="recorded").inc(recorded)
    if lost:
        metrics.impressions.labels(outcome="lost").inc(lost)


def record_attribution(request: HTTPConnection, *, action: str, outcome: str) -> None:
    """Count one impression id sent with a swipe or RSVP: "attributed", or why it was ignored."""
    if action not in ATTRIBUTION_ACTIONS or outcome not in ATTRIBUTION_OUTCOMES:
        raise ValueError(f"unknown attribution label {action!r}/{outcome!r}")
    metrics = _metrics(request)
    if metrics is not None:
        metrics.attributions.labels(action=action, outcome=outcome).inc()
