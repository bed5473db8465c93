"""Local fakes of the upstream APIs (Eventbrite v3, Google Geocoding and Places), for tests and
the demo: the real HTTP clients talk to them over real sockets, so the code that runs against
the providers in production is the code the tests exercise.

The server names are imported lazily so that ``python -m sources.fakes.server`` does not
import its own module twice (runpy warns about that when a package imports the module it is
asked to run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sources.fakes.faults import (
    MALFORMATION_KINDS,
    FaultPlan,
    FaultView,
    malformation_kind,
    normalize_address,
)

if TYPE_CHECKING:
    from sources.fakes.server import (
        DEFAULT_EVENTBRITE_TOKEN,
        DEFAULT_MAPS_KEY,
        FakeUpstream,
        RecordedRequest,
    )

_FROM_SERVER = frozenset(
    {"DEFAULT_EVENTBRITE_TOKEN", "DEFAULT_MAPS_KEY", "FakeUpstream", "RecordedRequest"}
)

__all__ = [
    "DEFAULT_EVENTBRITE_TOKEN",
    "DEFAULT_MAPS_KEY",
    "MALFORMATION_KINDS",
    "FakeUpstream",
    "FaultPlan",
    "FaultView",
    "RecordedRequest",
    "malformation_kind",
    "normalize_address",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_SERVER:
        return getattr(importlib.import_module("sources.fakes.server"), name)
    raise AttributeError(f"module 'sources.fakes' has no attribute {name!r}")
