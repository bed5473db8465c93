"""The compose stack end to end with podman: `python -m deploy.smoke` (`make compose-smoke`).

1. builds the images (deploy/images.py; `--no-build` reuses them);
2. creates the stack from docker-compose.yml plus this machine's override
   (deploy/compose.host.yml: host networking on free ports) with podman-compose, under a
   project of its own and with fresh random secrets;
3. starts the services in dependency order, honouring every `depends_on` condition, and waits
   until each healthcheck passes. podman runs healthchecks from systemd timers, and neither
   this machine (no systemd) nor podman-compose on podman < 4.6 (it ignores `service_healthy`)
   would, so this script runs each check itself (`podman healthcheck run`) until it passes,
   within the check's start period plus retries;
4. runs the pipeline in one-off containers of the pipelines' image (`compose run` of the
   dagster-daemon service, its environment and volumes): `godo demo --no-serve` on a small
   synthetic city (ingest from the local fakes, training, the champion gate in MLflow,
   publishing), then the `job` role's `publish_feed`, a Dagster job executed in the container
   and recorded in the Postgres-backed instance;
5. asks the `api` container for a JWT (`godo token`, signed with the stack's secret) for a
   user of the published run and GETs `/v1/feed` from the API on its host port: 200, the run
   the job published, items;
6. tears everything down with its volumes, also on failure or Ctrl-C (`--keep` leaves it up).

Prints seconds per phase and the image sizes; exits non-zero on the first failure, with the
logs of the service that failed. Too slow (minutes) and too privileged (root, podman) for the
test suite: this script is the check of the images and the compose files on a real engine.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from deploy.images import STAND_INS, app_images, ensure_images, image_sizes
from deploy.podman import ROOT, Podman, PodmanError, run_command

PROJECT = "godo-smoke"
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "deploy" / "compose.host.yml"]
# The host ports deploy/compose.host.yml gives the services (tests/repo/test_containers.py
# keeps the two in step).
PORTS = {
    "postgres": 55432,
    "redis": 56379,
    "mlflow": 55000,
    "api": 58000,
    "dagster-webserver": 53000,
}
# The pipelines' one-off containers run as this service: its image, environment and volumes.
PIPELINE_SERVICE = "dagster-daemon"
POLL_SECONDS = 2.0


class SmokeFailed(RuntimeError):
    """A phase failed; the message says which and why."""


@dataclass
class Report:
    """Seconds per phase and what was checked, printed at the end."""

    seconds: dict[str, float] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)

    def time(self, phase: str, started: float) -> None:
        self.seconds[phase] = time.perf_counter() - started
        log(f"{phase}: {self.seconds[phase]:.2f} s")


def log(message: str) -> None:
    print(f"smoke: {message}", file=sys.stderr, flush=True)


def compose_env(podman: Podman, *, upstream: bool) -> dict[str, str]:
    """What compose interpolates: fresh secrets, the local images, production settings."""
    env = dict(podman.env)
    images = app_images(None)
    env.update(
        POSTGRES_PASSWORD=secrets.token_hex(24),
        GODO_JWT_SECRET=secrets.token_hex(32),
        GODO_IMAGE=images["godo"].tag,
        GODO_API_IMAGE=images["godo-api"].tag,
        GODO_ENVIRONMENT="production",
        # The demo builds a synthetic city; production settings say there is none by default.
        GODO_SYNTHETIC_CITY="true",
    )
    if not upstream:
        env.update(
            GODO_POSTGRES_IMAGE=STAND_INS["postgres"].tag,
            GODO_REDIS_IMAGE=STAND_INS["redis"].tag,
        )
    return env


class Stack:
    """The compose project: podman-compose for create/run/down, podman for the rest."""

    def __init__(self, podman: Podman, env: Mapping[str, str]) -> None:
        self.podman = podman
        self.env = env
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        self.compose = [sys.executable, "-m", "podman_compose", "-p", PROJECT, *files]
        self.services: dict[str, Any] = {}
        self.containers: dict[str, str] = {}

    def compose_run(
        self, args: list[str], *, capture: bool = True, timeout: float | None = None
    ) -> str:
        result = run_command([*self.compose, *args], self.env, capture, True, timeout)
        return result.stdout or ""

    def create(self) -> None:
        """Resolve the merged files, then create volumes and containers without starting any."""
        self.services = yaml.safe_load(self.compose_run(["config"]))["services"]
        # --no-deps: no podman `--requires` links, which would make `podman start` of the api
        # fail once the one-off `migrate` it depends on has exited. This script orders starts.
        self.compose_run(["up", "--no-start", "--no-build", "--no-deps"])
        listing = self.podman.run(
            [
                "ps",
                "--all",
                "--format",
                "json",
                "--filter",
                f"label=io.podman.compose.project={PROJECT}",
            ]
        )
        for container in json.loads(listing.stdout or "[]"):
            service = container["Labels"]["com.docker.compose.service"]
            self.containers[service] = container["Names"][0]
        missing = set(self.services) - set(self.containers)
        if missing:
            raise SmokeFailed(f"compose created no container for {sorted(missing)}")

    def start(self) -> None:
        """Start every service once its dependencies meet their conditions."""
        for name in start_order(self.services):
            for dependency, condition in dependencies(self.services[name]).items():
                if condition == "service_healthy":
                    self.wait_healthy(dependency)
                elif condition == "service_completed_successfully":
                    self.wait_completed(dependency)
            log(f"starting {name}")
            self.podman.run(["start", self.containers[name]])

    def has_healthcheck(self, name: str) -> bool:
        check = self.services[name].get("healthcheck") or {}
        return bool(check.get("test")) and not check.get("disable")

    def wait_healthy(self, name: str) -> None:
        """Run the container's healthcheck until it passes, within its start period plus
        retries (two minutes at least: this machine is slow and shared)."""
        check = self.services[name]["healthcheck"]
        budget = duration(check.get("start_period", "0s")) + duration(
            check.get("interval", "30s")
        ) * int(check.get("retries", 3))
        deadline = time.monotonic() + max(budget, 120.0)
        container = self.containers[name]
        while True:
            state = self.state(name)
            if state != "running":
                raise SmokeFailed(f"{name} is {state}, not running, before it was healthy")
            result = self.podman.run(["healthcheck", "run", container], check=False)
            if result.returncode == 0:
                log(f"{name} is healthy")
                return
            if time.monotonic() > deadline:
                raise SmokeFailed(f"{name} is not healthy after {budget:.0f} s: {result.stdout}")
            time.sleep(POLL_SECONDS)

    def wait_completed(self, name: str) -> None:
        code = self.podman.run(["wait", self.containers[name]]).stdout.strip()
        if code != "0":
            raise SmokeFailed(f"{name} exited {code}")
        log(f"{name} completed")

    def state(self, name: str) -> str:
        result = self.podman.run(
            ["inspect", "--format", "{{.State.Status}}", self.containers[name]], check=False
        )
        return result.stdout.strip() or "missing"

    def exec(self, name: str, argv: list[str]) -> str:
        return self.podman.run(["exec", self.containers[name], *argv]).stdout.strip()

    def pipeline(self, argv: list[str]) -> None:
        """A one-off container of the pipelines' service, output streamed, removed after."""
        self.compose_run(["run", "--rm", "--no-deps", "-T", PIPELINE_SERVICE, *argv], capture=False)

    def logs(self, tail: int = 40) -> None:
        for name, container in self.containers.items():
            result = self.podman.run(["logs", "--tail", str(tail), container], check=False)
            print(f"----- {name} ({self.state(name)}) -----", file=sys.stderr)
            print((result.stdout or "") + (result.stderr or ""), file=sys.stderr)

    def down(self) -> None:
        try:
            self.compose_run(["down", "--volumes", "--timeout", "10"], timeout=300)
        except (PodmanError, OSError) as error:
            log(f"teardown failed, clean up by hand (podman ps -a, podman volume ls): {error}")


