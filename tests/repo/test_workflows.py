"""GitHub workflows and the Fly config: schema-valid, clean under zizmor, shaped as intended.

Three layers, because each catches what the others cannot:
- `check-jsonschema --builtin-schema vendor.github-workflows` rejects what GitHub would refuse to
  load (a typo in a key, a wrong type), offline from the schema it vendors;
- `zizmor --offline` with `.github/zizmor.yml` rejects insecure patterns (template injection,
  persisted credentials, broad permissions, actions not pinned the way the policy says);
- the checks below assert the pipeline itself: which jobs exist, what runs before what, where
  each secret goes.
The structural checks return a list of problems so the tests at the bottom can feed them broken
copies of the workflows and prove they would notice.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
ZIZMOR_CONFIG = ROOT / ".github" / "zizmor.yml"
FLY_TOML = ROOT / "deploy" / "fly.toml"
DEV_PY = ROOT / "dev.py"

# YAML mappings: keys are mostly str, but a bare `on:` key loads as the boolean True.
Doc = dict[Any, Any]

SECRET_ENV_NAMES = ("FLY_API_TOKEN", "DATABASE_URL")
HEX_SHA = re.compile(r"^[0-9a-f]{40}$")
MAJOR_TAG = re.compile(r"^v\d+(\.\d+){0,2}$")


# --- helpers ---------------------------------------------------------------------------------


def workflow_files() -> list[Path]:
    """Every workflow in the repository, so a new file is validated without editing this test."""
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def executable(name: str) -> str:
    """The dev tool from this interpreter's environment (what `uv sync` installed), else PATH.

    A missing tool is a failure, not a skip: a skipped validation would look like a pass.
    """
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"`{name}` is neither next to {sys.executable} nor on PATH; it is a dev dependency "
            "in pyproject.toml, so run the tests through `uv run` or `python3 dev.py test`"
        )
    return found


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**_clean_env(), "NO_COLOR": "1"},
    )


def _clean_env() -> dict[str, str]:
    # zizmor would pick up a GitHub token from the environment; --offline already forbids
    # network use, and dropping the token keeps the run identical on laptops and in CI.
    return {
        k: v
        for k, v in os.environ.items()
        if k not in {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}
    }


def load_yaml(path: Path) -> Doc:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path} is not a YAML mapping"
    return doc


def triggers(workflow: Doc) -> dict[str, Any]:
    """`on:` of a workflow. YAML 1.1 reads the bare key `on` as the boolean True."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on or {}


def jobs(workflow: Doc) -> dict[str, Doc]:
    return workflow.get("jobs") or {}


def steps(job: Doc) -> list[Doc]:
    return job.get("steps") or []


def script(step: Doc) -> str:
    return str(step.get("run", ""))


def all_steps(workflow: Doc) -> Iterator[tuple[str, int, Doc]]:
    for job_id, job in jobs(workflow).items():
        for index, step in enumerate(steps(job)):
            yield job_id, index, step


def find_steps(workflow: Doc, matches: Callable[[Doc], bool]) -> list[tuple[str, int]]:
    return [(job_id, i) for job_id, i, step in all_steps(workflow) if matches(step)]


def grants_write(permissions: Any) -> bool:
    if permissions in ("write-all",):
        return True
    if isinstance(permissions, dict):
        return any(level == "write" for level in permissions.values())
    return False


