"""Prometheus counters of the notification pipelines (push and email), as a textfile.

Why a file: assets run in short-lived Dagster run processes that no Prometheus can scrape.
Each run adds to a module-level registry and writes it to
`<data_dir>/metrics/notifications.prom`, which node_exporter's textfile collector (or any
sidecar) exposes. Counters in a file restart from the file's values, not zero: `load` reads the
last written totals back before a run increments them, so the series stay monotonic across
run processes on one host. Writes are atomic (temp file + rename), so a scrape never reads a
half-written file.

Usage (push and email alike):

    record(storage_dir, channel="push", kind="event_reminder", sent=3, failed=0, skipped=1)
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from textfile_metrics.writer import write_textfile

REGISTRY = CollectorRegistry()
NOTIFICATIONS = Counter(
    "godo_notifications",
    "Notifications decided on by the pipelines, by channel, kind and outcome "
    "(sent, failed, skipped).",
    ["channel", "kind", "outcome"],
    registry=REGISTRY,
)
FILE_NAME = "notifications.prom"
OUTCOMES = ("sent", "failed", "skipped")

_lock = threading.Lock()
_loaded: set[Path] = set()
_SAMPLE = re.compile(
    r'^godo_notifications_total\{channel="([^"]*)",kind="([^"]*)",outcome="([^"]*)"\}\s+(\S+)$'
)


def metrics_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "metrics" / FILE_NAME


def load(data_dir: str | Path) -> None:
    """Seed the counters from the file last written there (once per process and path)."""
    path = metrics_path(data_dir)
    with _lock:
        if path in _loaded:
            return
        _loaded.add(path)
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            match = _SAMPLE.match(line.strip())
            if match is None:
                continue
            channel, kind, outcome, value = match.groups()
            current = NOTIFICATIONS.labels(channel, kind, outcome)._value.get()
            if float(value) > current:
                NOTIFICATIONS.labels(channel, kind, outcome).inc(float(value) - current)


def write(data_dir: str | Path) -> Path:
    """Write the registry in the Prometheus text format, atomically; returns the path."""
    return write_textfile(metrics_path(data_dir), REGISTRY)


def record(
    data_dir: str | Path,
    *,
    channel: str,
    kind: str,
    sent: int = 0,
    failed: int = 0,
    skipped: int = 0,
) -> Path:
    """Add one run's outcomes to the counters and rewrite the textfile."""
    load(data_dir)
    for outcome, count in zip(OUTCOMES, (sent, failed, skipped), strict=True):
        # Touch every label set so a zero still shows up as a series.
        counter = NOTIFICATIONS.labels(channel, kind, outcome)
        if count:
            counter.inc(count)
    return write(data_dir)
