"""Writing a Prometheus registry for node-exporter's textfile collector, atomically.

Dagster runs cannot be scraped, so the pipeline's counters and gauges land in `.prom` files
the collector reads; a reader must never see half a file, hence a temporary file in the same
directory (not ending in `.prom`, so the collector skips it) renamed over the old one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest


def write_textfile(path: Path, registry: CollectorRegistry) -> Path:
    """Replace `path` with `registry` in the text format, readable by the collector."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = generate_latest(registry)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
