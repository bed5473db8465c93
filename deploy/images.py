"""Build Godo's images with podman: `python -m deploy.images` (`make image`).

Upstream base images come from a registry this kind of machine cannot reach, so their
stand-ins are built from Debian's packages (docker/base/): a minimal Debian root filesystem
from `debootstrap` against the machine's own apt mirror, imported as an image, and on it
Python 3.11, PostgreSQL and Redis. Each is built only when missing (`--rebuild-base` forces
it), so after the first run only the app images build. Those two are the Dockerfile's default
target (the pipelines' image) and its `api` target, both on the Python stand-in through the
BASE_IMAGE build argument, with the machine's CA bundle mounted (deploy/podman.py).

`--upstream` skips the stand-ins and builds on the Dockerfile's default base instead, for a
machine that can pull it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from deploy.podman import ROOT, Podman, ca_build_args

BASE_DIR = ROOT / "docker" / "base"
DEBIAN_SUITE = "bookworm"
DEBIAN_IMAGE = f"localhost/debian-local:{DEBIAN_SUITE}"
APT_SOURCES = Path("/etc/apt")

# Like Debian's own slim images: no manuals, docs or translations in any layer.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""


@dataclass(frozen=True)
class Image:
    """An image this module builds: its tag, Dockerfile, context, target and base argument."""

    tag: str
    dockerfile: Path
    context: Path
    target: str | None = None
    base_arg: str | None = None


STAND_INS = {
    "python": Image("localhost/python-local:3.11", BASE_DIR / "python.Dockerfile", BASE_DIR),
    "postgres": Image("localhost/postgres-local:15", BASE_DIR / "postgres.Dockerfile", BASE_DIR),
    "redis": Image("localhost/redis-local:7", BASE_DIR / "redis.Dockerfile", BASE_DIR),
}


def app_images(base: str | None) -> dict[str, Image]:
    """The pipelines' image (the Dockerfile's default target) and the API's."""
    dockerfile = ROOT / "Dockerfile"
    return {
        "godo": Image("localhost/godo:dev", dockerfile, ROOT, None, base),
        "godo-api": Image("localhost/godo-api:dev", dockerfile, ROOT, "api", base),
    }


def debian_mirror(apt_dir: Path = APT_SOURCES, suite: str = DEBIAN_SUITE) -> str:
    """The first archive URI the machine's apt uses for `suite` (one-line or deb822 sources)."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for file in files:
        for line in _lines(file):
            parts = re.sub(r"\[[^]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
                return parts[1]
    for file in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in file.read_text().split("\n\n"):
            fields = _deb822(stanza)
            if (
                "deb" in fields.get("Types", "").split()
                and suite in fields.get("Suites", "").split()
            ):
                return fields["URIs"].split()[0]
    raise SystemExit(f"no apt source for {suite} in {apt_dir}: debootstrap needs a mirror")


def _lines(file: Path) -> Iterable[str]:
    if not file.is_file():
        return []
    return (line.strip() for line in file.read_text().splitlines() if not line.startswith("#"))


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def build_debian(podman: Podman) -> None:
    """debootstrap a minimal bookworm from the machine's mirror, trim it, import it."""
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is not installed: `apt-get install -y debootstrap`")
    with tempfile.TemporaryDirectory(prefix="godo-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), debian_mirror()],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for pattern in (
            "var/cache/apt/*.bin",
            "var/cache/apt/archives/*.deb",
            "var/lib/apt/lists/*",
        ):
            for path in rootfs.glob(pattern):
                if path.is_file():
                    path.unlink()
        for folder in ("usr/share/man", "usr/share/info", "usr/share/locale"):
            shutil.rmtree(rootfs / folder, ignore_errors=True)
            (rootfs / folder).mkdir(parents=True)
        for doc in (rootfs / "usr/share/doc").rglob("*"):
            if doc.is_file() and doc.name != "copyright":
                doc.unlink()
        (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(DPKG_EXCLUDES)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman.run(["import", "-", DEBIAN_IMAGE], stdin=tar.stdout.fileno() if tar.stdout else None)
        if tar.wait() != 0:
            raise SystemExit("tar of the debootstrapped root filesystem failed")


def build(podman: Podman, image: Image, *, with_ca: bool = False) -> None:
    """`podman build` of one image, output streamed; the Docker format keeps HEALTHCHECK."""
    args = ["build", "--network=host", "--format", "docker", "--tag", image.tag]
    args += ["--file", str(image.dockerfile)]
    if image.target:
        args += ["--target", image.target]
    if image.base_arg:
        args += ["--build-arg", f"BASE_IMAGE={image.base_arg}"]
    if with_ca:
        args += ca_build_args(podman.env)
    podman.run([*args, str(image.context)], capture=False)


def timed(step: str, timings: dict[str, float], action: Callable[[], None]) -> None:
    """Run `action()` and record its seconds under `step`."""
    started = time.perf_counter()
    action()
    timings[step] = time.perf_counter() - started
    print(f"images: {step} in {timings[step]:.0f} s", flush=True)


def ensure_images(
    podman: Podman, *, upstream: bool = False, rebuild_base: bool = False
) -> dict[str, float]:
    """Stand-ins when missing (or asked), then both app images; seconds per step built."""
    timings: dict[str, float] = {}
    if not upstream:
        if rebuild_base or not podman.image_exists(DEBIAN_IMAGE):
            timed(DEBIAN_IMAGE, timings, partial(build_debian, podman))
        for stand_in in STAND_INS.values():
            if rebuild_base or not podman.image_exists(stand_in.tag):
                timed(stand_in.tag, timings, partial(build, podman, stand_in))
    base = None if upstream else STAND_INS["python"].tag
    for image in app_images(base).values():
        timed(image.tag, timings, partial(build, podman, image, with_ca=True))
    return timings


def image_sizes(podman: Podman, tags: Iterable[str]) -> dict[str, int]:
    return {tag: podman.image_size(tag) for tag in tags if podman.image_exists(tag)}


def print_sizes(podman: Podman) -> None:
    tags = [DEBIAN_IMAGE, *(s.tag for s in STAND_INS.values())]
    tags += [i.tag for i in app_images(None).values()]
    for tag, size in image_sizes(podman, tags).items():
        print(f"images: {tag:<36} {size / 1e6:8.0f} MB", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.images", description=__doc__)
    parser.add_argument("--upstream", action="store_true", help="build on the upstream base")
    parser.add_argument("--rebuild-base", action="store_true", help="rebuild the stand-ins")
    args = parser.parse_args(argv)
    podman = Podman.here()
    ensure_images(podman, upstream=args.upstream, rebuild_base=args.rebuild_base)
    print_sizes(podman)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
