#!/usr/bin/env python3
"""Bootstrap and run Godo on a machine that has only Python 3.11+ and git.

    python3 dev.py demo      install everything, run the pipeline end to end, serve the API
    python3 dev.py test      install everything, run the whole test suite
    python3 dev.py check     install everything, run ruff and mypy

Installs uv (pinned) into .godo/tools when it is not on PATH, then `uv sync --frozen` from the
committed uv.lock, then runs the command inside that environment. Extra arguments pass through
(e.g. `python3 dev.py demo --no-serve`, `python3 dev.py test -k feed`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

UV_VERSION = "0.13.9"
ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".godo" / "tools"

COMMANDS: dict[str, list[list[str]]] = {
    "demo": [["godo", "demo"]],
    "test": [["pytest"]],
    "check": [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
}


def find_uv() -> str:
    """uv from PATH, else from .godo/tools, else installed there with pip."""
    on_path = shutil.which("uv")
    if on_path:
        return on_path
    bindir = TOOLS / ("Scripts" if os.name == "nt" else "bin")
    uv = bindir / ("uv.exe" if os.name == "nt" else "uv")
    if not uv.exists():
        print(f"dev.py: installing uv {UV_VERSION} into {TOOLS}", flush=True)
        venv.create(TOOLS, with_pip=True)
        subprocess.run(
            [str(bindir / "python"), "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"],
            check=True,
        )
    return str(uv)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    name, extra = argv[0], argv[1:]
    uv = find_uv()
    env = dict(
        os.environ,
        UV_PYTHON=os.environ.get("UV_PYTHON", sys.executable),
        UV_PYTHON_DOWNLOADS="never",
    )
    subprocess.run([uv, "sync", "--frozen"], cwd=ROOT, env=env, check=True)
    commands = COMMANDS[name]
    for i, command in enumerate(commands):
        args = command + (extra if i == len(commands) - 1 else [])
        code = subprocess.run(
            [uv, "run", "--frozen", "--no-sync", *args], cwd=ROOT, env=env
        ).returncode
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
