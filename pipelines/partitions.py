"""Partitions: every metro's ingest runs on its own, so metros scale out independently."""

import dagster as dg

from core.settings import get_settings

metro_partitions = dg.StaticPartitionsDefinition(get_settings().metros)
