# syntax=docker/dockerfile:1
# Two images from one file. The default target (`runtime`, the last stage) serves every Godo
# process: the Dagster webserver and daemon, one-off jobs, migrations, the MLflow server and
# the API. `--target api` builds the API's own image: the same source and entrypoint with only
# `[project].dependencies` (no Dagster, MLflow, LightGBM, DuckDB...), about a third the size.
# docker/entrypoint.sh picks the role from the command (`docker run IMAGE dagster-daemon`);
# docker-compose.yml runs the whole stack from the two.
#
# Builders and runtimes are separate stages, so the images hold no uv, no build backend and no
# download cache: the builders resolve nothing themselves (`--frozen` installs exactly uv.lock)
# and each runtime copies only its finished virtualenv and the source. Every stage starts from
# BASE_IMAGE, so the venv's interpreter symlinks (/usr/local/bin/python3.11) resolve in the
# runtime stages.

# The Python 3.11 image every stage starts from: upstream's slim image, pinned. Where no
# registry is reachable, deploy/images.py builds a stand-in from Debian's packages and passes
# it here (`--build-arg BASE_IMAGE=localhost/python-local:3.11`).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# The application source, once, for the builders (an editable install whose path is /app) and
# the runtimes (the same path).
FROM scratch AS source
COPY pyproject.toml uv.lock README.md /app/
COPY core /app/core
COPY godo /app/godo
COPY sources /app/sources
COPY features /app/features
COPY models /app/models
COPY recommender /app/recommender
COPY store /app/store
COPY textfile_metrics /app/textfile_metrics
COPY pipelines /app/pipelines
COPY serving /app/serving
COPY workspace.yaml alembic.ini dagster.yaml /app/
COPY --chmod=0755 docker/entrypoint.sh /app/docker/entrypoint.sh

FROM ${BASE_IMAGE} AS uv
# Bytecode is compiled at build time: every role imports large libraries, and without .pyc
# files (the runtime user cannot write them) each process start would recompile them.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
# A CA bundle for a TLS-intercepting proxy in front of the package index, when the builder
# mounts one (deploy/images.py does where the machine has one). Unset, nothing changes; as
# build arguments they never reach the image's environment.
ARG SSL_CERT_FILE
ARG PIP_CERT
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app

# The API's venv: `[project].dependencies` only (the pipelines and embedded groups left out).
FROM uv AS api-builder
ARG SSL_CERT_FILE
ARG PIP_CERT
# Dependencies first, in their own layer: rebuilt only when pyproject.toml or the lockfile
# change (uv needs no README or source to install them).
COPY --from=source /app/pyproject.toml /app/uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-install-project
COPY --from=source /app ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups

# Everything but the dev tools: the pipelines group and the embedded servers (pgserver's
# pg_dump serves `godo backup`).
FROM uv AS builder
ARG SSL_CERT_FILE
ARG PIP_CERT
COPY --from=source /app/pyproject.toml /app/uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --group pipelines --group embedded --no-install-project
COPY --from=source /app ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --group pipelines --group embedded

# What both runtimes share: tini and the app user.
FROM ${BASE_IMAGE} AS runtime-base
# tini: PID 1 that forwards signals and reaps the subprocesses Dagster spawns (code servers,
# run workers) and uvicorn's workers.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
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
    GODO_DATA_DIR=/data
WORKDIR /app

FROM runtime-base AS api
# Metadata first, the large COPYs last: with podman's vfs storage (deploy/podman.py) every
# instruction commits a full copy of the image so far, so after the venv each would cost a
# copy of it. COPY ignores USER: the files stay root's, read-only to the app user.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/docker/entrypoint.sh", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["api"]
COPY --from=api-builder /opt/venv /opt/venv
COPY --from=source /app /app

FROM runtime-base AS runtime
# libgomp1: OpenMP for the lightgbm and implicit wheels, which do not vendor it.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
ENV DAGSTER_HOME=/opt/dagster
COPY dagster.yaml /opt/dagster/dagster.yaml
# As in `api`: metadata before the large COPYs.
USER 10001:10001
# 8000 the API, 3000 the Dagster webserver, 5000 MLflow (whichever role runs).
EXPOSE 8000 3000 5000
# For the API role (the default). Other roles get their own check in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/docker/entrypoint.sh", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["api"]
COPY --from=builder /opt/venv /opt/venv
COPY --from=source /app /app
