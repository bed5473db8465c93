"""The process's log handler writes to the stderr of the moment it writes."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from core.logs import configure_logging
from core.settings import Settings


@pytest.fixture
def root_handlers() -> object:
    """Leave the root logger as the test found it."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = saved
    root.setLevel(level)


def test_a_line_after_stderr_was_swapped_and_closed_goes_to_the_current_stderr(
    root_handlers: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler made while a runner's stand-in was stderr used to keep writing into it after
    the runner closed it, and every later line failed ("I/O operation on closed file")."""
    stand_in = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stand_in)
    configure_logging(Settings(log_format="text", _env_file=None))  # type: ignore[call-arg]
    logging.getLogger("godo.test").warning("while the runner holds stderr")
    assert "while the runner holds stderr" in stand_in.getvalue()
    stand_in.close()
    current = io.StringIO()
    monkeypatch.setattr(sys, "stderr", current)
    errors: list[BaseException] = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda self, r: errors.append(r))
    logging.getLogger("pgserver").warning("exiting, cleaning the last handle")
    assert errors == []
    assert "exiting, cleaning the last handle" in current.getvalue()
