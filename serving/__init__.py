"""Godo's HTTP API: FastAPI app factory, dependencies, routers and error responses.

`serving` imports `store` and `godo` only; it meets the pipelines in `store`.
"""
