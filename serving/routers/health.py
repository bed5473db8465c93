"""`GET /health`: can this instance reach Postgres and Redis?"""

from __future__ import annotations

from fastapi import APIRouter, Response

from serving.deps import EngineDep, RedisDep
from serving.schemas import HealthOut, Status
from store.health import postgres_ok, redis_ok

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Store connectivity",
    responses={503: {"model": HealthOut, "description": "Postgres or Redis is unreachable"}},
)
def health(engine: EngineDep, redis_client: RedisDep, response: Response) -> HealthOut:
    """200 when both stores answer, else 503 with the failing one marked `error`.

    The body is the same shape either way (not a problem document) so probes and dashboards
    can read which store failed.
    """
    # A plain `def`: both probes block on the network, so FastAPI runs this in its thread pool.
    postgres: Status = "ok" if postgres_ok(engine) else "error"
    redis: Status = "ok" if redis_ok(redis_client) else "error"
    healthy = postgres == "ok" and redis == "ok"
    if not healthy:
        response.status_code = 503
    return HealthOut(status="ok" if healthy else "error", postgres=postgres, redis=redis)
