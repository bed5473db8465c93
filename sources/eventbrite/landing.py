"""The landing zone: Eventbrite list pages stored as fetched, one JSON file per page.

Whatever fetches pages (the synthetic city today, the API client tomorrow) writes here, and
the pipeline parses from here, so a parser change can be replayed without calling the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ORGANIZATIONS = ("eventbrite", "organizations")


def organization_pages(landing: Path) -> Iterator[tuple[str, Path]]:
    """(organization_id, page file) for every landed page, in a stable order."""
    root = landing.joinpath(*ORGANIZATIONS)
    if not root.exists():
        return
    for org_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for page in sorted(org_dir.glob("page-*.json")):
            yield org_dir.name, page


def read_page_events(page: Path) -> list[dict[str, Any]]:
    """The `events` array of one landed list page."""
    payload = json.loads(page.read_text())
    events = payload.get("events")
    if not isinstance(events, list):
        raise ValueError(f"{page}: not an Eventbrite list page (no 'events' array)")
    return events


FOLLOWED = "followed-organizations.json"


def write_followed(landing: Path, metro_of_organization: dict[str, str]) -> Path:
    """Record which organizations are followed, and for which metro (the ingest's config)."""
    path = landing / "eventbrite" / FOLLOWED
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metro_of_organization, sort_keys=True, indent=1))
    return path


def read_followed(landing: Path) -> dict[str, str]:
    path = landing / "eventbrite" / FOLLOWED
    if not path.exists():
        raise FileNotFoundError(f"{path}: no followed organizations; land a catalogue first")
    followed: dict[str, str] = json.loads(path.read_text())
    return followed
