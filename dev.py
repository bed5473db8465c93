#!/usr/bin/env python3
"""Bootstrap and run Godo on a machine that has only Python 3.11+ and git.

    python3 dev.py demo           install everything, run the pipeline end to end, serve the API
    python3 dev.py test           install everything, run the whole test suite
    python3 dev.py check          install everything, run ruff and mypy
    python3 dev.py fmt            format and autofix with ruff
    python3 dev.py serve          serve the API (`godo serve`)
    python3 dev.py dagster        the Dagster UI and daemon (`godo dagster`)
    python3 dev.py mlflow         the MLflow UI on the local tracking store (`godo mlflow`)
    python3 dev.py notebooks      JupyterLab in notebooks/, where .py notebooks open as notebooks
    python3 dev.py bench          the benchmarks (figures, not pass/fail)
    python3 dev.py chaos          faults under load (bench/chaos.py)
    python3 dev.py services-stop  stop the embedded PostgreSQL and Redis
    python3 dev.py clean          stop them and delete .godo/
    python3 dev.py run -- CMD...  any command inside the environment
    python3 dev.py browsers       install the browser the browser tests drive (Debian's Chromium)
    python3 dev.py image          build the images with podman (deploy/images.py)
    python3 dev.py compose-smoke  the compose stack end to end with podman (deploy/smoke.py)

Installs uv (pinned) into .godo/tools when it is not on PATH, then `uv sync --frozen` from the
committed uv.lock, then runs the command inside that environment. Extra arguments pass through
to the (last) command (e.g. `python3 dev.py demo --no-serve`, `python3 dev.py test -k feed`).
Every `make` target calls this file, so none needs uv on PATH.

`test` first makes sure Chromium is there (see `ensure_chromium`): the admin pages' test drives
a real browser, and a suite that skipped it on a fresh machine would pass without testing them.
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
# The browser tests drive this executable (tests/integration/test_admin_browser.py reads the
# same variable). Debian's package puts it at /usr/bin/chromium; GitHub's Ubuntu runners ship
# a Chromium there too.
CHROMIUM = os.environ.get("GODO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_PACKAGES = ["chromium"]

NOTEBOOKS = ROOT / "notebooks"
# JupyterLab's application settings for `notebooks`: .py files open as (Jupytext) notebooks.
LAB_SETTINGS = NOTEBOOKS / ".jupyterlab"

# Each command runs in the synced environment, from the repository root, one after another.
COMMANDS: dict[str, list[list[str]]] = {
    "demo": [["godo", "demo"]],
    "test": [["pytest"]],
    "check": [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
        ["lint-imports"],
    ],
    "fmt": [["ruff", "format", "."], ["ruff", "check", "--fix", "."]],
    "serve": [["godo", "serve"]],
    "dagster": [["godo", "dagster"]],
    "mlflow": [["godo", "mlflow"]],
    "notebooks": [
        [
            "jupyter",
            "lab",
            f"--ServerApp.root_dir={NOTEBOOKS}",
            f"--LabApp.app_settings_dir={LAB_SETTINGS}",
        ]
    ],
    "bench": [["python", "-m", "bench.publish"], ["python", "-m", "bench.quality"]],
    "chaos": [["python", "-m", "bench.chaos"]],
    "services-stop": [["godo", "services", "stop"]],
    "image": [["python", "-m", "deploy.images"]],
    "compose-smoke": [["python", "-m", "deploy.smoke"]],
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


def ensure_chromium() -> None:
    """Install Debian's Chromium with apt-get when `CHROMIUM` is missing, or say what to do.

    Why apt and not Playwright's installer: Playwright downloads its own browser build from
    its own servers, which a locked-down CI or laptop cannot reach and which bypasses the
    distribution's security updates; the system package installs through the machine's
    package mirrors. Runs `apt-get` directly as root, else through `sudo -n`; waits for the
    dpkg lock rather than failing when another install is running.
    """
    if os.access(CHROMIUM, os.X_OK):
        return
    apt = shutil.which("apt-get")
    if apt is None or not Path("/etc/debian_version").exists():
        raise SystemExit(
            f"dev.py: no Chromium at {CHROMIUM} and no apt-get to install it: install Chromium "
            "and point GODO_CHROMIUM at its executable"
        )
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    print(f"dev.py: installing {' '.join(CHROMIUM_PACKAGES)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, apt, *lock, "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, apt, *lock, "install", "-y", "-qq", "--no-install-recommends", *CHROMIUM_PACKAGES],
        check=True,
        env=env,
    )
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"dev.py: apt-get installed {CHROMIUM_PACKAGES} but {CHROMIUM} is missing")


def notebooks_args() -> list[str]:
    """Jupyter refuses to start as root unless told, and a dev container often is root."""
    return ["--allow-root"] if os.name == "posix" and os.geteuid() == 0 else []


def wait_for(args: list[str], env: dict[str, str]) -> int:
    """Run `args` to the end. Ctrl+C reaches the child too (same process group) and the child
    decides how to stop (a server shuts down cleanly); this process waits for it, as a shell
    does, instead of dying first and leaving the shutdown to print over the prompt."""
    with subprocess.Popen(args, cwd=ROOT, env=env) as child:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue


def run_in_env(commands: list[list[str]], extra: list[str]) -> int:
    """uv sync, then each command in the environment (extra arguments go to the last one);
    stops at the first that fails and returns its exit code."""
    uv = find_uv()
    env = dict(
        os.environ,
        UV_PYTHON=os.environ.get("UV_PYTHON", sys.executable),
        UV_PYTHON_DOWNLOADS="never",
    )
    subprocess.run([uv, "sync", "--frozen"], cwd=ROOT, env=env, check=True)
    for i, command in enumerate(commands):
        args = command + (extra if i == len(commands) - 1 else [])
        code = wait_for([uv, "run", "--frozen", "--no-sync", *args], env)
        if code != 0:
            return code
    return 0


def clean() -> int:
    """Stop the embedded servers (a failure is reported, not fatal), then delete .godo/."""
    if run_in_env(COMMANDS["services-stop"], []) != 0:
        print("dev.py: could not stop the embedded servers; deleting .godo anyway", flush=True)
    shutil.rmtree(ROOT / ".godo", ignore_errors=True)
    return 0


def main(argv: list[str]) -> int:
    name, extra = (argv[0], argv[1:]) if argv else ("", [])
    if name == "browsers":
        ensure_chromium()
        return 0
    if name == "clean":
        return clean()
    if name == "run":
        command = extra[1:] if extra[:1] == ["--"] else extra
        if command:
            return run_in_env([command], [])
    elif name in COMMANDS:
        if name == "test":
            ensure_chromium()
        if name == "notebooks":
            extra = notebooks_args() + extra
        return run_in_env(COMMANDS[name], extra)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
