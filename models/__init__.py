"""Candidate generators, ranking and evaluation. Imports `features`, never Dagster."""
