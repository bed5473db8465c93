"""Metadata that ties Dagster's UI to MLflow's: links to runs and model versions, inline plots.

Why: an operator looking at a retrain in Dagster should reach the MLflow run and the
registered version in one click, and see the evaluation's plots where the numbers are,
not a file path on the machine that ran the step. The links are built from the MLflow UI's
base URL (`GODO_MLFLOW_UI_URL`), which is not the tracking URI: a SQLite store has no UI of
its own and a tracking server's in-cluster name is not what a browser reaches.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from PIL import Image

# Matplotlib's plots are a few flat colours plus anti-aliasing: 64 palette colours look the
# same and cut a PNG to about a third, so five plots stay near 100 KB of event-log metadata.
PLOT_COLOURS = 64


@dataclass(frozen=True)
class MlflowLinks:
    """URLs of the MLflow UI at `ui_url` for one experiment and one registered model."""

    ui_url: str
    experiment_id: str
    model_name: str

    @property
    def _base(self) -> str:
        return self.ui_url.rstrip("/")

    def run(self, run_id: str) -> str:
        """The run's page: its parameters, metrics and artifacts (the plots, the bundle)."""
        return f"{self._base}/#/experiments/{quote(self.experiment_id)}/runs/{quote(run_id)}"

    def model_version(self, version: int) -> str:
        """The registered version's page: its aliases (`champion`) and tags."""
        return f"{self._base}/#/models/{quote(self.model_name)}/versions/{version}"


def png_data_uri(path: Path, colours: int = PLOT_COLOURS) -> str:
    """`path` (a PNG) re-encoded with a `colours` palette, as a `data:` URI."""
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colours)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plots_markdown(figures: Sequence[Path]) -> str:
    """Markdown showing each figure inline under its name (the Dagster UI renders data URIs)."""
    return "\n\n".join(
        f"**{path.stem}**\n\n![{path.stem}]({png_data_uri(path)})" for path in figures
    )
