-- Runs once, when the postgres container initialises an empty data volume (the image runs
-- /docker-entrypoint-initdb.d/*.sql as POSTGRES_USER against POSTGRES_DB, the app database).
-- One server hosts the three databases so the stack needs one Postgres; each keeps its own
-- schema history (Alembic for the app, dagster-postgres and MLflow migrate their own).
CREATE DATABASE dagster;
CREATE DATABASE mlflow;
