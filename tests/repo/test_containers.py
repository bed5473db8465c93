"""The image, its entrypoint and the compose stack, checked without a Docker engine.

Nothing here builds or starts a container (CI's `docker build` does the former). Instead:
- the Dockerfile is parsed (dockerfile-parse) and its invariants asserted: two stages on one
  pinned base, `uv sync --frozen`, a non-root user, a HEALTHCHECK, every COPY source present in
  the repository and let through by .dockerignore;
- docker/entrypoint.sh is run with bash: its dry run (GODO_ENTRYPOINT_DRY_RUN=1) prints the
  command each role would exec, a real run proves it execs, and the healthcheck role is pointed
  at a local HTTP server answering 200, 503 or nothing;
- docker-compose.yml is loaded with PyYAML, interpolated the way compose does, and checked:
  healthchecks, depends_on conditions, pinned images, published ports, no secret written in the
  file, and every service's command dry-run through the entrypoint with the environment compose
  would give it.
The structural checks return lists of problems, so the tests at the bottom can hand them broken
copies and prove they notice.
"""

from __future__ import annotations

import copy
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DEV_PY = ROOT / "dev.py"

Doc = dict[str, Any]

IMAGE_APP_DIR = "/app"
IMAGE_ENTRYPOINT = f"{IMAGE_APP_DIR}/docker/entrypoint.sh"
ONE_OFF = "migrate"
GODO_SERVICES = {"mlflow", "migrate", "api", "dagster-webserver", "dagster-daemon"}
ALL_SERVICES = GODO_SERVICES | {"postgres", "redis"}
# What the compose file's header, the Dockerfile's EXPOSE and the entrypoint's defaults promise.
PUBLISHED_PORTS = {"api": 8000, "dagster-webserver": 3000, "mlflow": 5000}
# Values compose would refuse to start without; any stand-in works for the dry runs.
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD": "s3cr3t-pw-7c1d",
    "GODO_JWT_SECRET": "Vq3nL8xR2mZ7wK4pT9sB6yH1cF5gJ0dA_eU-oN3iQ8r",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|DSN")
VERSION_TAG = re.compile(r"^\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$")
PYTHON_BASE = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?$")


# --- helpers ---------------------------------------------------------------------------------


def dockerfile(text: str | None = None) -> DockerfileParser:
    parser = DockerfileParser(fileobj=io.BytesIO((text or DOCKERFILE.read_text()).encode()))
    return parser


def stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    """Instructions per build stage (comments dropped), in order."""
    result: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if result and instruction["instruction"] != "COMMENT":
            result[-1].append(instruction)
    return result


def values(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def copy_sources(value: str) -> list[str]:
    """Source paths of a COPY from the build context (flags and destination dropped)."""
    parts = [p for p in value.split() if not p.startswith("--")]
    return parts[:-1]


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its parents, decides.

    `*` stays within one path segment, `**` crosses them, `!` re-includes. Enough of the
    syntax for the patterns this repository uses; an unsupported one fails loudly below.
    """
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        assert "[" not in pattern.replace("[cod]", ""), f"unsupported pattern {raw!r}"
        regex = (
            re.escape(pattern)
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
            .replace(r"\[cod\]", "[cod]")
        )
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def executable(name: str) -> str:
    """A dev tool from this interpreter's environment, else PATH; missing is a failure (a
    skipped validation would look like a pass)."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    assert found, f"{name} is not installed: run `uv sync` (it is a dev dependency)"
    return found


