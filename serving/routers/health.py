"""`GET /health`: can this instance serve feeds, and are the feeds it serves fresh?

Three answers, so a load balancer and a human can act differently on them:

- `down` (503): Postgres is unreachable. Without it the feed has no durable source and no
  fallback, so the instance should be taken out of rotation.
- `degraded` (200): Redis is unreachable or its circuit breaker is open (feeds still come
  from Postgres, only slower), or Redis does not serve the run Postgres published (restarted
  empty, or a publish died between the two stores: the keeper restores it within
  `feed_keeper_seconds`), or there is no published run, or it is older than
  `health_max_run_age_seconds` (the nightly pipeline has stalled). Taking the instance out
  would not help, but someone should look.
- `ok` (200): otherwise.

The body has the same shape for every status (not a problem document) so probes and
dashboards can read which part failed; `reasons` says why in words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

from serving.deps import EngineDep, KeysDep, RedisDep, SettingsDep
from store.health import PostgresHealth, RedisHealth, StoreProbe, check_postgres, check_redis

HealthStatus = Literal["ok", "degraded", "down"]

router = APIRouter(tags=["health"])

# Realistic bodies for the OpenAPI document (documentation only).
_RUN_EXAMPLE: JsonDict = {
    "run_id": "3f9c1b52-7a4e-4d0b-9a61-2c8e5f0d7b13",
    "published_at": "2026-03-02T06:12:44.081000Z",
    "age_seconds": 3721.204,
}
_OK_EXAMPLE: JsonDict = {
    "status": "ok",
    "postgres": {"ok": True, "latency_ms": 1.84},
    "redis": {"ok": True, "latency_ms": 0.62},
    "published_run": _RUN_EXAMPLE,
    "reasons": [],
}
_DEGRADED_EXAMPLE: JsonDict = {
    "status": "degraded",
    "postgres": {"ok": True, "latency_ms": 2.11},
    "redis": {"ok": True, "latency_ms": 0.58},
    "published_run": _RUN_EXAMPLE,
    "reasons": [
        "redis holds no current run: feeds come from postgres until run "
        "3f9c1b52-7a4e-4d0b-9a61-2c8e5f0d7b13 is restored from it"
    ],
}
_DOWN_EXAMPLE: JsonDict = {
    "status": "down",
    "postgres": {"ok": False, "latency_ms": 1003.52},
    "redis": {"ok": True, "latency_ms": 0.71},
    "published_run": None,
    "reasons": ["postgres is unreachable"],
}


class StoreHealthOut(BaseModel):
    """One store's probe."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ok": True, "latency_ms": 1.84}]})

    ok: bool
    latency_ms: float = Field(description="Duration of the probe, also when it failed.")


class PublishedRunOut(BaseModel):
    """The run being served."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RUN_EXAMPLE]})

    run_id: str
    published_at: datetime
    age_seconds: float


class HealthOut(BaseModel):
    """Health of this instance, the stores it reads and the run it serves."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [_OK_EXAMPLE, _DEGRADED_EXAMPLE, _DOWN_EXAMPLE]}
    )

    status: HealthStatus = Field(
        description="`down` (503): Postgres unreachable; `degraded`: Redis unreachable, or no "
        "published run, or the run is older than the configured maximum, or Redis does not "
        "serve the run Postgres published; else `ok`."
    )
    postgres: StoreHealthOut
    redis: StoreHealthOut
    published_run: PublishedRunOut | None = Field(
        description="Newest published run; null when there is none or Postgres is down."
    )
    reasons: list[str] = Field(
        default_factory=list, description="Why the status is not `ok`, one line per cause."
    )


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Store connectivity and feed freshness",
    responses={
        200: {
            "description": "`ok`, or `degraded`: feeds are still served.",
            "content": {
                "application/json": {
                    "examples": {
                        "ok": {"summary": "Everything reachable, run fresh", "value": _OK_EXAMPLE},
                        "degraded": {
                            "summary": "Redis lost the run (feeds come from Postgres)",
                            "value": _DEGRADED_EXAMPLE,
                        },
                    }
                }
            },
        },
        503: {
            "model": HealthOut,
            "description": "Postgres is unreachable (`down`): same body, not a problem document.",
            "content": {
                "application/json": {
                    "examples": {
                        "down": {"summary": "Postgres unreachable", "value": _DOWN_EXAMPLE}
                    }
                }
            },
        },
    },
)
def get_health(
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
    settings: SettingsDep,
    response: Response,
) -> HealthOut:
    """`ok`, `degraded` (still 200: feeds are served) or `down` (503); see the module docs."""
    # A plain `def`: both probes block on the network, so FastAPI runs this in its thread pool.
    postgres = check_postgres(engine)
    redis_health = check_redis(redis_client, keys)
    run = postgres.published_run
    run_out = (
        None
        if run is None
        else PublishedRunOut(
            run_id=run.run_id,
            published_at=run.published_at,
            age_seconds=round(run.age_seconds(), 3),
        )
    )
    reasons = _reasons(postgres, redis_health, run_out, settings.health_max_run_age_seconds)
    status: HealthStatus
    if not postgres.probe.ok:
        status = "down"
        response.status_code = 503
    elif reasons:
        status = "degraded"
    else:
        status = "ok"
    return HealthOut(
        status=status,
        postgres=_store_out(postgres.probe),
        redis=_store_out(redis_health.probe),
        published_run=run_out,
        reasons=reasons,
    )


def _reasons(
    postgres: PostgresHealth,
    redis_health: RedisHealth,
    run: PublishedRunOut | None,
    max_age_seconds: int,
) -> list[str]:
    reasons = []
    if not postgres.probe.ok:
        reasons.append("postgres is unreachable")
    if redis_health.circuit_open:
        reasons.append(
            "redis failed repeatedly: its circuit breaker is open, feeds come from postgres"
        )
    elif not redis_health.probe.ok:
        reasons.append("redis is unreachable: feeds come from postgres")
    elif run is not None:
        if redis_health.serving is None:
            reasons.append(
                "redis holds no current run: feeds come from postgres until run "
                f"{run.run_id} is restored from it"
            )
        elif redis_health.serving != run.run_id:
            reasons.append(
                f"redis serves run {redis_health.serving} while postgres published "
                f"{run.run_id}: the keeper re-points it"
            )
        elif not redis_health.complete:
            reasons.append(f"redis lost the keys of run {run.run_id}: restoring it from postgres")
    if postgres.probe.ok and run is None:
        reasons.append("no run is published")
    elif run is not None and run.age_seconds > max_age_seconds:
        reasons.append(
            f"the published run is {run.age_seconds:.0f} s old (more than {max_age_seconds} s): "
            "is the pipeline stalled?"
        )
    return reasons


def _store_out(probe: StoreProbe) -> StoreHealthOut:
    return StoreHealthOut(ok=probe.ok, latency_ms=probe.latency_ms)
