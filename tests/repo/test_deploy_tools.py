"""The pure parts of deploy/ (image builds and the compose smoke run), without podman.

What needs podman (building, starting the stack) is `make compose-smoke` itself; here: the
order services start in, compose durations, finding the machine's Debian mirror, the CA
bundle mount, and leaving a podman the caller configured alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy.images import app_images, debian_mirror
from deploy.podman import DEFAULT_CA_BUNDLE, ca_build_args, machine_env
from deploy.smoke import SmokeFailed, dependencies, duration, start_order

ROOT = Path(__file__).resolve().parents[2]


def test_services_start_after_what_they_depend_on() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    order = start_order(services)
    assert sorted(order) == sorted(services)
    for name in services:
        for dependency in dependencies(services[name]):
            assert order.index(dependency) < order.index(name), (name, dependency)
    assert order.index("migrate") < order.index("api")
    assert dependencies(services["api"])["migrate"] == "service_completed_successfully"


def test_start_order_accepts_the_list_form_and_refuses_a_cycle() -> None:
    assert start_order({"b": {"depends_on": ["a"]}, "a": {}}) == ["a", "b"]
    assert dependencies({"depends_on": ["a"]}) == {"a": "service_started"}
    with pytest.raises(SmokeFailed, match="cycle: a -> b -> a"):
        start_order({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), (15, 15.0), ("1.5s", 1.5)],
)
def test_compose_durations(text: str | int, seconds: float) -> None:
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "s", "3x"])
def test_a_duration_without_a_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="compose duration"):
        duration(text)


def test_the_mirror_comes_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_the_mirror_comes_from_a_one_line_source_first(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64] http://one.example/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://other.example/debian\nSuites: bookworm\n"
    )
    assert debian_mirror(tmp_path) == "http://one.example/debian"


def test_no_mirror_for_the_suite_stops_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://one.example/debian trixie main\n")
    with pytest.raises(SystemExit, match="no apt source for bookworm"):
        debian_mirror(tmp_path)


def test_builds_mount_the_ca_bundle_and_name_it_for_pip_and_uv(tmp_path: Path) -> None:
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    args = ca_build_args({"SSL_CERT_FILE": str(bundle)})
    inside = str(DEFAULT_CA_BUNDLE)
    assert args[args.index("--volume") + 1] == f"{bundle}:{inside}:ro"
    build_args = {args[n + 1] for n, flag in enumerate(args) if flag == "--build-arg"}
    assert build_args == {f"SSL_CERT_FILE={inside}", f"PIP_CERT={inside}"}


def test_machine_settings_are_written_unless_podman_is_configured(tmp_path: Path) -> None:
    env = machine_env({"GODO_PODMAN_STORAGE_DRIVER": "vfs"}, state_dir=tmp_path)
    conf = Path(env["CONTAINERS_CONF"]).read_text()
    assert "default_ulimits = []" in conf and 'runtime = "runc"' in conf
    storage = Path(env["CONTAINERS_STORAGE_CONF"]).read_text()
    assert 'driver = "vfs"' in storage and 'graphroot = "/var/lib/containers/storage"' in storage
    env = machine_env({"GODO_PODMAN_STORAGE_DRIVER": "overlay"}, state_dir=tmp_path)
    storage = Path(env["CONTAINERS_STORAGE_CONF"]).read_text()
    # A graph root holds one driver's layers.
    assert 'driver = "overlay"' in storage and "/var/lib/containers/storage-overlay" in storage
    mine = {"CONTAINERS_CONF": "/etc/mine.conf", "CONTAINERS_STORAGE_CONF": "/etc/s.conf"}
    assert machine_env(mine, state_dir=tmp_path / "unused") == mine
    assert not (tmp_path / "unused").exists()


def test_both_app_images_build_on_the_same_base() -> None:
    images = app_images("localhost/python-local:3.11")
    assert {i.base_arg for i in images.values()} == {"localhost/python-local:3.11"}
    assert images["godo-api"].target == "api" and images["godo"].target is None
