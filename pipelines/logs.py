"""The code location's console logger: each line of a run as JSON with its run id."""

import logging

import dagster as dg

from core.logs import JsonFormatter, StderrHandler


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="One JSON object per line on stderr (core.logs), with run id, job and step.",
)
def json_lines_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """Replaces Dagster's coloured console logger, so a run's lines are not written twice."""
    logger = logging.getLogger("godo.dagster")
    logger.propagate = False
    logger.handlers.clear()
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(init_context.logger_config["log_level"])
    return logger
