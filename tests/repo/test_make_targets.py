"""Every `make` target works on a machine with only Python: each goes through dev.py, which
installs the pinned uv into .godo/tools when uv is not on PATH and syncs the environment.

Before, most recipes called `uv run ...` and failed with `uv: No such file or directory`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import REPO_ROOT
from tests.conftest import load_dev_py

MAKEFILE = REPO_ROOT / "Makefile"
# `help` only greps the Makefile; every other recipe line is one call of dev.py.
DEV_PY_RECIPE = re.compile(r"^\$\(PY\) dev\.py (?P<command>[a-z-]+)( .*)?$")
BARE_UV = re.compile(r"(^|[\s;&|(`])-?uv(\s|$)")
# What the Makefile's recipes and dev.py's subprocesses need, and nothing else (no uv).
TOOLS = ("make", "grep", "awk")


def recipes() -> dict[str, list[str]]:
    """Target -> its recipe lines (tabs, `@` and `-` prefixes stripped)."""
    targets: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in MAKEFILE.read_text().splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip().lstrip("@-"))
        elif match := re.match(r"^([a-z][a-z-]*):", line):
            current = targets.setdefault(match.group(1), [])
        elif not line.startswith("\t"):
            current = None
    return targets


def test_no_recipe_calls_uv_and_every_one_goes_through_dev_py() -> None:
    dev = load_dev_py()
    known = {*dev.COMMANDS, "browsers", "clean", "run"}
    targets = recipes()
    phony = re.search(r"^\.PHONY: (.*)$", MAKEFILE.read_text(), re.MULTILINE)
    assert phony and set(phony.group(1).split()) == set(targets)
    for target, lines in targets.items():
        assert lines, f"{target}: no recipe"
        for line in lines:
            assert not BARE_UV.search(line), f"{target} calls uv directly: {line}"
            if target == "help":
                continue
            match = DEV_PY_RECIPE.match(line)
            assert match, f"{target} does not go through $(PY) dev.py: {line}"
            assert match.group("command") in known, f"{target}: dev.py has no {line}"


def test_dev_py_runs_every_make_target_of_the_same_name() -> None:
    """`make X` is `dev.py X` (demo-once is `demo --no-serve`), so the README's two forms
    cannot drift apart."""
    for target, lines in recipes().items():
        if target not in {"help", "demo-once"}:
            assert lines == [f"$(PY) dev.py {target}"], target


@pytest.fixture
def path_without_uv(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine with Python and make but no uv: PATH is one folder of
    links to python3 (the interpreter .venv was built from, so nothing is reinstalled) and
    the few tools the recipes use."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys._base_executable)  # type: ignore[attr-defined]
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (bin_dir / tool).symlink_to(found)
    path = str(bin_dir)
    assert shutil.which("uv", path=path) is None
    dropped = {"PATH", "VIRTUAL_ENV", "UV_PYTHON", "UV", "GODO_DATA_DIR"}
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    return env | {"PATH": path, "GODO_DATA_DIR": str(tmp_path / "data")}


def test_make_lists_every_target(path_without_uv: dict[str, str]) -> None:
    listed = subprocess.run(
        ["make", "help"], cwd=REPO_ROOT, env=path_without_uv, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()} == set(recipes())


def test_a_make_target_runs_without_uv_on_path(path_without_uv: dict[str, str]) -> None:
    """`make services-stop` (harmless: GODO_DATA_DIR is an empty folder) runs `godo` inside
    the environment through the uv dev.py keeps in .godo/tools."""
    done = subprocess.run(
        ["make", "services-stop"],
        cwd=REPO_ROOT,
        env=path_without_uv,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No such file" not in done.stderr
    assert "stopped: nothing was running" in done.stdout


def test_dev_py_run_runs_a_command_in_the_environment(path_without_uv: dict[str, str]) -> None:
    code = "import sys, godo; print(sys.prefix); print(godo.__file__)"
    done = subprocess.run(
        ["python3", "dev.py", "run", "--", "python", "-c", code],
        cwd=REPO_ROOT,
        env=path_without_uv,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    prefix, package = done.stdout.splitlines()[-2:]
    assert Path(prefix) == REPO_ROOT / ".venv"
    assert Path(package) == REPO_ROOT / "godo" / "__init__.py"


def test_dev_py_refuses_an_unknown_command_with_its_usage() -> None:
    done = subprocess.run(
        [sys.executable, "dev.py", "frobnicate"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and "python3 dev.py run -- CMD" in done.stdout
    empty_run = subprocess.run(
        [sys.executable, "dev.py", "run", "--"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert empty_run.returncode == 2