def compose_doc() -> Doc:
    doc: Doc = yaml.safe_load(COMPOSE.read_text())
    return doc


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`; a missing required one raises."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    return _VARIABLE.sub(replace, value)


def service_env(service: Doc, shell_env: Mapping[str, str]) -> dict[str, str]:
    """The environment compose gives the container: keys without a value pass through from the
    shell only when set there."""
    result: dict[str, str] = {}
    for name, value in (service.get("environment") or {}).items():
        if value is None:
            if name in shell_env:
                result[name] = shell_env[name]
        else:
            result[name] = interpolate(str(value), shell_env)
    return result


def run_entrypoint(
    args: list[str], env: Mapping[str, str] | None = None, *, dry_run: bool = True
) -> subprocess.CompletedProcess[str]:
    # A clean environment, so a DATABASE_URL in the developer's shell cannot make a test pass.
    full_env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    full_env.update(env or {})
    if dry_run:
        full_env["GODO_ENTRYPOINT_DRY_RUN"] = "1"
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def dry_run(args: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The argv the entrypoint would exec (it prints one argument per line)."""
    result = run_entrypoint(args, env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# Enough environment for every role's own checks; values are placeholders.
ROLE_ENV = {
    "DATABASE_URL": "postgresql://godo:pw-3f9a@postgres:5432/godo",
    "REDIS_URL": "redis://redis:6379/0",
    "DAGSTER_HOME": "/opt/dagster",
    "DAGSTER_POSTGRES_URL": "postgresql+psycopg2://godo:pw-3f9a@postgres:5432/dagster",
    "MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg://godo:pw-3f9a@postgres:5432/mlflow",
}


# --- structural checks -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One build stage: its name, what it starts FROM, and its instructions after FROM."""

    name: str
    base: str
    instructions: list[dict[str, Any]]

    def values(self, instruction: str) -> list[str]:
        return values(self.instructions, instruction)


def named_stages(parser: DockerfileParser) -> dict[str, Stage]:
    """Stages by name (an unnamed stage is called by its index, as `--from=N` would)."""
    result: dict[str, Stage] = {}
    for n, stage in enumerate(stages(parser)):
        words = stage[0]["value"].split()
        name = words[2] if len(words) == 3 and words[1].lower() == "as" else str(n)
        result[name] = Stage(name, words[0], stage[1:])
    return result


def global_args(parser: DockerfileParser) -> dict[str, str | None]:
    """ARGs declared before the first FROM (the only ones a FROM line can use)."""
    result: dict[str, str | None] = {}
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            break
        if instruction["instruction"] == "ARG":
            name, sep, default = instruction["value"].partition("=")
            result[name.strip()] = default.strip() if sep else None
    return result


BASE_ARG = "BASE_IMAGE"
BASE_REFERENCES = {f"${{{BASE_ARG}}}", f"${BASE_ARG}"}
# The two images: the API's (`--target api`) and the default target, every other role's.
FINAL_STAGES = ("api", "runtime")


def root_of(stage: Stage, all_stages: Mapping[str, Stage]) -> str:
    """The image a stage ultimately starts from, following FROMs of earlier stages."""
    while stage.base in all_stages:
        stage = all_stages[stage.base]
    return stage.base


def builder_of(stage: Stage) -> str | None:
    """The stage a final stage copies its virtualenv from."""
    for value in stage.values("COPY"):
        match = re.match(r"--from=(\S+) /opt/venv /opt/venv$", value)
        if match:
            return match.group(1)
    return None


def dockerfile_problems(text: str) -> list[str]:
    problems: list[str] = []
    parser = dockerfile(text)
    built = named_stages(parser)
    if len(built) < 2:
        return ["not multi-stage: the runtime image would carry the build tools"]
    if list(built)[-1] != FINAL_STAGES[-1]:
        problems.append(f"the default target (the last stage) is not {FINAL_STAGES[-1]!r}")

    # The base is a build argument with a pinned upstream default, used by every stage that
    # does not start from another stage or from scratch.
    arguments = global_args(parser)
    default = arguments.get(BASE_ARG)
    if BASE_ARG not in arguments:
        problems.append(f"no `ARG {BASE_ARG}=...` before the first FROM")
    elif not default or not PYTHON_BASE.match(default):
        problems.append(
            f"{BASE_ARG} default {default!r} is not a slim Python 3.11 pinned to a patch release"
        )
    for stage in built.values():
        root = root_of(stage, built)
        if root != "scratch" and root not in BASE_REFERENCES:
            # The venv's python symlinks point into the base: builders and runtimes share it.
            problems.append(f"stage {stage.name} starts from {root!r}, not ${{{BASE_ARG}}}")

    syncs = [(s.name, v) for s in built.values() for v in s.values("RUN") if "uv sync" in v]
    if not syncs:
        problems.append("no stage runs `uv sync`")
    for name, command in syncs:
        words = command.split()
        if "--frozen" not in words:
            problems.append(f"`uv sync` without --frozen in {name}: {command!r}")
        if not {"--no-dev", "--no-default-groups"} & set(words) or "dev" in _groups(words):
            problems.append(f"`uv sync` installs the dev group in {name}: {command!r}")
    uv_pins = re.findall(
        r"\buv==(\S+)", " ".join(v for s in built.values() for v in s.values("RUN"))
    )
    dev_py_pin = re.search(r'^UV_VERSION = "([^"]+)"', DEV_PY.read_text(), re.MULTILINE)
    if not uv_pins or (dev_py_pin and set(uv_pins) != {dev_py_pin.group(1)}):
        problems.append(f"uv is not pinned to dev.py's version: {uv_pins}")

    for stage in built.values():
        for run in stage.values("RUN"):
            if "apt-get install" in run and "rm -rf /var/lib/apt/lists" not in run:
                problems.append(f"apt lists are left in stage {stage.name}")

    for name in FINAL_STAGES:
        if name not in built:
            problems.append(f"no {name!r} stage")
            continue
        problems.extend(f"{name}: {p}" for p in final_stage_problems(built[name]))

    api_builder = built.get(builder_of(built["api"]) or "") if "api" in built else None
    if api_builder is not None:
        for command in api_builder.values("RUN"):
            if "uv sync" in command and _groups(command.split()):
                problems.append(f"the API's venv installs groups {_groups(command.split())}")
    runtime = built.get("runtime")
    if runtime is not None:
        full = built.get(builder_of(runtime) or "")
        for command in full.values("RUN") if full else []:
            if "uv sync" in command and "pipelines" not in _groups(command.split()):
                problems.append(f"the runtime image's venv lacks the pipelines group: {command!r}")
        if "DAGSTER_HOME=/opt/dagster" not in " ".join(runtime.values("ENV")):
            problems.append("DAGSTER_HOME is not /opt/dagster")
        if "dagster.yaml /opt/dagster/dagster.yaml" not in runtime.values("COPY"):
            problems.append("dagster.yaml is not copied into DAGSTER_HOME")

    source = built.get("source")
    copies = source.values("COPY") if source else []
    for config in ("workspace.yaml", "alembic.ini", "dagster.yaml"):
        # dagster.yaml too: `godo demo` copies it from the app directory into its DAGSTER_HOME.
        if not any(config in copy_sources(c) for c in copies):
            problems.append(f"{config} is not in the app directory")
    if not any(re.search(r"--chmod=0?755 docker/entrypoint\.sh", c) for c in copies):
        problems.append("docker/entrypoint.sh is not copied as an executable")
    return problems


def _groups(words: list[str]) -> set[str]:
    """Dependency groups a `uv sync` command line adds (`--group NAME`)."""
    return {words[n + 1] for n, word in enumerate(words[:-1]) if word == "--group"}


def final_stage_problems(stage: Stage) -> list[str]:
    """What an image people run must hold to: no build tools, a non-root user, the entrypoint,
    a healthcheck, the API as the default role, only the venv from its builder."""
    problems: list[str] = []
    runs = " ".join(stage.values("RUN"))
    for tool in ("uv ", "pip install", "build-essential", "gcc"):
        if tool in runs:
            problems.append(f"installs build tooling ({tool.strip()!r})")
    if builder_of(stage) is None:
        problems.append("copies no /opt/venv from a builder")
    for value in stage.values("COPY"):
        origin = re.match(r"--from=(\S+)", value)
        if origin and origin.group(1) != "source" and copy_sources(value) != ["/opt/venv"]:
            problems.append(f"copies more than the venv from a builder: {value}")

    users = stage.values("USER")
    if not users:
        problems.append("runs as root (no USER)")
    else:
        user = users[-1].split(":")[0]
        if user in ("root", "0", ""):
            problems.append(f"runs as {users[-1]!r}")
        last_user = max(n for n, i in enumerate(stage.instructions) if i["instruction"] == "USER")
        if "RUN" in [i["instruction"] for i in stage.instructions[last_user + 1 :]]:
            problems.append("a RUN after USER would run as the app user at build time")

    healthchecks = stage.values("HEALTHCHECK")
    if not healthchecks or healthchecks[-1].strip().upper() == "NONE":
        problems.append("no HEALTHCHECK")
    elif f'"{IMAGE_ENTRYPOINT}", "healthcheck"' not in healthchecks[-1]:
        problems.append(f"the HEALTHCHECK does not use the entrypoint's check: {healthchecks[-1]}")

    entrypoints = stage.values("ENTRYPOINT")
    if not entrypoints or IMAGE_ENTRYPOINT not in entrypoints[-1]:
        problems.append(f"ENTRYPOINT is not {IMAGE_ENTRYPOINT}")
    if stage.values("CMD")[-1:] != ['["api"]']:
        problems.append("the default command is not the api role")
    if not any(v.startswith("--from=source ") for v in stage.values("COPY")):
        problems.append("does not copy the application source")
    return problems


def compose_problems(doc: Doc) -> list[str]:
    problems: list[str] = []
    services: dict[str, Doc] = doc.get("services", {})
    if set(services) != ALL_SERVICES:
        problems.append(f"services are {sorted(services)}, expected {sorted(ALL_SERVICES)}")
    declared_volumes = set(doc.get("volumes") or {})

    for name, service in services.items():
        healthcheck = service.get("healthcheck")
        if name == ONE_OFF:
            if not (healthcheck and healthcheck.get("disable") is True):
                problems.append(f"{name}: a one-off should disable the image's healthcheck")
            if service.get("restart") != "no":
                problems.append(f"{name}: a one-off must not restart")
        elif not healthcheck or healthcheck.get("disable") or not healthcheck.get("test"):
            problems.append(f"{name}: no healthcheck")

        depends_on = service.get("depends_on") or {}
        if not isinstance(depends_on, dict):
            problems.append(f"{name}: depends_on is a list, without conditions")
            depends_on = {}
        for target, spec in depends_on.items():
            condition = (spec or {}).get("condition")
            wanted = "service_completed_successfully" if target == ONE_OFF else "service_healthy"
            if condition != wanted:
                problems.append(f"{name}: depends on {target} with {condition!r}, not {wanted}")

        image = interpolate(str(service.get("image", "")), {})
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag:
            problems.append(f"{name}: image {image!r} has no tag")
        elif tag == "latest":
            problems.append(f"{name}: image {image!r} is not pinned")
        elif "build" not in service and not VERSION_TAG.match(tag):
            problems.append(f"{name}: image {image!r} is not pinned to a version")

        ports = service.get("ports") or []
        expected_port = PUBLISHED_PORTS.get(name)
        published = [str(p) for p in ports]
        wanted_ports = (
            [f"127.0.0.1:{expected_port}:{expected_port}"] if expected_port is not None else []
        )
        if published != wanted_ports:
            problems.append(f"{name}: publishes {published}, expected {wanted_ports}")

        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")) and source not in declared_volumes:
                problems.append(f"{name}: volume {source!r} is not declared")
            if source.startswith(".") and not (ROOT / source).exists():
                problems.append(f"{name}: bind-mounted {source} does not exist")

        for key, value in (service.get("environment") or {}).items():
            problems.extend(f"{name}: {p}" for p in secret_problems(str(key), value))
    return problems


_REQUIRED_VARIABLE = re.compile(r"\$\{[A-Z0-9_]+:\?[^}]*\}")


def secret_problems(name: str, value: object) -> list[str]:
    """A secret may only reach the container from outside the file: pass-through (no value)
    or a required `${VAR:?...}`; a password inside a URL likewise."""
    if value is None:
        return []
    text = str(value)
    problems = []
    if SECRET_NAME.search(name) and not _REQUIRED_VARIABLE.fullmatch(text):
        problems.append(f"{name} is written in the file")
    # The error message of a required variable may hold spaces or '@'; mask it first.
    masked = _REQUIRED_VARIABLE.sub("<required>", text)
    for password in re.findall(r"://[^:/@\s]+:([^@\s]*)@", masked):
        if password != "<required>":
            problems.append(f"{name} has a password written in the file")
    if re.search(r"\$\{[A-Z0-9_]*(PASSWORD|SECRET|TOKEN)[A-Z0-9_]*:?-", text):
        problems.append(f"{name} gives a secret a default")
    return problems


# --- the Dockerfile --------------------------------------------------------------------------


def test_dockerfile_has_the_intended_shape() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    patterns = dockerignore_patterns()
    for stage in stages(dockerfile()):
        for value in values(stage, "COPY"):
            if value.startswith("--from="):
                continue
            for source in copy_sources(value):
                path = ROOT / source
                assert path.exists(), f"COPY {source}: not in the repository"
                files = (
                    [path]
                    if path.is_file()
                    else [
                        p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                    ]
                )
                assert files, f"COPY {source}: nothing to copy"
                for file in files:
                    relative = file.relative_to(ROOT).as_posix()
                    assert not dockerignore_excludes(relative, patterns), (
                        f"COPY {source}: .dockerignore keeps {relative} out of the context"
                    )


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".godo/warehouse.duckdb",
        ".venv/bin/python",
        ".env",
        "tests/repo/test_containers.py",
        "notebooks/ranking.py",
        "godo/__pycache__/settings.cpython-311.pyc",
        "store/.env",
        ".mypy_cache/3.11/godo/settings.data.json",
    ],
)
def test_dockerignore_keeps_local_state_out_of_the_context(path: str) -> None:
    assert dockerignore_excludes(path, dockerignore_patterns())


def test_volume_mount_points_are_created_for_the_app_user() -> None:
    """A named volume takes its owner from the image's directory; one the image does not create
    (and chown) would be root's, and the non-root processes could not write to it."""
    built = named_stages(dockerfile())
    setup = " ".join(v for v in built["runtime-base"].values("RUN") if "useradd" in v)
    chowned = re.search(r"chown -R godo:godo ([^&]+)", setup)
    assert chowned, "the runtime stages do not chown the data directories"
    writable = chowned.group(1).split()
    assert re.search(r"useradd [^&]*--uid 10001", setup)
    for name in FINAL_STAGES:
        assert built[name].base == "runtime-base", f"{name} does not start from runtime-base"
        assert built[name].values("USER") == ["10001:10001"], name
    for name in GODO_SERVICES:
        for volume in compose_doc()["services"][name].get("volumes") or []:
            target = str(volume).split(":")[1]
            assert any(target == w or target.startswith(f"{w}/") for w in writable), (
                f"{name} mounts {target}, which the image does not create for the app user"
            )


# --- the entrypoint --------------------------------------------------------------------------


def test_entrypoint_parses_and_is_executable() -> None:
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True, timeout=30)
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().splitlines()[0] == "#!/usr/bin/env bash"


APP = str(ROOT)  # the entrypoint resolves the app directory from its own location
ROLE_COMMANDS: list[tuple[list[str], list[str]]] = [
    (
        [],
        "uvicorn serving.app:create_app --factory --host 0.0.0.0 --port 8000 "
        "--proxy-headers --forwarded-allow-ips 127.0.0.1".split(),
    ),
    (
        ["api", "--workers", "2"],
        "uvicorn serving.app:create_app --factory --host 0.0.0.0 --port 8000 "
        "--proxy-headers --forwarded-allow-ips 127.0.0.1 --workers 2".split(),
    ),
    (
        ["--workers", "2"],
        "uvicorn serving.app:create_app --factory --host 0.0.0.0 --port 8000 "
        "--proxy-headers --forwarded-allow-ips 127.0.0.1 --workers 2".split(),
    ),
    (
        ["dagster-webserver"],
        f"dagster-webserver -w {APP}/workspace.yaml -h 0.0.0.0 -p 3000".split(),
    ),
    (["dagster-daemon"], f"dagster-daemon run -w {APP}/workspace.yaml".split()),
    (
        ["job", "publish_feed"],
        f"dagster job execute -m pipelines.definitions -d {APP} -j publish_feed".split(),
    ),
    (
        ["job", "ingest_metro", "--tags", '{"dagster/partition": "oakland"}'],
        [
            *f"dagster job execute -m pipelines.definitions -d {APP} -j ingest_metro".split(),
            "--tags",
            '{"dagster/partition": "oakland"}',
        ],
    ),
    (["migrate"], f"alembic -c {APP}/alembic.ini upgrade head".split()),
    (["migrate", "0005"], f"alembic -c {APP}/alembic.ini upgrade 0005".split()),
    (
        ["mlflow"],
        "mlflow server --host 0.0.0.0 --port 5000 --serve-artifacts "
        "--artifacts-destination /mlartifacts".split(),
    ),
    (["godo", "token", "114"], ["godo", "token", "114"]),
    (["bash", "-c", "echo a b"], ["bash", "-c", "echo a b"]),
]


@pytest.mark.parametrize(
    ("args", "expected"),
    ROLE_COMMANDS,
    ids=[" ".join(args) or "(none)" for args, _ in ROLE_COMMANDS],
)
def test_each_role_dispatches_to_its_command(args: list[str], expected: list[str]) -> None:
    assert dry_run(args, ROLE_ENV) == expected


def test_ports_and_proxy_trust_come_from_the_environment() -> None:
    env = {**ROLE_ENV, "GODO_API_PORT": "9000", "FORWARDED_ALLOW_IPS": "10.0.0.0/8"}
    argv = dry_run(["api"], env)
    assert argv[argv.index("--port") + 1] == "9000"
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "10.0.0.0/8"
    env = {**ROLE_ENV, "DAGSTER_WEBSERVER_PORT": "3300", "MLFLOW_PORT": "5500"}
    assert dry_run(["dagster-webserver"], env)[-1] == "3300"
    assert dry_run(["mlflow"], env)[5] == "5500"


def test_servers_bind_where_godo_bind_host_says() -> None:
    """0.0.0.0 in a container's own network; loopback when it shares the host's."""
    for env, host in (
        (ROLE_ENV, "0.0.0.0"),
        ({**ROLE_ENV, "GODO_BIND_HOST": "127.0.0.1"}, "127.0.0.1"),
    ):
        assert dry_run(["api"], env)[dry_run(["api"], env).index("--host") + 1] == host
        webserver = dry_run(["dagster-webserver"], env)
        assert webserver[webserver.index("-h") + 1] == host
        mlflow = dry_run(["mlflow"], env)
        assert mlflow[mlflow.index("--host") + 1] == host


def test_no_url_or_secret_reaches_a_command_line() -> None:
    """argv is visible to `ps` and printed by a dry run: programs read their URLs from the
    environment instead."""
    for args, _ in ROLE_COMMANDS:
        output = " ".join(dry_run(args, ROLE_ENV))
        assert "pw-3f9a" not in output, f"{args}: a URL with its password is on the command line"


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["api"], "DATABASE_URL"),
        (["api"], "REDIS_URL"),
        (["migrate"], "DATABASE_URL"),
        (["dagster-daemon"], "DAGSTER_POSTGRES_URL"),
        (["dagster-webserver"], "DAGSTER_HOME"),
        (["job", "publish_feed"], "DAGSTER_POSTGRES_URL"),
        (["mlflow"], "MLFLOW_BACKEND_STORE_URI"),
    ],
)
def test_a_role_refuses_to_start_without_its_settings(args: list[str], missing: str) -> None:
    env = {k: v for k, v in ROLE_ENV.items() if k != missing}
    result = run_entrypoint(args, env)
    assert result.returncode == 64
    assert missing in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["job"], ["migrate", "head", "extra"], ["healthcheck", "a", "b"]])
def test_bad_usage_exits_64(args: list[str]) -> None:
    result = run_entrypoint(args, ROLE_ENV)
    assert result.returncode == 64
    assert "usage" in result.stderr


def test_help_lists_every_role() -> None:
    result = run_entrypoint(["help"])
    assert result.returncode == 0
    for role in ("api", "dagster-webserver", "dagster-daemon", "job", "migrate", "mlflow"):
        assert f"\n  {role} " in result.stdout


def test_the_entrypoint_execs_its_command() -> None:
    """Signals from `docker stop` reach the server only if it replaced the shell: the command
    must run as the entrypoint's own process, not a child of it."""
    process = subprocess.Popen(
        ["bash", str(ENTRYPOINT), "bash", "-c", "echo $$"],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert int(stdout.strip()) == process.pid


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local server: /ok answers 200, /degraded 200, /down 503 (what /health does)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = {"/ok": 200, "/degraded": 200, "/down": 503}.get(self.path, 404)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_role_passes_on_2xx_and_fails_otherwise(http_server: str) -> None:
    def check(url: str) -> int:
        return run_entrypoint(["healthcheck", url], dry_run=False).returncode

    assert check(f"{http_server}/ok") == 0
    assert check(f"{http_server}/degraded") == 0
    assert check(f"{http_server}/down") == 1
    assert check(f"{http_server}/missing") == 1
    # Nothing listening: the port of a server that was just closed.
    with http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as s:
        closed = s.server_address[1]
    assert check(f"http://127.0.0.1:{closed}/health") == 1


def test_healthcheck_defaults_to_the_api_health_endpoint() -> None:
    argv = dry_run(["healthcheck"])
    assert argv[0] == "python"
    assert argv[-2:] == ["http://127.0.0.1:8000/health", "4"]
    assert dry_run(["healthcheck"], {"GODO_API_PORT": "9000"})[-2] == (
        "http://127.0.0.1:9000/health"
    )


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_file_follows_the_compose_spec() -> None:
    """The Compose Specification's schema (vendored in check-jsonschema, so offline) rejects a
    misspelt key such as `condtion:` that compose would refuse to load."""
    result = subprocess.run(
        [executable("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_the_intended_shape() -> None:
    assert compose_problems(compose_doc()) == []


def test_compose_refuses_to_start_without_the_secrets() -> None:
    services = compose_doc()["services"]
    for name in ("postgres", "api", "dagster-daemon", "mlflow", "migrate"):
        with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
            service_env(services[name], {})
    with pytest.raises(KeyError, match="GODO_JWT_SECRET"):
        service_env(services["api"], {"POSTGRES_PASSWORD": "x"})


@pytest.mark.parametrize("name", sorted(GODO_SERVICES))
def test_each_service_command_starts_its_role(name: str) -> None:
    """The command compose runs, with the environment compose gives it, passes the entrypoint's
    own checks: a role missing a variable it needs would fail here, not on `docker compose up`."""
    service = compose_doc()["services"][name]
    env = {**service_env(service, REQUIRED_SECRETS), "DAGSTER_HOME": "/opt/dagster"}
    argv = dry_run(list(service["command"]), env)
    expected_program = {
        "mlflow": "mlflow",
        "migrate": "alembic",
        "api": "uvicorn",
        "dagster-webserver": "dagster-webserver",
        "dagster-daemon": "dagster-daemon",
    }[name]
    assert argv[0] == expected_program
    if name in PUBLISHED_PORTS:
        assert argv[argv.index("--port" if "--port" in argv else "-p") + 1] == str(
            PUBLISHED_PORTS[name]
        )


def test_godo_services_run_their_image_and_probe_their_own_port() -> None:
    """The API runs the Dockerfile's `api` target, every other Godo service the default one."""
    services = compose_doc()["services"]
    built = named_stages(dockerfile())
    pipeline_images = {interpolate(services[n]["image"], {}) for n in GODO_SERVICES - {"api"}}
    assert len(pipeline_images) == 1
    assert interpolate(services["api"]["image"], {}) not in pipeline_images
    assert services["api"]["build"] == {"context": ".", "target": "api"}
    for name in GODO_SERVICES - {"api"}:
        assert services[name]["build"] == {"context": "."}, name  # the default target
    assert set(built["runtime"].values("EXPOSE")[0].split()) == {
        str(p) for p in PUBLISHED_PORTS.values()
    }
    assert built["api"].values("EXPOSE") == [str(PUBLISHED_PORTS["api"])]
    for name, port in PUBLISHED_PORTS.items():
        service = services[name]
        assert service["healthcheck"]["test"][:3] == ["CMD", IMAGE_ENTRYPOINT, "healthcheck"]
        assert f"127.0.0.1:{port}/" in service["healthcheck"]["test"][3]
    assert services["dagster-webserver"]["healthcheck"]["test"][3].endswith("/server_info")
    assert services["api"]["healthcheck"]["test"][3].endswith("/health")
    assert services["dagster-daemon"]["healthcheck"]["test"] == [
        "CMD",
        "dagster-daemon",
        "liveness-check",
    ]


def test_the_api_waits_for_migrations_and_runs_as_production() -> None:
    services = compose_doc()["services"]
    api = services["api"]
    assert api["depends_on"][ONE_OFF] == {"condition": "service_completed_successfully"}
    assert services["dagster-daemon"]["depends_on"][ONE_OFF] == {
        "condition": "service_completed_successfully"
    }
    env = service_env(api, REQUIRED_SECRETS)
    assert env["GODO_ENVIRONMENT"] == "production"
    assert env["GODO_JWT_SECRET"] == REQUIRED_SECRETS["GODO_JWT_SECRET"]


def test_every_database_a_url_names_is_created_by_postgres() -> None:
    """One Postgres hosts the app, Dagster and MLflow databases: each URL must name one that
    POSTGRES_DB or the mounted init script creates, on the postgres service."""
    services = compose_doc()["services"]
    postgres = services["postgres"]
    init_mounts = [
        str(v).split(":")[0]
        for v in postgres["volumes"]
        if "/docker-entrypoint-initdb.d/" in str(v)
    ]
    assert init_mounts
    created = {postgres["environment"]["POSTGRES_DB"]}
    for source in init_mounts:
        sql = (ROOT / source).read_text()
        created |= set(re.findall(r"^CREATE DATABASE (\w+);", sql, re.MULTILINE))
    user = postgres["environment"]["POSTGRES_USER"]
    seen = set()
    for name, service in services.items():
        for key, value in service_env(service, REQUIRED_SECRETS).items():
            match = re.match(r"postgresql(\+\w+)?://([^:]+):([^@]+)@([^:/]+):5432/(\w+)$", value)
            if match is None:
                continue
            _, url_user, password, host, database = match.groups()
            assert host == "postgres" and url_user == user, f"{name}.{key}"
            assert password == REQUIRED_SECRETS["POSTGRES_PASSWORD"], f"{name}.{key}"
            assert database in created, f"{name}.{key}: database {database} is never created"
            seen.add(database)
    assert seen == {"godo", "dagster", "mlflow"}


def test_pipelines_reach_dagster_storage_and_mlflow_the_way_that_works() -> None:
    services = compose_doc()["services"]
    for name in ("dagster-webserver", "dagster-daemon"):
        env = service_env(services[name], REQUIRED_SECRETS)
        # Plain postgresql:// resolves to psycopg 3 under SQLAlchemy 2.1, and dagster-postgres'
        # NOTIFY with a bound parameter then fails on every event: no run is ever recorded.
        assert env["DAGSTER_POSTGRES_URL"].startswith("postgresql+psycopg2://")
        assert env["GODO_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["GODO_MLFLOW_ARTIFACT_ROOT"] == "mlflow-artifacts:///"
        assert env["GODO_JWT_SECRET"]  # Settings refuses production without it, everywhere
    mlflow_env = service_env(services["mlflow"], REQUIRED_SECRETS)
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    # MLflow answers 403 to a Host header it does not allow; the pipelines send mlflow:5000.
    assert "mlflow:5000" in mlflow_env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


# --- the API's own image ----------------------------------------------------------------------

UV_LOCK = ROOT / "uv.lock"
# What the API image must not carry: the point of giving it an image of its own.
PIPELINE_ONLY = {"dagster", "dagster-webserver", "mlflow", "lightgbm", "duckdb", "scikit-learn"}
# The wheel's packages: the one list the Dockerfile's COPYs and `godo serve --reload` follow.
FIRST_PARTY = tuple(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
        "wheel"
    ]["packages"]
)
# The project's modules the API loads to start (the import graph as Python resolves it).
API_MODULES = """
import json, sys
from serving.app import create_app
create_app()
first_party = set(sys.argv[1:])
print(json.dumps(sorted(
    m.__file__ for name, m in list(sys.modules.items())
    if name.split(".")[0] in first_party and getattr(m, "__file__", None)
)))
"""


def imported_names(path: Path) -> set[str]:
    """Top-level names a module imports anywhere in it, lazy imports in functions included."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_closure(groups: tuple[str, ...] = ()) -> set[str]:
    """Every distribution uv.lock installs for the project's dependencies (plus `groups`),
    whatever the platform: what `uv sync --no-default-groups [--group G]` can put in a venv."""
    import tomllib

    packages = {p["name"]: p for p in tomllib.loads(UV_LOCK.read_text())["package"]}
    project = packages["godo"]
    wanted = list(project["dependencies"])
    for group in groups:
        wanted += project["dev-dependencies"][group]
    seen: set[str] = set()
    while wanted:
        dependency = wanted.pop()
        package = packages[dependency["name"]]
        for extra in dependency.get("extra", []):
            wanted += package.get("optional-dependencies", {}).get(extra, [])
        if dependency["name"] not in seen:
            seen.add(dependency["name"])
            wanted += package.get("dependencies", [])
    return {normalized(name) for name in seen}


def test_the_api_imports_only_the_projects_own_dependencies() -> None:
    """The API image installs `[project].dependencies` alone: every library the API's own
    modules import, at the top or lazily in a function, must come from them, not from the
    pipelines or embedded groups (their own imports are theirs: the lock closes over them)."""
    import importlib.metadata

    result = subprocess.run(
        [sys.executable, "-c", API_MODULES, *FIRST_PARTY],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert result.returncode == 0, result.stderr
    modules = [Path(f) for f in json.loads(result.stdout)]
    assert any(m.match("serving/routers/feed.py") for m in modules), "the probe is broken"
    owners = importlib.metadata.packages_distributions()
    allowed = project_closure()
    outside: dict[str, str] = {}
    for module in modules:
        for name in imported_names(module) - set(FIRST_PARTY) - sys.stdlib_module_names:
            distributions = {normalized(d) for d in owners.get(name, [name])}
            if not distributions & allowed:
                outside[name] = str(module.relative_to(ROOT))
    assert not outside, f"the API imports libraries the API image lacks: {outside}"
    assert not PIPELINE_ONLY & allowed, f"the API image would carry {PIPELINE_ONLY & allowed}"
    assert PIPELINE_ONLY <= project_closure(("pipelines",))


def test_base_images_can_be_replaced_through_the_environment() -> None:
    """A machine without registry access runs the same file on local builds."""
    services = compose_doc()["services"]
    variables = {
        "postgres": "GODO_POSTGRES_IMAGE",
        "redis": "GODO_REDIS_IMAGE",
        "api": "GODO_API_IMAGE",
        **dict.fromkeys(GODO_SERVICES - {"api"}, "GODO_IMAGE"),
    }
    for name, variable in variables.items():
        image = services[name]["image"]
        assert interpolate(image, {variable: "localhost/x:1"}) == "localhost/x:1", name
        assert interpolate(image, {}) != "localhost/x:1"


# --- deploy/compose.host.yml: the same stack on the host's network -----------------------------

HOST_OVERRIDE = ROOT / "deploy" / "compose.host.yml"


class _Reset:
    pass


@dataclass(frozen=True)
class _Override:
    value: Any


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML plus compose's `!reset` and `!override` tags."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
_ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: _Override(
        loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_object(node, deep=True)
    ),
)


def merge(base: Any, override: Any) -> Any:
    """podman-compose's merge of a second file: mappings merge, lists append, `!override`
    replaces and `!reset` removes."""
    if not isinstance(override, dict) or not isinstance(base, dict):
        if isinstance(base, list) and isinstance(override, list):
            return [*base, *override]
        return override.value if isinstance(override, _Override) else override
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, _Reset):
            merged.pop(key, None)
        elif key in ("command", "entrypoint") or key not in merged:
            merged[key] = value.value if isinstance(value, _Override) else value
        else:
            merged[key] = merge(merged[key], value)
    return merged


def host_services() -> dict[str, Doc]:
    override = yaml.load(HOST_OVERRIDE.read_text(), Loader=_ComposeLoader)  # noqa: S506
    merged: dict[str, Doc] = merge(compose_doc(), override)["services"]
    return merged


def test_the_host_override_moves_every_service_onto_free_loopback_ports() -> None:
    from deploy.smoke import PORTS

    services = host_services()
    assert set(services) == ALL_SERVICES
    urls: list[str] = []
    for name, service in services.items():
        assert service.get("network_mode") == "host", name
        assert not service.get("ports"), f"{name} publishes ports on the host network"
        env = service_env(service, REQUIRED_SECRETS)
        for key, value in env.items():
            assert not secret_problems(key, (service.get("environment") or {})[key]), key
            if "://" in value:
                urls.append(value)
        healthcheck = service.get("healthcheck") or {}
        if not healthcheck.get("disable"):
            test = healthcheck["test"]
            assert test[0] in ("CMD", "CMD-SHELL") and test.count(test[0]) == 1, (
                f"{name}: the healthcheck test was appended to, not replaced: {test}"
            )
    # No URL names a service (no bridge network resolves them) or the machine's own servers.
    for url in urls:
        if url.startswith("mlflow-artifacts:"):
            continue  # resolved through the tracking server's URL
        match = re.search(r"://(?:[^@/]*@)?([^:/]+):(\d+)", url)
        assert match, url
        host, port = match.group(1), int(match.group(2))
        assert host == "127.0.0.1" and port in PORTS.values(), url
    assert {5432, 6379, 8000, 3000, 5000}.isdisjoint(PORTS.values())

    def env(name: str) -> dict[str, str]:
        return service_env(services[name], REQUIRED_SECRETS)

    assert env("postgres")["PGPORT"] == str(PORTS["postgres"])
    assert "listen_addresses=127.0.0.1" in services["postgres"]["command"]
    redis_command = " ".join(services["redis"]["command"])
    assert f"--port {PORTS['redis']}" in redis_command and "--bind 127.0.0.1" in redis_command
    assert f"-p {PORTS['redis']} " in services["redis"]["healthcheck"]["test"][1]
    port_variables = {
        "api": "GODO_API_PORT",
        "mlflow": "MLFLOW_PORT",
        "dagster-webserver": "DAGSTER_WEBSERVER_PORT",
    }
    for name, variable in port_variables.items():
        assert env(name)[variable] == str(PORTS[name]), name
        assert env(name)["GODO_BIND_HOST"] == "127.0.0.1", name
        assert f"http://127.0.0.1:{PORTS[name]}/" in services[name]["healthcheck"]["test"][3]


@pytest.mark.parametrize("name", sorted(GODO_SERVICES))
def test_each_host_network_service_starts_its_role_on_its_port(name: str) -> None:
    from deploy.smoke import PORTS

    service = host_services()[name]
    env = {**service_env(service, REQUIRED_SECRETS), "DAGSTER_HOME": "/opt/dagster"}
    argv = dry_run(list(service["command"]), env)
    if name in PORTS:
        flag = "--port" if "--port" in argv else "-p"
        assert argv[argv.index(flag) + 1] == str(PORTS[name])
        assert "0.0.0.0" not in argv


# --- the checks notice what they are for -------------------------------------------------------


def broken_compose(path: list[str], value: object) -> Doc:
    doc = copy.deepcopy(compose_doc())
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["services", "redis", "image"], "redis:latest", "not pinned"),
        (["services", "redis", "image"], "redis", "no tag"),
        (["services", "postgres", "image"], "postgres:bookworm", "not pinned to a version"),
        (["services", "api", "image"], "godo", "no tag"),
        (["services", "redis", "healthcheck"], _DELETE, "redis: no healthcheck"),
        (["services", "api", "depends_on"], ["postgres", "redis"], "without conditions"),
        (
            ["services", "api", "depends_on", "migrate"],
            {"condition": "service_started"},
            "depends on migrate",
        ),
        (["services", "migrate", "healthcheck"], _DELETE, "disable the image's healthcheck"),
        (["services", "api", "ports"], ["8000:8000"], "api: publishes"),
        (["services", "redis", "ports"], ["127.0.0.1:6379:6379"], "redis: publishes"),
        (
            ["services", "api", "environment", "GODO_JWT_SECRET"],
            "change-me-0123456789-0123456789-0123",
            "GODO_JWT_SECRET is written in the file",
        ),
        (
            ["services", "api", "environment", "GODO_JWT_SECRET"],
            "${GODO_JWT_SECRET:-dev-secret}",
            "written in the file",
        ),
        (
            ["services", "migrate", "environment", "DATABASE_URL"],
            "postgresql://godo:hunter2@postgres:5432/godo",
            "password written in the file",
        ),
        (
            ["services", "postgres", "environment", "POSTGRES_PASSWORD"],
            "${POSTGRES_PASSWORD:-godo}",
            "POSTGRES_PASSWORD",
        ),
        (["services", "dagster-daemon", "volumes"], ["undeclared:/data"], "not declared"),
    ],
)
def test_compose_checks_catch_a_broken_file(path: list[str], value: object, expected: str) -> None:
    problems = compose_problems(broken_compose(path, value))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "ARG BASE_IMAGE=python:3.11.14-slim-bookworm",
            "ARG BASE_IMAGE=python:3.11-slim",
            "patch release",
        ),
        ("ARG BASE_IMAGE=python:3.11.14-slim-bookworm\n", "", "no `ARG BASE_IMAGE"),
        (
            "FROM ${BASE_IMAGE} AS runtime-base",
            "FROM python:3.11.14-slim-bookworm AS runtime-base",
            "stage api starts from 'python:3.11.14-slim-bookworm', not ${BASE_IMAGE}",
        ),
        ("FROM ${BASE_IMAGE} AS uv", "FROM debian:bookworm AS uv", "stage builder starts from"),
        ("uv sync --frozen --no-default-groups\n", "uv sync --no-default-groups\n", "--frozen"),
        (
            "uv sync --frozen --no-default-groups --no-install-project",
            "uv sync --frozen --no-install-project",
            "installs the dev group in api-builder",
        ),
        (
            "uv sync --frozen --no-default-groups\n",
            "uv sync --frozen --no-default-groups --group pipelines\n",
            "the API's venv installs groups {'pipelines'}",
        ),
        (
            "uv sync --frozen --no-default-groups --group pipelines --group embedded\n",
            "uv sync --frozen --no-default-groups --group embedded\n",
            "lacks the pipelines group",
        ),
        ("uv==0.13.9", "uv", "not pinned"),
        ("USER 10001:10001", "USER root", "runs as 'root'"),
        ("USER 10001:10001", "", "no USER"),
        ('    CMD ["/app/docker/entrypoint.sh", "healthcheck"]\n', "    NONE\n", "HEALTHCHECK"),
        ("&& rm -rf /var/lib/apt/lists/*", "", "apt lists are left in stage runtime-base"),
        ('CMD ["api"]', 'CMD ["dagster-daemon"]', "default command"),
        ("COPY dagster.yaml /opt/dagster/dagster.yaml", "", "DAGSTER_HOME"),
        ("alembic.ini dagster.yaml /app/", "alembic.ini /app/", "dagster.yaml is not in the app"),
        ("COPY --from=api-builder /opt/venv /opt/venv", "", "api: copies no /opt/venv"),
        (
            "COPY --from=builder /opt/venv /opt/venv",
            "COPY --from=builder / /",
            "runtime: copies more than the venv",
        ),
    ],
)
def test_dockerfile_checks_catch_a_broken_file(old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text, f"the mutation no longer applies: {old!r}"
    problems = dockerfile_problems(text.replace(old, new, 1 if "FROM" in old else -1))
    assert any(expected in p for p in problems), problems


def test_single_stage_dockerfile_is_refused() -> None:
    text = DOCKERFILE.read_text()
    runtime_only = "ARG BASE_IMAGE=python:3.11.14-slim-bookworm\nFROM ${BASE_IMAGE} AS runtime\n"
    runtime_only += text[text.index("FROM runtime-base AS runtime") :].split("\n", 1)[1]
    assert dockerfile_problems(runtime_only) == [
        "not multi-stage: the runtime image would carry the build tools"
    ]


def test_the_image_and_the_reloader_carry_every_package_of_the_wheel() -> None:
    """A package added to the wheel but not copied into the image fails only at import time in
    a container; one `--reload` does not watch serves stale code."""
    from godo.cli import SOURCE_PACKAGES

    copied = {
        line.split()[1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("COPY ") and line.split()[1].isidentifier()
    }
    assert set(FIRST_PARTY) <= copied
    assert set(SOURCE_PACKAGES) == set(FIRST_PARTY)
