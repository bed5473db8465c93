"""Resources: the only doors from assets to external services and local storage.

Connection strings arrive through `dg.EnvVar` at launch, so importing the code location needs
no credentials; tests hand in resources pointing at their own real servers.
"""

import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import redis
import sqlalchemy as sa
from pydantic import PrivateAttr

from core.links import issue_unsubscribe_token
from core.metros import DEFAULT_METROS
from pipelines.tracking import ModelRegistry
from pipelines.ui_metadata import MlflowLinks
from sources.eventbrite.client import EventbriteClient, HttpEventbriteClient, Owner
from sources.expo.client import ExpoClient
from sources.google_maps.client import HttpMapsClient, MapsClient
from sources.resend.client import DEFAULT_BASE_URL as RESEND_BASE_URL
from sources.resend.client import ResendClient
from sources.synthetic.behaviour import BehaviourConfig
from sources.synthetic.world import CityConfig, World, build_world
from store.db import make_engine
from store.keys import RedisKeys

EXPO_ACCESS_TOKEN_ENV = "EXPO_ACCESS_TOKEN"


class PostgresResource(dg.ConfigurableResource):
    """The app's Postgres (source of truth for users, swipes, RSVPs; durable feed copy)."""

    database_url: str
    _engine: sa.Engine | None = PrivateAttr(default=None)

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()


class RedisResource(dg.ConfigurableResource):
    """The Redis that holds published feeds."""

    url: str
    prefix: str = "godo"
    feed_ttl_seconds: int = 3 * 24 * 3600

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=30)

    def key_layout(self) -> RedisKeys:
        return RedisKeys(prefix=self.prefix)


class ImpressionRetentionResource(dg.ConfigurableResource):
    """How the impression log's daily partitions are kept (`GODO_IMPRESSION_*` settings)."""

    retention_days: int = 90
    partitions_ahead_days: int = 3


class MLflowResource(dg.ConfigurableResource):
    """MLflow tracking and the model registry whose `champion` alias decides what publishes."""

    tracking_uri: str
    artifact_root: str | None = None
    experiment: str = "godo-ranking"
    model_name: str = "godo-feed-ranker"
    ui_url: str = "http://127.0.0.1:5000"

    def registry(self) -> ModelRegistry:
        return ModelRegistry(
            tracking_uri=self.tracking_uri,
            experiment=self.experiment,
            model_name=self.model_name,
            artifact_root=self.artifact_root,
        )

    def links(self, registry: ModelRegistry) -> MlflowLinks:
        """Links into the MLflow UI for `registry`'s experiment and model."""
        return MlflowLinks(self.ui_url, registry.experiment_id, self.model_name)


class LocalStorage(dg.ConfigurableResource):
    """Files the pipelines keep: model artifacts."""

    data_dir: str

    def folder(self, *parts: str) -> Path:
        path = Path(self.data_dir).joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def models(self) -> Path:
        return self.folder("models")


class SyntheticCityResource(dg.ConfigurableResource):
    """Parameters of the synthetic city; the same parameters always give the same city."""

    seed: int = 7
    metros: list[str] = list(DEFAULT_METROS)
    n_venues: int = 300
    n_events: int = 4000
    n_users: int = 4000
    behaviour_seed: int = 11
    sessions_per_user: float = 6.0
    now: str | None = None  # ISO-8601; unset means the current hour
    # Off in production: there the app's users are real and no hidden truth exists.
    enabled: bool = True

    def city_config(self, now: datetime | None = None) -> CityConfig:
        """The city as of `now` (else the configured `now`, else the current hour)."""
        if now is None:
            now = (
                datetime.fromisoformat(self.now)
                if self.now
                else datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            )
        return CityConfig(
            seed=self.seed,
            metros=tuple(self.metros),
            n_venues=self.n_venues,
            n_events=self.n_events,
            n_users=self.n_users,
            now=now,
        )

    def behaviour_config(self) -> BehaviourConfig:
        return BehaviourConfig(seed=self.behaviour_seed, sessions_per_user=self.sessions_per_user)

    def world(self, now: datetime | None = None) -> World:
        return build_world(self.city_config(now))


