"""Dagster: the only package that wires sources, features, models and store together."""
