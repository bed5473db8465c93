"""The data folder is the repository root's `.godo` from any working directory.

A notebook's kernel starts in notebooks/, and a data folder resolved against the working
directory sent it to notebooks/.godo, where there is no warehouse.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from core.settings import REPO_ROOT, Settings
from tests.conftest import NOTEBOOK_DIR, execute_in_notebook_dir

LOCATION_VARIABLES = ("GODO_DATA_DIR", "GODO_BACKUP_DIR", "GODO_WAREHOUSE")


@pytest.fixture
def in_notebooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Working directory notebooks/, no location configured."""
    monkeypatch.chdir(NOTEBOOK_DIR)
    for name in (*LOCATION_VARIABLES, "GODO_MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("in_notebooks")
def test_the_default_data_dir_is_the_repo_roots_godo_from_notebooks() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.data_dir == REPO_ROOT / ".godo"
    assert settings.warehouse_path == REPO_ROOT / ".godo" / "warehouse.duckdb"
    assert settings.resolved_mlflow_uri == f"sqlite:///{REPO_ROOT / '.godo' / 'mlflow.db'}"
    assert settings.resolved_mlflow_artifact_root == str(REPO_ROOT / ".godo" / "mlartifacts")


@pytest.mark.usefixtures("in_notebooks")
def test_relative_folders_are_relative_to_the_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GODO_DATA_DIR", "scratch/godo")
    monkeypatch.setenv("GODO_BACKUP_DIR", "dumps")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.data_dir == REPO_ROOT / "scratch" / "godo"
    assert settings.backup_dir == REPO_ROOT / "dumps"


@pytest.mark.usefixtures("in_notebooks")
def test_absolute_and_home_folders_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GODO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GODO_BACKUP_DIR", "~/godo-backups")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.data_path == tmp_path.resolve()
    assert settings.backup_dir == Path.home() / "godo-backups"


def test_a_notebook_kernel_in_notebooks_reads_the_data_the_repo_root_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a notebook's first cell sees, with no location set, is where `godo demo` (run from
    the repo root) writes: `<repo>/.godo` unless the repo's `.env` says otherwise."""
    env = {name: value for name, value in os.environ.items() if name not in LOCATION_VARIABLES}
    for name in LOCATION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(REPO_ROOT)
    expected = Settings().data_path
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "import json, os\n"
            "from _shared import settings, warehouse_path\n"
            "print(json.dumps([os.getcwd(), str(settings().data_path), str(warehouse_path())]))"
        )
    )
    notebook.cells.append(  # a relative GODO_WAREHOUSE, too, is the repo root's
        nbformat.v4.new_code_cell(
            "os.environ['GODO_WAREHOUSE'] = 'scratch/other.duckdb'\nprint(warehouse_path())"
        )
    )
    execute_in_notebook_dir(notebook, env)
    cwd, data, warehouse = json.loads(notebook.cells[0].outputs[0]["text"])
    assert Path(cwd) == NOTEBOOK_DIR
    assert Path(data) == expected and Path(warehouse) == expected / "warehouse.duckdb"
    other = notebook.cells[1].outputs[0]["text"].strip()
    assert Path(other) == REPO_ROOT / "scratch" / "other.duckdb"
