"""Dagster's links into MLflow's UI and the evaluation plots shown inline."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from models.evaluation import plots
from pipelines.ui_metadata import MlflowLinks, plots_markdown


def test_links_point_at_the_run_and_the_version_pages_of_the_ui() -> None:
    links = MlflowLinks("http://127.0.0.1:5000/", "3", "godo feed")
    assert links.run("abc123") == "http://127.0.0.1:5000/#/experiments/3/runs/abc123"
    # A model name is a path segment: a space is escaped, the trailing slash is not doubled.
    assert links.model_version(7) == "http://127.0.0.1:5000/#/models/godo%20feed/versions/7"


def test_plots_are_embedded_as_smaller_pngs_of_the_same_picture(tmp_path: Path) -> None:
    table = pl.DataFrame(
        {"model": ["random", "popularity", "final_feed"], "ndcg@10": [0.05, 0.21, 0.34]}
    )
    figures = [
        plots.metric_by_model(table, "ndcg@10", tmp_path / "ndcg_by_model.png"),
        plots.metrics_by_model(table, ["ndcg@10"], tmp_path / "metrics_by_model.png"),
    ]

    markdown = plots_markdown(figures)

    embedded = re.findall(r"!\[([\w]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert [name for name, _ in embedded] == ["ndcg_by_model", "metrics_by_model"]
    assert str(tmp_path) not in markdown  # the picture itself, not a path on the runner
    for (_, data), original in zip(embedded, figures, strict=True):
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < original.stat().st_size
        with Image.open(io.BytesIO(png)) as small, Image.open(original) as big:
            assert small.size == big.size
            # Same picture: the palette copy differs from the original by little per pixel.
            difference = np.abs(
                np.asarray(small.convert("RGB"), dtype=float)
                - np.asarray(big.convert("RGB"), dtype=float)
            )
            assert difference.mean() < 3