def dependencies(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `depends_on` as {service: condition}, in either of compose's forms."""
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in depends_on.items()
    }


def start_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Service names so that each comes after everything it depends on."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise SmokeFailed(f"depends_on cycle: {' -> '.join((*path, name))}")
        if name not in order:
            for dependency in dependencies(services[name]):
                visit(dependency, (*path, name))
            order.append(name)

    for name in sorted(services):
        visit(name, ())
    return order


def duration(value: str | int | float) -> float:
    """Compose durations (`30s`, `1m30s`, `500ms`) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    text = value.strip()
    i = 0
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            number += text[i]
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else "us" if text.startswith("us", i) else text[i]
        if unit not in units or not number:
            raise ValueError(f"not a compose duration: {value!r}")
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"not a compose duration (no unit): {value!r}")
    return total


def ports_free() -> None:
    for name, port in PORTS.items():
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SmokeFailed(f"port {port} ({name}) is in use: stop what listens there")


def feed_check(stack: Stack, report: Report) -> None:
    """A JWT from the api container for a user of the newest run, then GET /v1/feed."""
    newest = stack.exec(
        "postgres",
        [
            "psql", "--username=godo", "--dbname=godo", "--no-align", "--tuples-only", "-c",
            "SELECT run.id || ' ' || min(rec.user_id) FROM recommendation_runs AS run "
            "JOIN recommendations AS rec ON rec.run_id = run.id "
            "WHERE run.status = 'published' AND run.experiment IS NULL "
            "GROUP BY run.id, run.published_at ORDER BY run.published_at DESC LIMIT 1",
        ],
    )  # fmt: skip
    if not newest:
        raise SmokeFailed("no published run with recommendations in Postgres")
    run_id, user_id = newest.split()
    token = stack.exec("api", ["godo", "token", user_id])
    port = PORTS["api"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/feed?limit=5", headers={"Authorization": f"Bearer {token}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        status, body = response.status, json.loads(response.read())
    report.time("feed request", started)
    items = body.get("items") or []
    if status != 200 or not items or body.get("run_id") != run_id or body.get("cold_start"):
        raise SmokeFailed(f"unexpected feed: {status} {json.dumps(body)[:500]}")
    report.facts["feed"] = (
        f"200, user {user_id}, run {run_id} (source {body['source']}), {len(items)} items, "
        f"first {items[0].get('event_id')!r} ({items[0].get('reason')!r})"
    )
    log(f"feed: {report.facts['feed']}")


def run(args: argparse.Namespace) -> Report:
    podman = Podman.here()
    report = Report()
    if not args.no_build:
        started = time.perf_counter()
        for step, seconds in ensure_images(podman, upstream=args.upstream).items():
            report.seconds[f"build {step}"] = seconds
        report.time("build (all)", started)
    env = compose_env(podman, upstream=args.upstream)
    stack = Stack(podman, env)
    stack.down()  # what an interrupted earlier run may have left
    ports_free()
    try:
        started = time.perf_counter()
        stack.create()
        report.time("create containers", started)
        started = time.perf_counter()
        stack.start()
        for name in start_order(stack.services):
            if name != "migrate" and stack.has_healthcheck(name):
                stack.wait_healthy(name)
        report.time("stack start (until every healthcheck passed)", started)
        started = time.perf_counter()
        stack.pipeline(
            [
                "godo", "demo", "--no-serve", "--ab-users", "0",
                "--users", str(args.users), "--events", str(args.events),
                "--venues", str(args.venues),
            ]
        )  # fmt: skip
        report.time("pipeline: godo demo in a job container", started)
        started = time.perf_counter()
        stack.pipeline(["job", "publish_feed"])
        report.time("pipeline: job publish_feed", started)
        feed_check(stack, report)
    except BaseException:
        stack.logs()
        raise
    finally:
        if args.keep:
            log(f"--keep: the stack stays up (`{' '.join(stack.compose[1:])} down -v` ends it)")
        else:
            started = time.perf_counter()
            stack.down()
            report.time("teardown", started)
    tags = [image.tag for image in app_images(None).values()]
    tags += [] if args.upstream else [s.tag for s in STAND_INS.values()]
    for tag, size in image_sizes(podman, tags).items():
        report.facts[f"size {tag}"] = f"{size / 1e6:.0f} MB"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.smoke", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--no-build", action="store_true", help="use the images as they are")
    parser.add_argument("--upstream", action="store_true", help="upstream bases, no stand-ins")
    parser.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--venues", type=int, default=60)
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except (SmokeFailed, PodmanError) as failure:
        log(f"FAILED: {failure}")
        return 1
    print("\ncompose smoke: passed")
    for phase, seconds in report.seconds.items():
        print(f"  {phase:<48} {seconds:8.2f} s")
    for name, fact in report.facts.items():
        print(f"  {name:<48} {fact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
