"""The recommender's I/O-free glue: the nightly two-stage feed, fitting its learned parts as of
a cutoff, the holdout evaluation and champion gate, and the online report's names and verdicts.

DataFrames in, DataFrames out; no Dagster, no database. The Dagster assets in `pipelines/`
wrap these, and `models/` holds the generic algorithms they assemble.
"""
