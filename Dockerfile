# syntax=docker/dockerfile:1
# One image for every Godo process: the API (default), the Dagster webserver and daemon,
# one-off jobs, migrations and the MLflow server. docker/entrypoint.sh picks the role from the
# command (`docker run IMAGE dagster-daemon`); docker-compose.yml runs the whole stack from it.
#
# Two stages so the runtime image holds no uv, no build backend and no download cache: the
# builder resolves nothing itself (`--frozen` installs exactly uv.lock) and the runtime stage
# copies only the finished virtualenv and the source. Both stages use the same base image, so
# the venv's interpreter symlinks (/usr/local/bin/python3.11) resolve in the runtime stage.

FROM python:3.11.14-slim-bookworm AS builder
# Bytecode is compiled at build time: every role imports dagster/mlflow/sklearn, and without
# .pyc files (the runtime user cannot write them) each process start would recompile them.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# Dependencies first, in their own layer: it is rebuilt only when the lockfile changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# Then the project itself (an editable install whose path is /app, where the runtime stage
# puts the same source), so `godo`, `alembic` and `dagster` find the code at /app.
COPY godo ./godo
COPY sources ./sources
COPY features ./features
COPY models ./models
COPY store ./store
COPY pipelines ./pipelines
COPY serving ./serving
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

FROM python:3.11.14-slim-bookworm AS runtime
# libgomp1: OpenMP for the lightgbm and implicit wheels, which do not vendor it. tini: PID 1
# that forwards signals and reaps the subprocesses Dagster spawns (code servers, run workers).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid so orchestrators can verify runAsNonRoot. The code stays root-owned and
# read-only to it; only its home (library caches such as matplotlib's) and the data
# directories are writable. Named volumes mounted on those directories start with their owner.
RUN groupadd --system --gid 10001 godo \
    && useradd --system --uid 10001 --gid godo --create-home --home-dir /home/godo \
        --shell /usr/sbin/nologin godo \
    && mkdir -p /data /mlartifacts /opt/dagster/storage \
    && chown -R godo:godo /data /mlartifacts /opt/dagster
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster \
    GODO_DATA_DIR=/data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY godo ./godo
COPY sources ./sources
COPY features ./features
COPY models ./models
COPY store ./store
COPY pipelines ./pipelines
COPY serving ./serving
COPY workspace.yaml alembic.ini ./
COPY --chmod=0755 docker/entrypoint.sh ./docker/entrypoint.sh
COPY dagster.yaml /opt/dagster/dagster.yaml
USER 10001:10001
# 8000 the API, 3000 the Dagster webserver, 5000 MLflow (whichever role runs).
EXPOSE 8000 3000 5000
# For the API role (the default). Other roles get their own check in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/docker/entrypoint.sh", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["api"]
