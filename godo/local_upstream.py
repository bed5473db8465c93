"""The local fake upstream behind `godo dagster` when no API keys are set (development only).

Why: on a laptop nobody has an Eventbrite token or a Maps key, and the real Eventbrite follows
no organizations for the synthetic city, so `ingest_metro` launched from the UI could only
fail. Without both keys, in development, `godo dagster` serves the synthetic city on a local
port (`sources.fakes`, the demo's fake) and hands the code location that fake's URLs, its
dummy credentials and the city's organizations through the environment: the real clients run
unchanged, and the launchpad needs no config. Anywhere else (staging, production), or with
only one of the two keys, it refuses to start instead: the fake must never stand in silently
for a provider someone meant to reach.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from core.settings import Settings
from pipelines.resources import SyntheticCityResource
from sources.fakes import FakeUpstream, FaultPlan

CREDENTIALS = ("EVENTBRITE_TOKEN", "GOOGLE_MAPS_API_KEY")
# As in the demo: a share of venues come without coordinates, so the geocoder has work to do.
NO_COORDINATES_SHARE = 0.15


class UpstreamNotConfigured(RuntimeError):
    """The provider keys are missing where the local fake may not replace them."""


def wants_local_upstream(settings: Settings, environ: Mapping[str, str]) -> bool:
    """False when both keys are set (the real APIs), True when neither is in development.

    Raises `UpstreamNotConfigured`, naming what is missing, outside development or when only
    one key is set (half a configuration is a mistake, not a request for the fake).
    """
    missing = [name for name in CREDENTIALS if not environ.get(name)]
    if not missing:
        return False
    if settings.environment != "development":
        raise UpstreamNotConfigured(
            f"{' and '.join(missing)} not set, and GODO_ENVIRONMENT={settings.environment}: "
            "the local fake upstream is for development only. Set the keys (README, "
            "Configuration) to ingest from Eventbrite and Google Maps."
        )
    if len(missing) < len(CREDENTIALS):
        present = next(name for name in CREDENTIALS if name not in missing)
        raise UpstreamNotConfigured(
            f"{present} is set but {' and '.join(missing)} is not: set both to use the real "
            "APIs, or neither to ingest from the local fake upstream."
        )
    return True


def local_city(settings: Settings) -> SyntheticCityResource:
    """The synthetic city the code location simulates (`pipelines.definitions`), this hour."""
    return SyntheticCityResource(metros=settings.metros)


def upstream_environment(fake: FakeUpstream) -> dict[str, str]:
    """What the code location reads to ingest from `fake`: URLs, its credentials (public fake
    values), the city's organizations per metro and its whole history (`all`), since the
    city's swipes reach back before its first ingest."""
    return {
        "EVENTBRITE_TOKEN": fake.eventbrite_token,
        "GOOGLE_MAPS_API_KEY": fake.maps_key,
        "GODO_EVENTBRITE_BASE_URL": fake.eventbrite_base_url,
        "GODO_GEOCODE_BASE_URL": fake.geocode_base_url,
        "GODO_PLACES_BASE_URL": fake.places_base_url,
        "GODO_EVENTBRITE_ORGANIZATIONS": json.dumps(fake.world.organizations_by_metro()),
        "GODO_EVENTBRITE_TIME_FILTER": "all",
    }


@contextmanager
def local_upstream(settings: Settings) -> Iterator[FakeUpstream]:
    """The fake serving `local_city(settings)` on a free port, stopped on exit."""
    faults = FaultPlan(venues_without_coordinates_share=NO_COORDINATES_SHARE)
    with FakeUpstream(local_city(settings).world(), faults=faults) as fake:
        yield fake
