"""Placeholder: filled in by the issue-7 work (see its module docstring once written)."""

from godo.settings import Settings


def resources(settings: Settings) -> dict[str, object]:
    """The resources this module's assets need, merged into the code location's."""
    return {}
