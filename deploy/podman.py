"""podman as this kind of machine runs it: no Docker daemon, no systemd, no bridge network.

A rootful podman inside a container refuses its default ulimits, and crun its cgroups. So
unless the caller has configured podman (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF set), the
commands here run with configuration files written under `.godo/containers/`: no default
ulimits, runc, cgroupfs, and the overlay storage driver where the kernel allows an overlay
mount here, else vfs (GODO_PODMAN_STORAGE_DRIVER chooses). vfs works anywhere but copies the
whole image for every layer and every build step: on this machine a cold build of the
pipelines' image took 32 minutes and 30 GB on vfs. Each driver keeps its own graph root. Every
command uses the host's network (`--network=host`) where it takes one.

Builds that install packages get the machine's CA bundle mounted and named in SSL_CERT_FILE
and PIP_CERT (build arguments), for a TLS-intercepting proxy in front of the package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".godo" / "containers"
DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

CONTAINERS_CONF = """\
# Written by deploy/podman.py for podman in a container without systemd.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

STORAGE_CONF = """\
# Written by deploy/podman.py. vfs works on any filesystem, at the cost of a full copy per layer;
# GODO_PODMAN_STORAGE_DRIVER=overlay is much faster where the kernel allows overlay mounts.
[storage]
driver = "{driver}"
runroot = "/run/containers/storage{suffix}"
graphroot = "/var/lib/containers/storage{suffix}"
"""


class PodmanError(RuntimeError):
    """A podman (or podman-compose) command failed; the message carries its output's tail."""


def machine_env(
    base: Mapping[str, str] | None = None, state_dir: Path = STATE_DIR
) -> dict[str, str]:
    """The environment podman runs in: the caller's, plus this machine's configuration files
    unless the caller named their own."""
    env = dict(os.environ if base is None else base)
    if "CONTAINERS_CONF" not in env:
        state_dir.mkdir(parents=True, exist_ok=True)
        conf = state_dir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    if "CONTAINERS_STORAGE_CONF" not in env:
        state_dir.mkdir(parents=True, exist_ok=True)
        storage = state_dir / "storage.conf"
        driver = env.get("GODO_PODMAN_STORAGE_DRIVER") or ("overlay" if overlay_mounts() else "vfs")
        # A graph root holds one driver's layers: vfs keeps podman's default place.
        suffix = "" if driver == "vfs" else f"-{driver}"
        storage.write_text(STORAGE_CONF.format(driver=driver, suffix=suffix))
        env["CONTAINERS_STORAGE_CONF"] = str(storage)
    return env


def overlay_mounts() -> bool:
    """Whether this process can mount an overlay filesystem (root, a kernel that allows it
    here, a backing filesystem that is not itself an overlay)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="godo-overlay-probe-") as tmp:
        dirs = {name: Path(tmp) / name for name in ("lower", "upper", "work", "merged")}
        for path in dirs.values():
            path.mkdir()
        options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        mount = ["mount", "-t", "overlay", "overlay", "-o", options, str(dirs["merged"])]
        if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
            return False
        subprocess.run(["umount", str(dirs["merged"])], capture_output=True, check=False)
        return True


def ca_bundle(env: Mapping[str, str]) -> Path | None:
    """The CA bundle builds should trust: SSL_CERT_FILE when set, else the system bundle."""
    named = env.get("SSL_CERT_FILE")
    for candidate in (Path(named) if named else None, DEFAULT_CA_BUNDLE):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def ca_build_args(env: Mapping[str, str]) -> list[str]:
    """`podman build` arguments that mount the CA bundle where the image keeps its own and
    point pip and uv at it (the Dockerfile's SSL_CERT_FILE / PIP_CERT build arguments)."""
    bundle = ca_bundle(env)
    if bundle is None:
        return []
    inside = str(DEFAULT_CA_BUNDLE)
    return [
        "--volume",
        f"{bundle}:{inside}:ro",
        "--build-arg",
        f"SSL_CERT_FILE={inside}",
        "--build-arg",
        f"PIP_CERT={inside}",
    ]


@dataclass(frozen=True)
class Podman:
    """Runs podman with the machine's environment; `run` raises PodmanError on failure."""

    env: Mapping[str, str]
    executable: str = "podman"

    @classmethod
    def here(cls) -> Podman:
        found = shutil.which("podman")
        if found is None:
            raise SystemExit(
                "podman is not installed: `apt-get install -y podman runc debootstrap` "
                "(README, Containers)"
            )
        return cls(env=machine_env(), executable=found)

    def run(
        self,
        args: Sequence[str],
        *,
        capture: bool = True,
        check: bool = True,
        timeout: float | None = None,
        stdin: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_command([self.executable, *args], self.env, capture, check, timeout, stdin)

    def image_exists(self, ref: str) -> bool:
        return self.run(["image", "exists", ref], check=False).returncode == 0

    def image_size(self, ref: str) -> int:
        """Bytes of the image as `podman images` counts them (all its layers)."""
        return int(self.run(["image", "inspect", "--format", "{{.Size}}", ref]).stdout.strip())


def run_command(
    argv: Sequence[str],
    env: Mapping[str, str],
    capture: bool = True,
    check: bool = True,
    timeout: float | None = None,
    stdin: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """One command; with `capture=False` its output streams to this process's stderr."""
    result = subprocess.run(
        list(argv),
        env=dict(env),
        text=True,
        stdin=stdin,
        stdout=subprocess.PIPE if capture else sys.stderr,
        stderr=subprocess.PIPE if capture else sys.stderr,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        tail = "\n".join(((result.stdout or "") + (result.stderr or "")).splitlines()[-30:])
        raise PodmanError(f"`{' '.join(argv[:4])} ...` exited {result.returncode}\n{tail}")
    return result
