#!/usr/bin/env python3
"""Bootstrap and run Godo on a machine that has only Python 3.11+ and git.

    python3 dev.py demo      install everything, run the pipeline end to end, serve the API
    python3 dev.py test      install everything, run the whole test suite
    python3 dev.py check     install everything, run ruff and mypy
    python3 dev.py browsers  install the browser the browser tests drive (Debian's Chromium)
    python3 dev.py image     build the images with podman (deploy/images.py)
    python3 dev.py compose-smoke  the compose stack end to end with podman (deploy/smoke.py)

Installs uv (pinned) into .godo/tools when it is not on PATH, then `uv sync --frozen` from the
committed uv.lock, then runs the command inside that environment. Extra arguments pass through
(e.g. `python3 dev.py demo --no-serve`, `python3 dev.py test -k feed`).

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

COMMANDS: dict[str, list[list[str]]] = {
    "demo": [["godo", "demo"]],
    "test": [["pytest"]],
    "check": [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
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


def main(argv: list[str]) -> int:
    if argv[:1] == ["browsers"]:
        ensure_chromium()
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    name, extra = argv[0], argv[1:]
    if name == "test":
        ensure_chromium()
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