class EventbriteResource(dg.ConfigurableResource):
    """The Eventbrite API v3, and which organizations each metro follows.

    `token` comes from `dg.EnvVar("EVENTBRITE_TOKEN")` in deployments; `base_url` points the
    real client at a local fake in the demo and the tests.
    """

    token: str
    base_url: str = "https://www.eventbriteapi.com/v3/"
    # What each metro follows: organization, venue and organizer ids (metro -> ids).
    followed_organizations: dict[str, list[str]] = {}
    followed_venues: dict[str, list[str]] = {}
    followed_organizers: dict[str, list[str]] = {}
    calls_per_hour: int = 2000
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    # "current_future" in production (ended events keep the state they were last seen in);
    # the demo backfills "all", since its synthetic history predates its first ingest.
    time_filter: str | None = "current_future"
    full_refresh: bool = False
    overlap_minutes: int = 60
    # Single-event status confirmations per partition run (listings may say "live" for a
    # cancelled event); the soonest events go first when the cap bites.
    status_checks_per_run: int = 500
    # Venues fetched by id per partition run, for records naming a `venue_id` that no record
    # expands (their events are quarantined until the venue is known); a 404 is asked again
    # after `venue_not_found_retry_hours`.
    venue_fetches_per_run: int = 500
    venue_not_found_retry_hours: int = 24

    def followed(self, metro: str) -> list[tuple[Owner, str]]:
        """The listings to page through for `metro`, as (owner kind, owner id)."""
        kinds: list[tuple[Owner, dict[str, list[str]]]] = [
            ("organizations", self.followed_organizations),
            ("venues", self.followed_venues),
            ("organizers", self.followed_organizers),
        ]
        return [(owner, owner_id) for owner, ids in kinds for owner_id in ids.get(metro, [])]

    def client(self) -> EventbriteClient:
        return HttpEventbriteClient(
            token=self.token,
            base_url=self.base_url,
            calls_per_hour=self.calls_per_hour,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            time_filter=self.time_filter,
        )


class GoogleMapsResource(dg.ConfigurableResource):
    """Google Geocoding and Places (New); the key comes from `dg.EnvVar("GOOGLE_MAPS_API_KEY")`."""

    api_key: str
    geocode_base_url: str = "https://maps.googleapis.com/maps/api/"
    places_base_url: str = "https://places.googleapis.com/v1/"
    timeout_seconds: float = 10.0
    max_attempts: int = 5

    def client(self) -> MapsClient:
        return HttpMapsClient(
            api_key=self.api_key,
            geocode_base_url=self.geocode_base_url,
            places_base_url=self.places_base_url,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
        )


class ExpoResource(dg.ConfigurableResource):
    """Expo's push service. `base_url` is `https://exp.host` in production, the fake in tests.

    The access token (only needed with Expo's "enhanced push security") is either given or
    read from `$EXPO_ACCESS_TOKEN` when the client is built, so it never sits in run config.
    """

    base_url: str = "https://exp.host"
    access_token: str | None = None
    # The client's own retries of one request (429/5xx/network), with capped backoff.
    max_attempts: int = 5
    max_backoff_seconds: float = 30.0

    def client(self) -> ExpoClient:
        token = self.access_token or os.environ.get(EXPO_ACCESS_TOKEN_ENV) or None
        return ExpoClient(
            self.base_url,
            access_token=token,
            max_attempts=self.max_attempts,
            max_backoff_seconds=self.max_backoff_seconds,
        )


class ResendResource(dg.ConfigurableResource):
    """Resend (or its local fake), the sender address, and what unsubscribe links need.

    `api_key` comes from `dg.EnvVar("RESEND_API_KEY")` and `link_secret` (the API's
    `GODO_JWT_SECRET`, which verifies the links) from `dg.EnvVar("GODO_JWT_SECRET")` outside
    development, so neither is written into run configuration.
    """

    base_url: str = RESEND_BASE_URL
    api_key: str
    sender: str
    public_api_url: str = "http://127.0.0.1:8000"
    link_secret: str
    max_attempts: int = 5
    max_backoff_seconds: float = 60.0

    def client(self) -> ResendClient:
        return ResendClient(
            api_key=self.api_key,
            base_url=self.base_url,
            max_attempts=self.max_attempts,
            max_backoff_seconds=self.max_backoff_seconds,
        )

    def unsubscribe_url(self, user_id: int) -> str:
        token = issue_unsubscribe_token(self.link_secret, user_id)
        return f"{self.public_api_url.rstrip('/')}/v1/email/unsubscribe?token={token}"
