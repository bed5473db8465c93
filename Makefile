# Godo developer targets. `make` or `make help` lists them.
.DEFAULT_GOAL := help
PY ?= python3

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

demo: ## Install, run every asset once, print the report, serve the API
	$(PY) dev.py demo

demo-once: ## Like demo, but exit after the report
	$(PY) dev.py demo --no-serve

test: ## Run the whole test suite (what CI runs)
	$(PY) dev.py test

browsers: ## Install the Chromium the browser tests drive (Debian's package, apt-get)
	$(PY) dev.py browsers

check: ## ruff (lint + format check) and mypy
	$(PY) dev.py check

image: ## Build the pipelines' and the API's images with podman (Debian stand-ins for the bases)
	$(PY) dev.py image

compose-smoke: ## docker-compose.yml end to end with podman: up, healthy, pipeline, a feed, down
	$(PY) dev.py compose-smoke

fmt: ## Format and autofix with ruff
	uv run ruff format . && uv run ruff check --fix .

serve: ## Serve the API against the embedded (or configured) servers
	uv run godo serve

dagster: ## Open the Dagster UI and daemon (dagster dev) on the production instance config
	uv run godo dagster

mlflow: ## Open the MLflow UI on the local tracking store (.godo/mlflow.db)
	uv run mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.godo/mlflow.db --default-artifact-root $(CURDIR)/.godo/mlartifacts --port 5000

services-stop: ## Stop the embedded PostgreSQL and Redis
	uv run godo services stop

bench: ## Run the benchmarks (figures, not pass/fail)
	uv run python -m bench.publish
	uv run python -m bench.quality

chaos: ## Faults (Redis killed/paused, Postgres restarted, publishes killed) under load; fails on a broken invariant
	uv run python -m bench.chaos

clean: ## Delete everything generated under .godo/ (stops the embedded servers first)
	-uv run godo services stop
	rm -rf .godo

.PHONY: help demo demo-once test browsers check image compose-smoke fmt serve dagster mlflow services-stop bench chaos clean
