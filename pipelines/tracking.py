"""The one place Godo talks to MLflow: experiment tracking and the model registry.

Why a wrapper:

* **No global state.** MLflow's fluent API (`mlflow.start_run`, `mlflow.log_metric`, ...) keeps
  the tracking URI, the active experiment and the active run in process-wide globals. Dagster
  runs several assets in one process, tests run many registries side by side, and a global left
  pointing at the wrong store silently sends runs elsewhere. Everything here goes through one
  `MlflowClient` built from explicit URIs; even model logging is done with client calls (see
  `TrainingRun.register`), so `mlflow.get_tracking_uri()` and the active run are never touched.
* **SQLite by default.** The default store is a SQLite file (`sqlite:////abs/path/mlflow.db`).
  A database store does not know where artifacts live, and MLflow's fallback is `./mlruns`
  relative to whatever the current directory happens to be. `ModelRegistry` therefore creates
  its experiment with an absolute artifact location: the `artifact_root` it is given, or, for a
  SQLite file, an `mlartifacts` folder next to the database.
* **A classic ML experiment, and no stray `Default`.** The experiment carries
  `mlflow.experimentKind=custom_model_development`, so the UI opens it on runs, metrics and
  models rather than the GenAI (traces) layout. MLflow's SQL store creates an experiment
  `Default` (id 0) with its artifacts in `./mlruns` of whatever directory first opened the
  store; nothing of Godo logs there, so while it is empty it is deleted, and a stray
  `mlflow.start_run()` without an experiment fails instead of writing into the working tree.
* **The champion alias is the only way publishing picks a model.** Training registers every
  model as a new version; nothing is served until `promote` moves the `champion` alias onto a
  version (recording why and when on the version's tags). Publishing asks for `champion()` and
  loads the files that training logged under `bundle/` with `download_bundle`.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeVar

import lightgbm
import mlflow.lightgbm
import pandas as pd
import polars as pl
from mlflow.entities import (
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    RunStatus,
    ViewType,
)
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import (
    ALREADY_EXISTS,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from mlflow.tracking import MlflowClient
from sqlalchemy.engine import make_url

from models.feed_model import RerankConfig, save_feed_model

_log = logging.getLogger(__name__)

CHAMPION: Final = "champion"
BUNDLE_DIR: Final = "bundle"  # artifact subdirectory holding the files the pipeline loads
MODEL_ARTIFACT_NAME: Final = "ranker"  # name of the logged MLflow model (lightgbm flavour)
FEED_MODEL_NAME: Final = "feed_model"  # name of the logged feed model (pyfunc flavour)
# The UI's layout for an experiment: classic model training, not GenAI traces. The key and
# value are the ones MLflow's UI reads (its ExperimentKind enum).
EXPERIMENT_KIND_TAG: Final = "mlflow.experimentKind"
EXPERIMENT_KIND: Final = "custom_model_development"
DEFAULT_EXPERIMENT_ID: Final = "0"
# What the gate decided, on every evaluated version: passed/rejected, then promoted.
GATE_TAG: Final = "godo.gate"
GATE_REASON_TAG: Final = "godo.gate_reason"

# MLflow's limits (mlflow.utils.validation): long param values are rejected unless truncated.
MAX_PARAM_VALUE_LENGTH: Final = 6000
MAX_KEY_LENGTH: Final = 250
TRUNCATION_MARKER: Final = "...[truncated]"
_PARAMS_PER_BATCH: Final = 100
_METRICS_PER_BATCH: Final = 1000

# Param and metric names may hold alphanumerics, '_', '-', '.', ' ' and '/' (':' too, but not
# on Windows). Anything else, '@' included, is rejected by MLflow.
_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /]")
_INVALID_TAG = re.compile(r"[^\w\-./]")

_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered version of the ranker, with the metrics of the run that trained it."""

    name: str
    version: int
    run_id: str
    metrics: dict[str, float]  # the run's logged metrics (latest values)
    tags: dict[str, str]  # the version's tags


def sanitise_key(key: str) -> str:
    """A param/metric name MLflow accepts: '@' becomes '_at_', other bad characters '_'."""
    cleaned = _INVALID_KEY_CHARS.sub("_", key.strip().replace("@", "_at_"))
    # Names double as file paths: no empty, '.' or '..' segments, no leading/trailing '/'.
    segments = [part for part in cleaned.split("/") if part not in ("", ".", "..")]
    cleaned = "/".join(segments) or "_"
    if cleaned.startswith(".."):
        cleaned = "_" + cleaned
    return cleaned[:MAX_KEY_LENGTH]


