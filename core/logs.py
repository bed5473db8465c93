"""Structured logs: one JSON object per line, with the request id or the Dagster run id.

Why JSON: in production the API and the Dagster daemon run as containers whose stdout goes to
a log collector; one object per line with stable field names is what such collectors index,
and it lets an operator go from a failed request or run to every line it logged by one id.

- Serving: `serving.request_ids` puts the request id in `request_id_var` for the duration of
  a request; `ContextFilter` copies it onto every record logged meanwhile, so lines from
  `store` or `godo` code carry it too without passing it around.
- Pipelines: Dagster attaches its own metadata (`dagster_meta`) to every record it logs for a
  run; `JsonFormatter` lifts the run id, job and step out of it. The code location's console
  logger (`pipelines.logs`) uses this formatter, and `dagster.yaml` makes Godo's own loggers
  managed, so library code logging inside an asset lands in the run's log as well.

`configure_logging(settings)` is called once per process by the entry points (`godo`
commands and `create_app`, which uvicorn's factory mode calls at start); `log_format: text`
keeps plain lines for a developer's terminal.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from core.settings import Settings

request_id_var: ContextVar[str | None] = ContextVar("godo_request_id", default=None)

# Libraries whose own handlers would print a second, unstructured copy of each line.
_ROUTED_TO_ROOT = ("uvicorn", "uvicorn.error", "uvicorn.access")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


class ContextFilter(logging.Filter):
    """Adds `request_id` (when serving a request) to every record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(_BaseJsonFormatter):
    """The JSON line every Godo process writes: time, level, logger, message, ids, extras."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault(
            "rename_fields", {"levelname": "level", "name": "logger", "exc_info": "error"}
        )
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, dict):
            for field in ("run_id", "job_name", "step_key"):
                if meta.get(field):
                    log_data[field] = meta[field]
        # Dagster's serialized event rides on each record: the UI has it, a log line need not.
        for key in [k for k in log_data if k.startswith("dagster_")]:
            del log_data[key]
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            log_data["request_id"] = request_id
        else:
            log_data.pop("request_id", None)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.context = f" [{request_id}]" if request_id else ""
        return super().format(record)


class StderrHandler(logging.StreamHandler):
    """A handler on whatever `sys.stderr` is when a line is written, not when it was made.

    A test runner (or Typer's `CliRunner`) swaps stderr for a stand-in and closes it after;
    a handler holding the stand-in then fails on every later line, such as the embedded
    PostgreSQL's exit messages ("--- Logging error --- I/O operation on closed file").
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        """`StreamHandler.__init__` assigns one; there is nothing to keep."""


def configure_logging(settings: Settings) -> None:
    """Route every log line of this process through one handler on stderr, JSON or text."""
    handler = StderrHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(_TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_godo", False):
            root.removeHandler(existing)
    handler._godo = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in _ROUTED_TO_ROOT:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
