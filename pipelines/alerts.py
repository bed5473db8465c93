"""Telling people a run failed: a log line always, a Sentry event when a DSN is configured.

Why a resource: the run-failure sensor reaches Sentry like any asset reaches a service, so a
test hands in a DSN pointing at a local server and the production DSN arrives through the
environment (`SENTRY_DSN`). A challenger rejected by the champion gate does not fail its run
(the gate reports at WARN, see `pipelines.assets.evaluation`), so every run that reaches this
module failed for real and is reported as an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dagster as dg
import sentry_sdk

log = logging.getLogger(__name__)

# The error Dagster raises when a blocking asset check fails at ERROR: its own message (which
# check, on which asset) is what to report, not the framework errors wrapped around it.
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"


@dataclass(frozen=True)
class FailedStep:
    step_key: str
    error_class: str
    message: str


@dataclass(frozen=True)
class RunFailure:
    """What an operator needs to act on a failed run, without opening the UI first."""

    run_id: str
    job_name: str
    message: str
    steps: tuple[FailedStep, ...]

    def summary(self) -> str:
        failed = ", ".join(f"{s.step_key} ({s.error_class}: {s.message})" for s in self.steps)
        return f"run {self.run_id} of {self.job_name} failed: {failed or self.message}"


def describe_failure(context: dg.RunFailureSensorContext) -> RunFailure:
    """The failed run and its failed steps, from the sensor's context."""
    steps = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        chain = []
        while error is not None:  # Dagster wraps the asset's own error; report that one
            chain.append(error)
            error = error.cause
        if chain and chain[0].cls_name == CHECK_FAILED_ERROR:
            chain = chain[:1]
        root = chain[-1] if chain else None
        message = (root.message if root else event.message or "").strip()
        steps.append(
            FailedStep(
                step_key=event.step_key or "?",
                error_class=(root.cls_name if root else None) or "Error",
                message=message.splitlines()[-1] if message else "",
            )
        )
    return RunFailure(
        run_id=context.dagster_run.run_id,
        job_name=context.dagster_run.job_name,
        message=context.failure_event.message or "",
        steps=tuple(steps),
    )


class AlertsResource(dg.ConfigurableResource):
    """Where failures are reported: the log, and Sentry when `sentry_dsn` is set."""

    sentry_dsn: str | None = None
    environment: str = "development"

    def report(self, failure: RunFailure) -> bool:
        """Log `failure` as an error; send it to Sentry when a DSN is set. True if sent."""
        extra = {"run_id": failure.run_id, "job_name": failure.job_name}
        log.error(failure.summary(), extra=extra)
        if not self.sentry_dsn:
            return False
        client = sentry_sdk.Client(dsn=self.sentry_dsn, environment=self.environment)
        try:
            with sentry_sdk.new_scope() as scope:
                scope.set_client(client)
                scope.set_tag("dagster.job", failure.job_name)
                scope.set_tag("dagster.run_id", failure.run_id)
                for step in failure.steps:
                    scope.set_tag("dagster.step", step.step_key)
                scope.capture_message(failure.summary(), level="error")
        finally:
            client.flush(timeout=5)
            client.close()
        return True