def truncate_param_value(value: str) -> str:
    """`value`, cut to MLflow's param length limit with a visible marker when too long."""
    if len(value) <= MAX_PARAM_VALUE_LENGTH:
        return value
    return value[: MAX_PARAM_VALUE_LENGTH - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


# A URI scheme (`s3:`, `file:`, `mlflow-artifacts:` with one, two or three slashes), not a
# path; one letter would be a Windows drive.
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def artifact_location(artifact_root: str) -> str:
    """An artifact root as a URI: URIs pass through, plain paths become `file://` URIs."""
    if _URI_SCHEME.match(artifact_root):
        return artifact_root
    return Path(artifact_root).expanduser().resolve().as_uri()


def default_artifact_root(tracking_uri: str) -> str | None:
    """For a SQLite file store, an `mlartifacts` folder beside the database; else None.

    None leaves the choice to MLflow (a file store keeps artifacts in its own folder, a
    tracking server uses its configured artifact root).
    """
    if not tracking_uri.startswith("sqlite:"):
        return None
    database = make_url(tracking_uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str(Path(database).expanduser().resolve().parent / "mlartifacts")


def read_table(client: MlflowClient, run_id: str, artifact_file: str) -> pl.DataFrame | None:
    """A table a run logged with `TrainingRun.log_table`, as Polars; None if it has none.

    Not `MlflowClient.load_table`: that searches runs through MLflow's *global* tracking URI
    (a default `./mlflow.db` when unset), whatever store the client points at.
    """
    folder = posixpath.dirname(artifact_file) or None
    if artifact_file not in {f.path for f in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as staging:
        path = Path(client.download_artifacts(run_id, artifact_file, staging))
        split = json.loads(path.read_text())  # pandas' "split" orient: columns + data rows
    return pl.DataFrame(split["data"], schema=split["columns"], orient="row")


def _error_is(error: MlflowException, *codes: int) -> bool:
    return error.error_code in {ErrorCode.Name(code) for code in codes}


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _now_millis() -> int:
    return int(time.time() * 1000)


class ModelRegistry:
    """Tracking and registry for one experiment and one registered model name."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        model_name: str,
        artifact_root: str | None = None,
        *,
        registry_uri: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.experiment = experiment
        self.model_name = model_name
        root = artifact_root if artifact_root is not None else default_artifact_root(tracking_uri)
        self.artifact_location = artifact_location(root) if root is not None else None
        self._experiment_id: str | None = None

    @cached_property
    def client(self) -> MlflowClient:
        """The client for this store, built on first use (it opens and migrates the database)."""
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def __repr__(self) -> str:
        return (
            f"ModelRegistry(tracking_uri={self.tracking_uri!r}, experiment={self.experiment!r}, "
            f"model_name={self.model_name!r})"
        )

    @property
    def experiment_id(self) -> str:
        """The experiment's id; the experiment is created (or restored) on first use."""
        if self._experiment_id is None:
            self._experiment_id = self._ensure_experiment()
        return self._experiment_id

    def _ensure_experiment(self) -> str:
        experiment_id = self._find_or_create_experiment()
        self._retire_default_experiment(experiment_id)
        return experiment_id

    def _find_or_create_experiment(self) -> str:
        existing = self.client.get_experiment_by_name(self.experiment)
        if existing is None:
            try:
                return self.client.create_experiment(
                    self.experiment,
                    artifact_location=self.artifact_location,
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            except MlflowException as error:
                # Another process created it between our lookup and create: use theirs.
                if not _error_is(error, RESOURCE_ALREADY_EXISTS, ALREADY_EXISTS):
                    raise
                existing = self.client.get_experiment_by_name(self.experiment)
                if existing is None:
                    raise
        if existing.lifecycle_stage == "deleted":
            _log.warning("Restoring deleted MLflow experiment %r", self.experiment)
            self.client.restore_experiment(existing.experiment_id)
        if self.artifact_location and existing.artifact_location != self.artifact_location:
            _log.info(
                "MLflow experiment %r keeps its artifact location %s (configured: %s)",
                self.experiment,
                existing.artifact_location,
                self.artifact_location,
            )
        # Set on experiments made before the tag existed, and over a kind the UI guessed
        # (`*_inferred`); a kind somebody chose by hand is left alone.
        kind = existing.tags.get(EXPERIMENT_KIND_TAG)
        if kind is None or kind.endswith("_inferred"):
            self.client.set_experiment_tag(
                existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
            )
        return existing.experiment_id

    def _retire_default_experiment(self, ours: str) -> None:
        """Delete MLflow's own `Default` experiment while it holds no run (see the module
        docstring); one with runs is somebody's work and stays, with a warning."""
        if ours == DEFAULT_EXPERIMENT_ID:
            return
        try:
            default = self.client.get_experiment(DEFAULT_EXPERIMENT_ID)
        except MlflowException as error:
            if _error_is(error, RESOURCE_DOES_NOT_EXIST):
                return
            raise
        if default.lifecycle_stage != "active":
            return
        if self.client.search_runs(
            [DEFAULT_EXPERIMENT_ID], run_view_type=ViewType.ALL, max_results=1
        ):
            _log.warning(
                "MLflow experiment %r holds runs logged outside Godo's experiment %r",
                default.name,
                self.experiment,
            )
            return
        self.client.delete_experiment(DEFAULT_EXPERIMENT_ID)

    def start_run(self, run_name: str, tags: Mapping[str, str] | None = None) -> TrainingRun:
        """A new run in the experiment; use it as a context manager so it always ends."""
        run = self.client.create_run(
            self.experiment_id, run_name=run_name, tags=dict(tags) if tags else None
        )
        return TrainingRun(self, run.info.run_id)

    def resume_run(self, run_name: str, tags: Mapping[str, str]) -> TrainingRun:
        """The newest run of the experiment carrying every one of `tags`, else a new one.

        For series that grow run after run (the daily online metrics of one model version):
        metrics logged at increasing steps chart as a line in the run's MLflow page. Tag keys
        and values may hold word characters, '.', '-' and '/' only (they go into a filter).
        """
        for key, value in tags.items():
            if _INVALID_TAG.search(key) or _INVALID_TAG.search(value):
                raise ValueError(f"tag {key!r}={value!r} has characters a run filter cannot hold")
        query = " AND ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
        found = self.client.search_runs(
            [self.experiment_id], filter_string=query, order_by=["start_time DESC"], max_results=1
        )
        if found:
            return TrainingRun(self, found[0].info.run_id)
        return self.start_run(run_name, tags)

    def champion(self) -> ModelVersionInfo | None:
        """The version carrying the champion alias; None if the model or the alias is missing."""
        return self.resolve(CHAMPION)

    def resolve(self, ref: str) -> ModelVersionInfo | None:
        """A version number ("7") or an alias ("champion") of the model; None if the registry
        has no such version or alias (an experiment's arm names one of them)."""
        try:
            registered = self.client.get_registered_model(self.model_name)
        except MlflowException as error:
            if _error_is(error, RESOURCE_DOES_NOT_EXIST):
                return None
            raise
        # Reading the alias map avoids get_model_version_by_alias, whose "alias not found"
        # error is a generic INVALID_PARAMETER_VALUE (as is a malformed name).
        version = ref if ref.isdigit() else registered.aliases.get(ref)
        if version is None:
            return None
        try:
            return self.version(int(version))
        except MlflowException as error:
            if _error_is(error, RESOURCE_DOES_NOT_EXIST):
                return None
            raise

    def version(self, version: int) -> ModelVersionInfo:
        """One registered version; raises MlflowException if it does not exist."""
        return self._info(self.client.get_model_version(self.model_name, str(version)))

    def _info(self, model_version: ModelVersion) -> ModelVersionInfo:
        run_id = model_version.run_id
        if not run_id:
            raise ValueError(
                f"{self.model_name} version {model_version.version} has no run: it was not "
                "registered through pipelines.tracking"
            )
        return ModelVersionInfo(
            name=model_version.name,
            version=int(model_version.version),
            run_id=run_id,
            metrics=dict(self.client.get_run(run_id).data.metrics),
            tags=dict(model_version.tags),
        )

    def promote(self, version: int, reason: str) -> None:
        """Make `version` the champion, recording why and when on the version's tags."""
        name, key = self.model_name, str(version)
        self.client.get_model_version(name, key)  # fail before tagging if it does not exist
        promoted_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.client.set_model_version_tag(name, key, "promoted_reason", reason)
        self.client.set_model_version_tag(name, key, "promoted_at", promoted_at)
        self.client.set_model_version_tag(name, key, GATE_TAG, "promoted")
        # Moving the alias last: readers never see a champion without its promotion tags.
        self.client.set_registered_model_alias(name, CHAMPION, key)
        _log.info("Promoted %s version %s to %s: %s", name, key, CHAMPION, reason)

    def record_gate(
        self,
        version: int,
        *,
        passed: bool,
        reason: str,
        numbers: Mapping[str, float | int | None],
    ) -> None:
        """Tag `version` with the gate's verdict: `godo.gate` passed or rejected (`promote`
        turns a passed one into promoted), `godo.gate_reason`, and `godo.gate_<name>` for
        each of `numbers` (the metric, both values, the gain's interval); None is "none"."""
        name, key = self.model_name, str(version)
        tags = {
            GATE_TAG: "passed" if passed else "rejected",
            GATE_REASON_TAG: truncate_param_value(reason),
        }
        for number, figure in numbers.items():
            tags[f"{GATE_TAG}_{sanitise_key(number)}"] = "none" if figure is None else str(figure)
        for tag, value in tags.items():
            self.client.set_model_version_tag(name, key, tag, value)

    def download_bundle(self, version: int, destination: Path) -> Path:
        """Download `version`'s bundle into `destination`; returns `destination / BUNDLE_DIR`.

        The returned folder holds exactly the files training logged with `log_bundle`:
        an older download in the same place is replaced, not merged.
        """
        run_id = self.version(version).run_id
        if not self.client.list_artifacts(run_id, BUNDLE_DIR):
            raise FileNotFoundError(
                f"{self.model_name} version {version} (run {run_id}) logged no {BUNDLE_DIR}/"
            )
        destination.mkdir(parents=True, exist_ok=True)
        target = destination / BUNDLE_DIR
        with tempfile.TemporaryDirectory(dir=destination, prefix=".download-") as staging:
            downloaded = Path(self.client.download_artifacts(run_id, BUNDLE_DIR, staging))
            if target.exists():
                shutil.rmtree(target)
            downloaded.rename(target)
        return target


class TrainingRun:
    """One MLflow run: params, metrics, artifacts, and the registered model it produced."""

    def __init__(self, registry: ModelRegistry, run_id: str) -> None:
        self.run_id = run_id
        self._registry = registry
        self._client = registry.client
        self._finished = False

    def __repr__(self) -> str:
        return f"TrainingRun(run_id={self.run_id!r}, registry={self._registry!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.finish(RunStatus.to_string(RunStatus.FAILED))
        elif not self._finished:
            self.finish()

    def finish(self, status: str = "FINISHED") -> None:
        """End the run with `status` (FINISHED, FAILED or KILLED)."""
        self._client.set_terminated(self.run_id, status)
        self._finished = True

    def rename(self, name: str) -> None:
        """Give the run a new name (once it is known what the run produced)."""
        self._client.update_run(self.run_id, name=name)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags of the run; unlike params, tags may change later."""
        for key, value in tags.items():
            self._client.set_tag(self.run_id, key, value, synchronous=True)

    def log_params(self, params: Mapping[str, object]) -> None:
        """Log params: values str()-ed (long ones truncated with a marker), keys sanitised."""
        cleaned: dict[str, str] = {}
        for key, value in params.items():
            name = sanitise_key(key)
            text = truncate_param_value(str(value))
            if cleaned.get(name, text) != text:
                raise ValueError(f"params {key!r} and another key both sanitise to {name!r}")
            cleaned[name] = text
        batch = [Param(key, value) for key, value in cleaned.items()]
        for chunk in _chunks(batch, _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=chunk, synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        """Log metrics at `step` (default 0); None and NaN values are skipped, names sanitised."""
        kept = {
            key: float(value)
            for key, value in metrics.items()
            if value is not None and not math.isnan(value)
        }
        if skipped := sorted(set(metrics) - set(kept)):
            _log.info("Run %s: not logging missing/NaN metrics %s", self.run_id, skipped)
        timestamp = _now_millis()
        batch = [
            Metric(sanitise_key(key), value, timestamp, step or 0) for key, value in kept.items()
        ]
        for chunk in _chunks(batch, _METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log one local file (or a directory's contents) under `artifact_path`."""
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, data: object, artifact_file: str) -> None:
        """Log `data` as a JSON file at `artifact_file` (e.g. "features.json")."""
        text = json.dumps(data, indent=2, sort_keys=True, default=str)
        self._client.log_text(self.run_id, text, artifact_file)

    def log_table(self, table: pd.DataFrame, artifact_file: str) -> None:
        """Log `table` as an MLflow table artifact (`artifact_file` ends in .json): the run's
        Artifacts tab shows it as a table, and `MlflowClient.load_table` reads it back
        across runs. Logging the same file again appends rows."""
        self._client.log_table(self.run_id, table, artifact_file)

    def log_bundle(self, directory: Path) -> None:
        """Log every file under `directory` into the run's BUNDLE_DIR."""
        if not directory.is_dir():
            raise NotADirectoryError(directory)
        self._client.log_artifacts(self.run_id, str(directory), BUNDLE_DIR)

    def register(
        self,
        booster: lightgbm.Booster,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> int:
        """Log `booster` alone (lightgbm flavour) in this run and register it; returns the
        version. The nightly run registers the whole feed instead (`register_feed_model`)."""

        def save(local: Path, metadata: Model) -> None:
            mlflow.lightgbm.save_model(
                booster,
                str(local),
                mlflow_model=metadata,
                pip_requirements=[f"lightgbm=={lightgbm.__version__}"],
            )

        return self._register(MODEL_ARTIFACT_NAME, "lightgbm", save, description, tags)

    def register_feed_model(
        self,
        bundle: Path,
        *,
        als_file: str,
        ranker_file: str,
        config: RerankConfig,
        input_example: pd.DataFrame,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> int:
        """Log the whole feed model (`models.feed_model`: ALS, ranker, re-rank config) as a
        pyfunc with its signature and `input_example` (candidate rows), and register it;
        returns the version. `bundle` holds `als_file` and `ranker_file` (+ its sidecar)."""

        def save(local: Path, metadata: Model) -> None:
            save_feed_model(
                local,
                als_path=bundle / als_file,
                ranker_path=bundle / ranker_file,
                config=config,
                input_example=input_example,
                mlflow_model=metadata,
            )

        return self._register(FEED_MODEL_NAME, "pyfunc", save, description, tags)

    def _register(
        self,
        name: str,
        model_type: str,
        save: Callable[[Path, Model], None],
        description: str,
        tags: Mapping[str, str] | None,
    ) -> int:
        """Log a model written by `save` and register it as a new version.

        Done with client calls rather than `mlflow.<flavour>.log_model`, which needs the global
        tracking URI and active run, and whose registration step looks the logged model up
        through the *global* tracking URI (a known TODO in MLflow's SQL registry store).
        """
        model_id, source = self._log_model(name, model_type, save)
        self._ensure_registered_model()
        version_tags = {"run_id": self.run_id, "model_id": model_id, **(tags or {})}
        created = self._client.create_model_version(
            self._registry.model_name,
            source=source,
            run_id=self.run_id,
            tags=version_tags,
            description=description or None,
            model_id=model_id,
        )
        if created.run_id != self.run_id:
            raise RuntimeError(
                f"MLflow recorded run {created.run_id!r} for {self._registry.model_name} "
                f"version {created.version}, expected {self.run_id!r}"
            )
        return int(created.version)

    def _log_model(
        self, name: str, model_type: str, save: Callable[[Path, Model], None]
    ) -> tuple[str, str]:
        """Log a model as an MLflow LoggedModel of this run; returns (model id, artifact URI)."""
        run = self._client.get_run(self.run_id)
        model = self._client.create_logged_model(
            run.info.experiment_id,
            name=name,
            source_run_id=self.run_id,
            params=dict(run.data.params),
            model_type=model_type,
        )
        try:
            with tempfile.TemporaryDirectory() as staging:
                local = Path(staging) / "model"
                metadata = Model(
                    artifact_path=model.artifact_location,
                    run_id=self.run_id,
                    model_uuid=model.model_id,
                    model_id=model.model_id,
                )
                save(local, metadata)
                self._client.log_model_artifacts(model.model_id, str(local))
        except BaseException:
            self._client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
        self._client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        self._client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=0)])
        return model.model_id, model.artifact_location

    def _ensure_registered_model(self) -> None:
        try:
            self._client.create_registered_model(self._registry.model_name)
        except MlflowException as error:
            if not _error_is(error, RESOURCE_ALREADY_EXISTS, ALREADY_EXISTS):
                raise
