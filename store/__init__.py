"""The contract between pipelines and serving: Postgres schema, Redis keys, publish and read."""