def strings(value: Any) -> Iterator[str]:
    """Every string in a (nested) workflow value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def mentions(value: Any, needle: str) -> int:
    """How often `needle` appears anywhere in a (nested) workflow value."""
    return sum(text.count(needle) for text in strings(value))


# --- structural checks (return problems; empty means fine) -----------------------------------


def ci_problems(workflow: Doc) -> list[str]:
    problems: list[str] = []
    on = triggers(workflow)
    push = on.get("push") or {}
    if "main" not in (push.get("branches") or []):
        problems.append("ci does not run on pushes to main")
    if "pull_request" not in on:
        problems.append("ci does not run on pull requests")

    if workflow.get("permissions") != {"contents": "read"}:
        problems.append("ci's workflow permissions are not exactly `contents: read`")
    concurrency = workflow.get("concurrency") or {}
    if not concurrency.get("group") or "pull_request" not in str(
        concurrency.get("cancel-in-progress")
    ):
        problems.append("ci has no concurrency group cancelling superseded PR runs")

    all_jobs = jobs(workflow)
    for name in ("lint", "types", "test", "image"):
        if name not in all_jobs:
            problems.append(f"ci has no `{name}` job")
    for job_id, job in all_jobs.items():
        if "timeout-minutes" not in job:
            problems.append(f"ci job `{job_id}` has no timeout-minutes")
        if grants_write(job.get("permissions")):
            problems.append(f"ci job `{job_id}` grants write permissions")
    if mentions(workflow, "secrets."):
        problems.append("ci uses secrets; pull requests must not need any")

    def runs(job_id: str, *needles: str) -> bool:
        return any(all(n in script(s) for n in needles) for s in steps(all_jobs.get(job_id) or {}))

    def python_311(job_id: str) -> bool:
        return any(
            str(s.get("uses", "")).startswith("actions/setup-python@")
            and str((s.get("with") or {}).get("python-version")) == "3.11"
            for s in steps(all_jobs.get(job_id) or {})
        )

    if not runs("lint", "ruff check"):
        problems.append("lint does not run `ruff check`")
    if not runs("lint", "ruff format --check"):
        problems.append("lint does not run `ruff format --check`")
    if not runs("types", "mypy"):
        problems.append("types does not run mypy")
    if not runs("test", "bash .ci/run"):
        problems.append("test does not run `bash .ci/run`")
    for job_id in ("lint", "types", "test"):
        if job_id in all_jobs and not python_311(job_id):
            problems.append(f"`{job_id}` does not set up Python 3.11 with actions/setup-python")

    services = (all_jobs.get("test") or {}).get("services") or {}
    for service, image in (("postgres", "postgres:16"), ("redis", "redis:7")):
        spec = services.get(service) or {}
        if not str(spec.get("image", "")).startswith(image):
            problems.append(f"test has no `{service}` service on {image}")
        if "--health-cmd" not in str(spec.get("options", "")):
            problems.append(f"test's `{service}` service has no health check")

    image_job = all_jobs.get("image") or {}
    builds = any(
        "docker build" in script(s) or str(s.get("uses", "")).startswith("docker/build-push-action")
        for s in steps(image_job)
    )
    if not builds:
        problems.append("image does not build the Docker image")
    if any(
        "docker push" in script(s) or "docker login" in script(s) for _, _, s in all_steps(workflow)
    ):
        problems.append("ci pushes or logs in to a registry; publishing belongs to deploy")
    return problems


def _job_roots(all_jobs: dict[str, Doc], job_id: str) -> set[str]:
    """The jobs without `needs` that `job_id` (transitively) waits for, itself if it has none."""
    needs = all_jobs[job_id].get("needs") or []
    needs = [needs] if isinstance(needs, str) else needs
    if not needs:
        return {job_id}
    return set().union(*(_job_roots(all_jobs, n) for n in needs if n in all_jobs))


def deploy_problems(workflow: Doc, ci_name: str) -> list[str]:
    problems: list[str] = []
    on = triggers(workflow)
    run_trigger = on.get("workflow_run") or {}
    if set(on) != {"workflow_run"}:
        problems.append(f"deploy must only be triggered by ci's workflow_run, not {sorted(on)}")
    if run_trigger.get("workflows") != [ci_name]:
        problems.append(f"deploy does not follow the `{ci_name}` workflow")
    if run_trigger.get("types") != ["completed"]:
        problems.append("deploy does not wait for ci to complete")
    if run_trigger.get("branches") != ["main"]:
        problems.append("deploy is not limited to main")

    all_jobs = jobs(workflow)
    # Each job either carries the guard itself or waits for one that does (GitHub skips a job
    # whose `needs` were skipped, unless its `if` says always()).
    for job_id, job in all_jobs.items():
        condition = str(job.get("if", ""))
        if "always()" in condition or "cancelled()" in condition:
            problems.append(f"deploy job `{job_id}` can run after a skipped or failed job")
        for root in _job_roots(all_jobs, job_id):
            guard = re.sub(r"\s+", " ", str(all_jobs[root].get("if", "")))
            for required in (
                "github.event.workflow_run.conclusion == 'success'",
                "github.event.workflow_run.event == 'push'",
                "github.event.workflow_run.head_branch == 'main'",
                "github.event.workflow_run.head_repository.full_name == github.repository",
            ):
                if required not in guard:
                    problems.append(f"deploy job `{job_id}` is not guarded by `{required}`")

    for job_id, index, step in all_steps(workflow):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            ref = str((step.get("with") or {}).get("ref", ""))
            if "github.event.workflow_run.head_sha" not in ref:
                problems.append(
                    f"deploy job `{job_id}` step {index} checks out something other than "
                    "the commit ci tested"
                )

    migrate = find_steps(
        workflow,
        lambda s: (
            "alembic upgrade head" in script(s)
            or re.search(r"docker run .* migrate\b", script(s)) is not None
        ),
    )
    roll_out = find_steps(workflow, lambda s: "flyctl deploy" in script(s))
    health = find_steps(workflow, lambda s: "curl" in script(s) and "/health" in script(s))
    if len(migrate) != 1 or len(roll_out) != 1 or len(health) != 1:
        problems.append(
            f"deploy needs exactly one migration, one `flyctl deploy` and one /health check "
            f"(found {len(migrate)}, {len(roll_out)}, {len(health)})"
        )
        return problems
    (m_job, m_i), (d_job, d_i), (h_job, h_i) = migrate[0], roll_out[0], health[0]
    if not m_job == d_job == h_job:
        problems.append("migration, rollout and health check are not in one job")
    elif not m_i < d_i < h_i:
        problems.append("deploy does not run migrate -> flyctl deploy -> /health in that order")

    deploy_job = all_jobs[d_job]
    environment = deploy_job.get("environment")
    environment_name = environment.get("name") if isinstance(environment, dict) else environment
    if environment_name != "production":
        problems.append("the rollout job does not use the `production` environment")

    deploy_step = steps(deploy_job)[d_i]
    command = script(deploy_step)
    for flag in ("--image", "--config deploy/fly.toml", ":${HEAD_SHA}"):
        if flag not in command:
            problems.append(f"`flyctl deploy` lacks `{flag}` (deploy the tested commit's image)")
    if "github.event.workflow_run.head_sha" not in str((workflow.get("env") or {}).get("HEAD_SHA")):
        problems.append("HEAD_SHA is not the commit ci tested")
    health_command = script(steps(all_jobs[h_job])[h_i])
    if "--fail" not in health_command or not re.search(r"--retry[ =]\d+", health_command):
        problems.append("the /health check does not fail on errors and retry")

    # Each secret goes to exactly the one step that needs it, through `env:`.
    expected = {"FLY_API_TOKEN": (d_job, d_i), "DATABASE_URL": (m_job, m_i)}
    for name, where in expected.items():
        if mentions(workflow, f"secrets.{name}") != 1:
            problems.append(f"secrets.{name} is referenced more than once (or not at all)")
        step = steps(all_jobs[where[0]])[where[1]]
        if (
            str((step.get("env") or {}).get(name, "")).replace(" ", "")
            != f"${{{{secrets.{name}}}}}"
        ):
            problems.append(f"the step using {name} does not take it from secrets.{name}")
    for job_id, index, step in all_steps(workflow):
        if "secrets." in script(step):
            problems.append(f"`{job_id}` step {index} expands a secret inside its script")
        for name in SECRET_ENV_NAMES:
            if re.search(rf"\b(echo|printf)\b[^\n|]*\$\{{?{name}\b", script(step)):
                problems.append(f"`{job_id}` step {index} prints {name}")

    # Least privilege: read-only by default, packages:write only where an image is pushed, and
    # never together with a production secret.
    if grants_write(workflow.get("permissions")) or "permissions" not in workflow:
        problems.append("deploy's workflow-level permissions are missing or grant writes")
    for job_id, job in all_jobs.items():
        permissions = job.get("permissions")
        if permissions is None:
            problems.append(f"deploy job `{job_id}` does not set its permissions")
            continue
        writes = {k for k, v in (permissions or {}).items() if v == "write"}
        pushes = any("docker push" in script(s) for s in steps(job))
        if writes - ({"packages"} if pushes else set()):
            problems.append(f"deploy job `{job_id}` grants {sorted(writes)} it does not need")
        if writes and mentions(job, "secrets."):
            problems.append(f"deploy job `{job_id}` holds a secret and write permissions")
        if "timeout-minutes" not in job:
            problems.append(f"deploy job `{job_id}` has no timeout-minutes")

    concurrency = workflow.get("concurrency") or {}
    if not concurrency.get("group") or concurrency.get("cancel-in-progress") is not False:
        problems.append(
            "deploys are not serialized without cancelling (a migration may be running)"
        )
    return problems


def fly_problems(config: Doc) -> list[str]:
    problems: list[str] = []
    if not isinstance(config.get("app"), str) or not config["app"]:
        problems.append("fly.toml has no app name")
    service = config.get("http_service") or {}
    if service.get("internal_port") != 8000:
        problems.append("fly.toml's http_service does not target port 8000")
    checks = service.get("checks") or []
    if not any(c.get("path") == "/health" and c.get("method", "GET") == "GET" for c in checks):
        problems.append("fly.toml has no HTTP GET check on /health")
    env = config.get("env") or {}
    if env.get("GODO_ENVIRONMENT") != "production":
        problems.append("fly.toml does not set GODO_ENVIRONMENT=production")
    for key in env:
        if key in {"DATABASE_URL", "REDIS_URL"} or re.search(r"SECRET|TOKEN|PASSWORD|DSN", key):
            problems.append(f"fly.toml sets {key}; secrets belong in `fly secrets set`")
    if env.get("FORWARDED_ALLOW_IPS") == "*":
        problems.append("fly.toml trusts every X-Forwarded-For entry (uvicorn takes the left-most)")
    if env.get("GODO_TRUSTED_PROXY_HOPS") != "1":
        problems.append("fly.toml does not name Fly's edge as the one trusted proxy hop")
    return problems


# --- the real files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ci() -> Doc:
    return load_yaml(CI)


@pytest.fixture(scope="module")
def deploy() -> Doc:
    return load_yaml(DEPLOY)


@pytest.fixture(scope="module")
def fly() -> Doc:
    return tomllib.loads(FLY_TOML.read_text())


def test_both_workflows_exist() -> None:
    assert CI in workflow_files() and DEPLOY in workflow_files()


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflow_matches_githubs_schema(path: Path) -> None:
    result = run(
        [executable("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_under_the_repository_policy() -> None:
    files = [str(p) for p in workflow_files()]
    result = run(
        [executable("zizmor"), "--offline", "--config", str(ZIZMOR_CONFIG), "--no-progress", *files]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_has_the_intended_shape(ci: Doc) -> None:
    assert ci_problems(ci) == []


def test_deploy_has_the_intended_shape(ci: Doc, deploy: Doc) -> None:
    assert deploy_problems(deploy, ci["name"]) == []


def test_fly_config_serves_the_api_with_a_health_check(fly: Doc) -> None:
    assert fly_problems(fly) == []


def test_deploy_reads_the_same_app_name_as_fly(fly: Doc) -> None:
    # deploy.yml finds the app (and so https://<app>.fly.dev/health) with a sed over this line.
    line = re.search(r'^app *= *"([^"]*)"', FLY_TOML.read_text(), flags=re.MULTILINE)
    assert line is not None and line.group(1) == fly["app"]


def test_pinning_policy_allows_tags_only_for_github_actions() -> None:
    config = load_yaml(ZIZMOR_CONFIG)
    policies = config["rules"]["unpinned-uses"]["config"]["policies"]
    assert policies == {"actions/*": "ref-pin", "*": "hash-pin"}


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_every_action_is_pinned_by_the_policy(path: Path) -> None:
    # zizmor's ref-pin would also accept a branch such as @main; this keeps GitHub's own actions
    # on version tags, and everything else on full commit SHAs.
    for job_id, index, step in all_steps(load_yaml(path)):
        uses = step.get("uses")
        if uses is None or uses.startswith("./"):
            continue
        action, _, ref = uses.partition("@")
        if action.startswith("actions/"):
            assert MAJOR_TAG.match(ref) or HEX_SHA.match(ref), f"{job_id}[{index}]: {uses}"
        else:
            assert HEX_SHA.match(ref), f"{job_id}[{index}]: {uses} is not pinned to a commit"


def test_ci_installs_the_uv_that_dev_py_pins(ci: Doc) -> None:
    pinned = re.search(r'^UV_VERSION = "([^"]+)"', DEV_PY.read_text(), flags=re.MULTILINE)
    assert pinned is not None
    assert ci["env"]["UV_VERSION"] == pinned.group(1)
    installs = [s for _, _, s in all_steps(ci) if "pip install" in script(s)]
    assert installs and all('"uv==${UV_VERSION}"' in script(s) for s in installs)


# --- proof that the checks above can fail ------------------------------------------------------


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps: not-a-list\n")
    result = run(
        [executable("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)]
    )
    assert result.returncode != 0


def test_zizmor_rejects_a_third_party_action_pinned_by_tag(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    bad = workflows / "bad.yml"
    bad.write_text(
        "name: bad\n"
        "on: push\n"
        "permissions: {}\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: some-org/some-action@v1\n"
    )
    result = run(
        [
            executable("zizmor"),
            "--offline",
            "--config",
            str(ZIZMOR_CONFIG),
            "--no-progress",
            str(bad),
        ]
    )
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout + result.stderr


Mutation = Callable[[Doc], None]


def _drop(path: list[str]) -> Mutation:
    def mutate(doc: Doc) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _set(path: list[str | int], value: Any) -> Mutation:
    def mutate(doc: Doc) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _step(doc: Doc, job_id: str, needle: str) -> Doc:
    """The first step of a job whose script or action contains `needle`."""
    return next(
        step
        for step in doc["jobs"][job_id]["steps"]
        if needle in script(step) or needle in str(step.get("uses", ""))
    )


def _move_step_last(job_id: str, needle: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        job_steps = doc["jobs"][job_id]["steps"]
        job_steps.append(job_steps.pop(job_steps.index(_step(doc, job_id, needle))))

    return mutate


def _edit_script(job_id: str, needle: str, old: str, new: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        step = _step(doc, job_id, needle)
        step["run"] = script(step).replace(old, new)

    return mutate


def _set_step(job_id: str, needle: str, section: str, key: str, value: Any) -> Mutation:
    def mutate(doc: Doc) -> None:
        step = _step(doc, job_id, needle)
        if value is None:
            del step[section][key]
        else:
            step.setdefault(section, {})[key] = value

    return mutate


# name -> (how to break the real file, a fragment of the problem the checks must report)
CI_MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "no redis service": (_drop(["jobs", "test", "services", "redis"]), "`redis` service"),
    "postgres without health check": (
        _set(["jobs", "test", "services", "postgres", "options"], "--name pg"),
        "`postgres` service has no health check",
    ),
    "tests not through .ci/run": (
        _edit_script("test", ".ci/run", "bash .ci/run", "pytest"),
        "bash .ci/run",
    ),
    "no image job": (_drop(["jobs", "image"]), "no `image` job"),
    "no timeout": (_drop(["jobs", "lint", "timeout-minutes"]), "`lint` has no timeout"),
    "write permissions": (_set(["permissions"], {"contents": "write"}), "contents: read"),
    "no format check": (
        _edit_script("lint", "format", "ruff format --check", "ruff format"),
        "ruff format --check",
    ),
    "superseded PR runs not cancelled": (
        _set(["concurrency", "cancel-in-progress"], False),
        "concurrency",
    ),
    "another Python": (
        _set_step("types", "actions/setup-python", "with", "python-version", "3.12"),
        "`types` does not set up Python 3.11",
    ),
    "ci publishes": (
        _edit_script("image", "docker build", "docker build", "docker push x; docker build"),
        "publishing belongs to deploy",
    ),
}

DEPLOY_MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "any branch": (_set(["on", "workflow_run", "branches"], ["*"]), "not limited to main"),
    "after a failed ci": (
        _set(["jobs", "gate", "if"], "github.event.workflow_run.event == 'push'"),
        "conclusion == 'success'",
    ),
    "after a pull request run": (
        _set(["jobs", "gate", "if"], "github.event.workflow_run.conclusion == 'success'"),
        "event == 'push'",
    ),
    "migrate after the rollout": (
        _move_step_last("deploy", "docker run"),
        "migrate -> flyctl deploy -> /health",
    ),
    "no health check": (
        _edit_script("deploy", "/health", "/health", "/"),
        "one /health check (found 1, 1, 0)",
    ),
    "health check without retries": (
        _edit_script("deploy", "/health", "--retry ", "--max-time "),
        "fail on errors and retry",
    ),
    "token from a variable": (
        _set_step("deploy", "flyctl deploy", "env", "FLY_API_TOKEN", "${{ vars.FLY_API_TOKEN }}"),
        "secrets.FLY_API_TOKEN",
    ),
    "token for every step": (
        _set(["jobs", "deploy", "env", "FLY_API_TOKEN"], "${{ secrets.FLY_API_TOKEN }}"),
        "secrets.FLY_API_TOKEN is referenced more than once",
    ),
    "deploy by latest": (
        _edit_script("deploy", "flyctl deploy", ":${HEAD_SHA}", ":latest"),
        ":${HEAD_SHA}",
    ),
    "packages write on the secret job": (
        _set(["jobs", "deploy", "permissions"], {"contents": "read", "packages": "write"}),
        "`deploy` grants ['packages']",
    ),
    "job without permissions": (
        _drop(["jobs", "gate", "permissions"]),
        "`gate` does not set its permissions",
    ),
    "secret echoed": (
        _edit_script("deploy", "docker run", "docker run", 'echo "$DATABASE_URL"; docker run'),
        "prints DATABASE_URL",
    ),
    "checkout of main instead of the tested commit": (
        _set_step("deploy", "actions/checkout", "with", "ref", None),
        "checks out something other than the commit ci tested",
    ),
    "cancellable deploys": (
        _set(["concurrency", "cancel-in-progress"], True),
        "serialized without cancelling",
    ),
    "no production environment": (
        _drop(["jobs", "deploy", "environment"]),
        "`production` environment",
    ),
}


def _with_on_key(doc: Doc) -> Doc:
    """A copy with `on` as a string key, so mutations can address it by name."""
    doc = copy.deepcopy(doc)
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _reported(problems: list[str], fragment: str) -> bool:
    return any(fragment in problem for problem in problems)


@pytest.mark.parametrize("name", CI_MUTATIONS)
def test_ci_checks_notice_a_broken_ci(ci: Doc, name: str) -> None:
    mutate, fragment = CI_MUTATIONS[name]
    broken = _with_on_key(ci)
    mutate(broken)
    problems = ci_problems(broken)
    assert _reported(problems, fragment), problems


@pytest.mark.parametrize("name", DEPLOY_MUTATIONS)
def test_deploy_checks_notice_a_broken_deploy(ci: Doc, deploy: Doc, name: str) -> None:
    mutate, fragment = DEPLOY_MUTATIONS[name]
    broken = _with_on_key(deploy)
    mutate(broken)
    problems = deploy_problems(broken, ci["name"])
    assert _reported(problems, fragment), problems


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (_set(["http_service", "internal_port"], 8080), "port 8000"),
        (_set(["http_service", "checks"], [{"method": "GET", "path": "/"}]), "/health"),
        (_set(["env", "DATABASE_URL"], "postgresql://user:pw@db/godo"), "fly secrets set"),
        (_drop(["env", "GODO_ENVIRONMENT"]), "GODO_ENVIRONMENT"),
        (_set(["env", "FORWARDED_ALLOW_IPS"], "*"), "left-most"),
        (_drop(["env", "GODO_TRUSTED_PROXY_HOPS"]), "trusted proxy hop"),
    ],
    ids=["port", "check path", "secret in file", "no environment", "trust all", "no hops"],
)
def test_fly_checks_notice_a_broken_config(fly: Doc, mutate: Mutation, fragment: str) -> None:
    broken = copy.deepcopy(fly)
    mutate(broken)
    assert _reported(fly_problems(broken), fragment)
