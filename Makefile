# Godo developer targets. `make` or `make help` lists them. Every target goes through dev.py,
# which installs the pinned uv into .godo/tools when it is not on PATH and syncs the
# environment from uv.lock first: a machine with only Python needs nothing else.
.DEFAULT_GOAL := help
PY ?= python3

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

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
	$(PY) dev.py fmt

serve: ## Serve the API against the embedded (or configured) servers
	$(PY) dev.py serve

dagster: ## Open the Dagster UI and daemon (dagster dev) on the production instance config
	$(PY) dev.py dagster

mlflow: ## Open the MLflow UI on the store the pipeline writes (default .godo/mlflow.db)
	$(PY) dev.py mlflow

notebooks: ## Open JupyterLab in notebooks/ (the .py notebooks open as notebooks)
	$(PY) dev.py notebooks

services-stop: ## Stop the embedded PostgreSQL and Redis
	$(PY) dev.py services-stop

bench: ## Run the benchmarks (figures, not pass/fail)
	$(PY) dev.py bench

chaos: ## Faults (Redis killed/paused, Postgres restarted, publishes killed) under load; fails on a broken invariant
	$(PY) dev.py chaos

clean: ## Delete everything generated under .godo/ (stops the embedded servers first)
	$(PY) dev.py clean

.PHONY: help demo demo-once test browsers check image compose-smoke fmt serve dagster mlflow notebooks services-stop bench chaos clean
