#!/usr/bin/env bash
# One image, several processes: the first argument picks the role (see `usage`). Each role
# `exec`s its command, so the server is the process tini forwards SIGTERM to and `docker stop`
# shuts it down cleanly instead of killing a shell.
#
# GODO_ENTRYPOINT_DRY_RUN=1 prints the command (one argument per line) instead of running it,
# so the dispatch can be checked without a container (tests/repo/test_containers.py).
#
# Only variable *names* appear on the command lines built here: URLs carry passwords, and
# argv is visible to every process (`ps`) and printed by a dry run, so each program reads its
# URL from the environment itself (Settings, dagster.yaml, alembic's env.py, mlflow's
# MLFLOW_BACKEND_STORE_URI).
#
# Servers listen on GODO_BIND_HOST (default 0.0.0.0: a container's own network, published by
# the orchestrator); with host networking (deploy/compose.host.yml) it is 127.0.0.1.
set -eu

# The directory above this script: /app in the image, the checkout when run from one.
APP_DIR="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
    cat <<EOF
usage: entrypoint.sh [ROLE] [ARGS...]

  api [uvicorn args]          the FastAPI app on :${GODO_API_PORT:-8000} (the default role)
  dagster-webserver [args]    the Dagster UI on :${DAGSTER_WEBSERVER_PORT:-3000}
  dagster-daemon [args]       schedules, sensors and the run queue
  job NAME [args]             execute one Dagster job in this container, then exit
  migrate [REVISION]          alembic upgrade to REVISION (default: head) on DATABASE_URL
  mlflow [args]               MLflow tracking server on :${MLFLOW_PORT:-5000}
  healthcheck [URL]           exit 0 when URL (default: the API's /health) answers 2xx
  -*                          arguments starting with '-' go to the api role
  anything else               run as given (e.g. bash, godo token 1)
EOF
}

# Fail before starting Python, with the variable's name, rather than deep in a traceback.
require() {
    local name
    for name in "$@"; do
        if [ -z "${!name:-}" ]; then
            echo "entrypoint: role '${role}' needs ${name} to be set" >&2
            exit 64
        fi
    done
}

run() {
    if [ "${GODO_ENTRYPOINT_DRY_RUN:-0}" = "1" ]; then
        printf '%s\n' "$@"
        exit 0
    fi
    exec "$@"
}

role="${1:-api}"
case "${role}" in
    help | --help | -h)
        usage
        exit 0
        ;;
    -*) role="api" ;; # `docker run IMAGE --workers 4` means the API with extra flags
    *) [ "$#" -eq 0 ] || shift ;;
esac

case "${role}" in
    api)
        require DATABASE_URL REDIS_URL
        # Proxy headers only from FORWARDED_ALLOW_IPS (default: none but loopback), so a client
        # cannot spoof its address past the rate limiter by sending X-Forwarded-For itself.
        run uvicorn serving.app:create_app --factory \
            --host "${GODO_BIND_HOST:-0.0.0.0}" --port "${GODO_API_PORT:-8000}" \
            --proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
            "$@"
        ;;
    dagster-webserver)
        require DAGSTER_HOME DAGSTER_POSTGRES_URL
        run dagster-webserver -w "${APP_DIR}/workspace.yaml" \
            -h "${GODO_BIND_HOST:-0.0.0.0}" -p "${DAGSTER_WEBSERVER_PORT:-3000}" "$@"
        ;;
    dagster-daemon)
        require DAGSTER_HOME DAGSTER_POSTGRES_URL
        run dagster-daemon run -w "${APP_DIR}/workspace.yaml" "$@"
        ;;
    job)
        if [ "$#" -eq 0 ]; then
            echo "entrypoint: usage: job NAME [dagster job execute args]" >&2
            exit 64
        fi
        require DAGSTER_HOME DAGSTER_POSTGRES_URL
        job_name="$1"
        shift
        # In-process in this container (not queued for the daemon), recorded in the same
        # instance, so a one-off run shows up in the UI next to the scheduled ones.
        run dagster job execute -m pipelines.definitions -d "${APP_DIR}" -j "${job_name}" "$@"
        ;;
    migrate)
        if [ "$#" -gt 1 ]; then
            echo "entrypoint: usage: migrate [REVISION]" >&2
            exit 64
        fi
        require DATABASE_URL
        # alembic.ini leaves sqlalchemy.url unset, so store/migrations/env.py reads DATABASE_URL.
        run alembic -c "${APP_DIR}/alembic.ini" upgrade "${1:-head}"
        ;;
    mlflow)
        require MLFLOW_BACKEND_STORE_URI
        # Artifacts go through this server (--serve-artifacts), so clients need no access to
        # the artifact volume, only the tracking URI.
        run mlflow server --host "${GODO_BIND_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" \
            --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
            "$@"
        ;;
    healthcheck)
        if [ "$#" -gt 1 ]; then
            echo "entrypoint: usage: healthcheck [URL]" >&2
            exit 64
        fi
        # The slim base has no curl. urlopen raises on 4xx/5xx and on connection errors, so
        # any of those exits 1 with a one-line reason for the health log; a 503 from /health
        # (Postgres down) therefore marks the container unhealthy, `degraded` (200) does not.
        run python -c 'import sys, urllib.request as r; sys.excepthook = lambda t, e, tb: print("unhealthy:", e, file=sys.stderr); sys.exit(0 if r.urlopen(sys.argv[1], timeout=float(sys.argv[2])).status < 300 else 1)' \
            "${1:-http://127.0.0.1:${GODO_API_PORT:-8000}/health}" "${GODO_HEALTHCHECK_TIMEOUT:-4}"
        ;;
    *)
        run "${role}" "$@"
        ;;
esac
