# The API and the Dagster code location in one image; DATABASE_URL and REDIS_URL point it at
# managed services (the embedded servers are for laptops, not containers).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH GODO_DATA_DIR=/data
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev && useradd --create-home godo && mkdir -p /data \
    && chown godo /data
USER godo
EXPOSE 8000 3000
# API by default; `dagster-webserver -w workspace.yaml -h 0.0.0.0` for the pipelines UI.
CMD ["uvicorn", "serving.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
