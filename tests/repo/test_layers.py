"""The import contracts (pyproject's `[tool.importlinter]`) hold, and they would catch a
package importing a layer above it: run as the suite runs, so `.ci/run` enforces the layering
too, not only `python3 dev.py check`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(executable), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_the_layering_holds() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_package_of_the_wheel_is_in_a_layer() -> None:
    config = tomllib.loads(PYPROJECT.read_text())
    wheel = set(config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    (layers,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    layered = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    assert wheel <= layered


@pytest.mark.parametrize(
    ("module", "upward"),
    [("features/geo.py", "serving.app"), ("core/tokens.py", "store.db")],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, upward: str) -> None:
    """A copy of the tree with one upward import fails: the contract is not vacuous."""
    config = tomllib.loads(PYPROJECT.read_text())
    for package in config["tool"]["importlinter"]["root_packages"]:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a") as source:
        source.write(f"\nimport {upward}  # noqa: E402\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "0 broken" not in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout
