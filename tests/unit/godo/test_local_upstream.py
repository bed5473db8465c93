"""When `godo dagster` serves the local fake upstream, and what the code location then reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pytest

from core.settings import Settings
from godo.local_upstream import (
    UpstreamNotConfigured,
    upstream_environment,
    wants_local_upstream,
)
from pipelines.definitions import build_resources
from pipelines.resources import EventbriteResource, GoogleMapsResource
from sources.fakes import FakeUpstream
from sources.synthetic.world import CityConfig, build_world
from tests.unit.conftest import PRODUCTION_JWT_SECRET

BOTH = {"EVENTBRITE_TOKEN": "real-token", "GOOGLE_MAPS_API_KEY": "real-key"}


def settings_in(environment: str) -> Settings:
    return Settings(environment=environment, jwt_secret=PRODUCTION_JWT_SECRET)  # type: ignore[arg-type]


@pytest.mark.parametrize("environment", ["development", "staging", "production"])
def test_both_keys_mean_the_real_apis_everywhere(environment: str) -> None:
    assert wants_local_upstream(settings_in(environment), BOTH) is False


@pytest.mark.parametrize("unset", [{}, {"EVENTBRITE_TOKEN": "", "GOOGLE_MAPS_API_KEY": ""}])
def test_no_keys_in_development_mean_the_local_fake(unset: dict[str, str]) -> None:
    assert wants_local_upstream(settings_in("development"), unset) is True


@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "EVENTBRITE_TOKEN and GOOGLE_MAPS_API_KEY not set"),
        ({"EVENTBRITE_TOKEN": "real-token"}, "GOOGLE_MAPS_API_KEY not set"),
    ],
)
def test_outside_development_missing_keys_refuse_instead_of_the_fake(
    environment: str, environ: dict[str, str], named: str
) -> None:
    with pytest.raises(UpstreamNotConfigured, match=named) as refused:
        wants_local_upstream(settings_in(environment), environ)
    assert f"GODO_ENVIRONMENT={environment}" in str(refused.value)
    assert "development only" in str(refused.value)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EVENTBRITE_TOKEN": "t"}, "EVENTBRITE_TOKEN is set but GOOGLE_MAPS_API_KEY is not"),
        ({"GOOGLE_MAPS_API_KEY": "k"}, "GOOGLE_MAPS_API_KEY is set but EVENTBRITE_TOKEN is not"),
    ],
)
def test_half_a_configuration_refuses_in_development_too(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(UpstreamNotConfigured, match=message):
        wants_local_upstream(settings_in("development"), environ)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with FakeUpstream(build_world(CityConfig.tiny(now=now))) as upstream:
        yield upstream


def test_the_code_locations_resources_resolve_to_the_fake_from_its_environment(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `godo dagster` hands `dagster dev` is all the definitions need: URLs, credentials,
    the followed organizations and the whole history, with no run config."""
    for name, value in upstream_environment(fake).items():
        monkeypatch.setenv(name, value)
    resources = build_resources(Settings())
    eventbrite = resources["eventbrite"]
    maps = resources["maps"]
    assert isinstance(eventbrite, EventbriteResource) and isinstance(maps, GoogleMapsResource)
    assert eventbrite.base_url == fake.eventbrite_base_url
    assert (maps.geocode_base_url, maps.places_base_url) == (
        fake.geocode_base_url,
        fake.places_base_url,
    )
    assert eventbrite.followed_organizations == fake.world.organizations_by_metro()
    assert set(eventbrite.followed_organizations) == set(fake.world.config.metros)
    assert eventbrite.time_filter == "all"
    # Secrets stay `dg.EnvVar`s, read at launch; the launch reads the fake's credentials.
    assert isinstance(eventbrite.token, dg.EnvVar) and isinstance(maps.api_key, dg.EnvVar)
    assert eventbrite.token.get_value() == fake.eventbrite_token
    assert maps.api_key.get_value() == fake.maps_key


def test_without_the_fake_the_deployment_defaults_stand(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GODO_EVENTBRITE_BASE_URL", "GODO_EVENTBRITE_TIME_FILTER"):
        monkeypatch.delenv(name, raising=False)
    eventbrite = build_resources(Settings())["eventbrite"]
    assert isinstance(eventbrite, EventbriteResource)
    assert eventbrite.base_url == "https://www.eventbriteapi.com/v3/"
    assert eventbrite.time_filter == "current_future"
