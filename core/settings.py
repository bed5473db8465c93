"""One `Settings` object for every part of Godo.

Values come from the environment (and an optional `.env`), so the same code runs on a laptop
with embedded servers and against managed Postgres/Redis in production. `DATABASE_URL` and
`REDIS_URL` keep their conventional unprefixed names; everything else is `GODO_*`.

Relative paths (the default `.godo`, a relative `GODO_DATA_DIR` or `GODO_BACKUP_DIR`, the
`.env` file) are taken from the repository root, not the working directory: a notebook's
kernel starts in `notebooks/`, a test or a script anywhere, and all must find the same data.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.impression_ids import impression_key
from core.metros import DEFAULT_METROS
from core.secret_strength import weakness

# The checkout (in the image: /app) that holds this package; relative paths start here.
REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_JWT_SECRET = "godo-development-secret-change-me-0123456789"
# Feed cursors are signed with a key derived from the secret under this label, so the same
# secret signs nothing else alike (`serving.cursors`).
_CURSOR_KEY_LABEL = b"godo feed cursors v1"

Environment = Literal["development", "staging", "production"]


class Settings(BaseSettings):
    """Configuration for pipelines, serving and the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="GODO_", env_file=REPO_ROOT / ".env", extra="ignore", populate_by_name=True
    )

    environment: Environment = "development"
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "GODO_DATABASE_URL"),
        description="SQLAlchemy URL of the app's Postgres; unset means an embedded server.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "GODO_REDIS_URL"),
        description="URL of the Redis holding published feeds; unset means an embedded server.",
    )
    redis_prefix: str = Field(
        default="godo", description="Namespace of every Redis key, so several apps share one."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; unset means a SQLite store in data_dir."
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description="Where new MLflow experiments keep artifacts; unset: data_dir/mlartifacts.",
    )
    mlflow_experiment: str = Field(default="godo-ranking", description="MLflow experiment name.")
    mlflow_model_name: str = Field(
        default="godo-feed-ranker", description="Registered model whose `champion` publishes."
    )
    mlflow_ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="The MLflow UI as a browser reaches it (`godo mlflow`'s default): Dagster's "
        "links to runs and model versions start here.",
    )
    synthetic_city: bool | None = Field(
        default=None,
        description="Whether the synthetic city (and its oracle) exists; unset: development only.",
    )
    data_dir: Path = Field(
        default=REPO_ROOT / ".godo",
        description="The one git-ignored folder for generated data; relative to the repo root.",
    )
    backup_dir: Path | None = Field(
        default=None,
        description="Where `godo backup create` writes dumps and manifests (relative to the "
        "repo root); unset: data_dir/backups.",
    )
    pg_bin_dir: Path | None = Field(
        default=None,
        description="Folder of pg_dump/pg_restore for `godo backup` (e.g. "
        "/usr/lib/postgresql/16/bin), preferred over PATH and the embedded server's binaries "
        "of the same major version; the oldest major not older than the server's wins.",
    )
    jwt_secret: SecretStr = Field(default=SecretStr(DEV_JWT_SECRET))
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_audience: str = "authenticated"  # what Supabase puts in `aud`
    jwt_ttl_seconds: int = Field(default=3600, gt=0)
    jwks_url: str | None = Field(
        default=None,
        description="JWKS URL for RS256/ES256 tokens, e.g. "
        "https://<project>.supabase.co/auth/v1/.well-known/jwks.json; unset: HS256 only.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (JSON list); empty: none."
    )
    rate_limit_per_minute: int = Field(default=100, gt=0, description="Sustained requests/min.")
    rate_limit_burst: int = Field(default=200, gt=0, description="Requests allowed in a burst.")
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Proxies in front of the API that append to X-Forwarded-For (Fly: 1); the "
        "client is that many entries from the right. 0: the peer address.",
    )
    live_max_per_user: int = Field(
        default=5, gt=0, description="Open /v1/live WebSockets one user may hold per process."
    )
    live_max_per_address: int = Field(
        default=50,
        gt=0,
        description="Open /v1/live WebSockets one client address may hold per process.",
    )
    api_docs: bool | None = Field(
        default=None,
        description="Serve /docs, /redoc and /openapi.json; unset: in development only.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token /metrics requires when set; unset: /metrics is public in "
        "development and off (404) elsewhere.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest request body the API reads; above it a 413, before reading it. "
        "The biggest legitimate body (100 swipes) is a few tens of KiB.",
    )
    health_max_run_age_seconds: int = Field(
        default=36 * 3600, gt=0, description="Older published runs make /health `degraded`."
    )
    sentry_dsn: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SENTRY_DSN", "GODO_SENTRY_DSN"),
        description="Errors go to Sentry when set.",
    )
    metros: list[str] = Field(
        default=list(DEFAULT_METROS),
        min_length=1,
        description="Metro areas served; each is one partition of the ingest assets.",
    )
    eventbrite_base_url: str = "https://www.eventbriteapi.com/v3/"
    eventbrite_organizations: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Eventbrite organization ids followed per metro, e.g. "
        '{"san-francisco": ["1234567890"]} (GODO_EVENTBRITE_ORGANIZATIONS, JSON).',
    )
    eventbrite_calls_per_hour: int = Field(default=2000, gt=0)
    eventbrite_time_filter: Literal["current_future", "all"] = Field(
        default="current_future",
        description="Which events the listings return: upcoming ones in production; `all` "
        "where the history predates the first ingest (the local fake's synthetic city, whose "
        "past swipes need their past events).",
    )
    geocode_base_url: str = "https://maps.googleapis.com/maps/api/"
    places_base_url: str = "https://places.googleapis.com/v1/"
    expo_base_url: str = Field(
        default="https://exp.host",
        description="Expo push service root (`/--/api/v2/push/...` is appended); the demo and "
        "tests point it at `sources.expo.fake`. The optional access token is read from "
        "EXPO_ACCESS_TOKEN at run time.",
    )
    feed_size: int = Field(default=50, gt=0, le=500, description="Events kept per user and run.")
    feed_run_ttl_seconds: int = Field(
        default=3 * 24 * 3600, gt=0, description="How long a published run's Redis keys live."
    )
    card_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="The most an API process trusts a cached event card or friend set; Redis "
        "counters invalidate them at once on writes, this only bounds a missed invalidation.",
    )
    log_format: Literal["json", "text"] = Field(
        default="text",
        description="`json` (one object per line, for log collectors) in production; `text` "
        "for a terminal.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    refresh_min_new_swipes: int = Field(
        default=2000,
        gt=0,
        description="New swipes since the last published run that make the "
        "`refresh_after_new_swipes` sensor refresh features and republish.",
    )
    max_concurrent_steps: int = Field(
        default=4, gt=0, description="Steps one Dagster run executes at once (multiprocess)."
    )
    dagster_database: str = Field(
        default="godo_dagster",
        description="Database (on the app's Postgres server) that `godo dagster` and the demo "
        "keep Dagster's runs, event logs and schedules in, unless DAGSTER_POSTGRES_URL is set.",
    )
    # Transactional email (Resend): invitations, weekly digest, unsubscribe links.
    resend_base_url: str = Field(
        default="https://api.resend.com",
        description="Resend API root (`/emails` is appended); tests and the demo point it at "
        "`sources.resend.fake`.",
    )
    resend_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("RESEND_API_KEY", "GODO_RESEND_API_KEY"),
        description="Resend API key; unset: the API answers 503 to `POST /v1/invites`.",
    )
    email_sender: str = Field(
        default="Godo <no-reply@godo.invalid>",
        description="`from` of every email; its domain must be verified with Resend.",
    )
    public_api_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The API's public root, for unsubscribe links in emails.",
    )
    invite_url_template: str = Field(
        default="http://127.0.0.1:8000/v1/invites/{token}",
        description="The link an invitation email carries; `{token}` is the signed invite token "
        "(an app deep link or web page that calls `GET /v1/invites/{token}`).",
    )
    invite_ttl_days: int = Field(default=14, gt=0, description="How long an invite link works.")
    invite_daily_limit: int = Field(
        default=20, gt=0, description="Invites one user may send in any 24 hours."
    )
    invite_recipient_daily_limit: int = Field(
        default=3, gt=0, description="Invites one address may receive in any 24 hours."
    )
    # Impressions (every feed item served) and their attribution to swipes and RSVPs.
    record_impressions: bool = Field(
        default=True,
        description="Record every feed item served (a Redis stream the `impression_log` asset "
        "moves into Postgres) and give it a signed `impression_id`; off: items carry null.",
    )
    impression_secret: SecretStr | None = Field(
        default=None,
        description="Signs impression ids (32+ characters outside development); unset: a key "
        "derived from GODO_JWT_SECRET, so a deployment needs no second secret. Setting it lets "
        "the ids' key rotate on its own (ids signed with the old key stop attributing).",
    )
    impression_max_age_seconds: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long after serving an impression id still attributes a swipe or RSVP.",
    )
    impression_retention_days: int = Field(
        default=90,
        gt=0,
        description="Days of impressions kept in Postgres; older daily partitions are dropped.",
    )
    impression_partitions_ahead_days: int = Field(
        default=3,
        ge=1,
        description="Daily partitions of `impressions` created ahead of today by the pipeline.",
    )
    # The admin pages (`/admin/...`): who may open them is said by a claim of the token.
    admin_role_claim: str = Field(
        default="app_metadata.role",
        pattern=r"^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$",
        description="Dotted path of the token claim holding the caller's role(s): Supabase "
        "keeps roles set by the service in `app_metadata` (`app_metadata.role`, or "
        "`app_metadata.roles` for a list). Never the top-level `role` of a Supabase token: "
        "that is the Postgres role, `authenticated` for every signed-in user.",
    )
    admin_role: str = Field(
        default="admin",
        min_length=1,
        description="The value that claim must hold (or, when it is a list, contain).",
    )
    # Faults: how serving behaves while Redis is hung or lost (README, "Faults").
    redis_socket_timeout_seconds: float = Field(
        default=0.25,
        gt=0,
        description="Socket (and connect) timeout of the API's Redis clients: Redis answers "
        "the API's commands in about a millisecond, so a longer wait only delays the fallback.",
    )
    redis_breaker_failures: int = Field(
        default=3,
        gt=0,
        description="Consecutive Redis failures (timeouts, refused connections) that open the "
        "API's circuit breaker: requests then skip Redis and read Postgres at once.",
    )
    redis_breaker_open_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long the breaker stays open before a probe may close it (the keeper "
        "probes every second meanwhile).",
    )
    feed_keeper_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often each API process checks that Redis serves the runs Postgres "
        "published, and restores them from Postgres when not (`store.recovery`).",
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    @field_validator("data_dir", "backup_dir")
    @classmethod
    def _anchor_to_repo_root(cls, path: Path | None) -> Path | None:
        """A relative folder means the same one from any working directory."""
        return None if path is None else REPO_ROOT / path.expanduser()

    @model_validator(mode="after")
    def _refuse_default_secret_outside_development(self) -> Settings:
        if self.environment == "development":
            return self
        secret = self.jwt_secret.get_secret_value()
        weak = "the development default" if secret == DEV_JWT_SECRET else weakness(secret)
        if weak is not None:
            raise ValueError(
                f"GODO_JWT_SECRET must be a random value of 32+ characters outside development "
                f"(GODO_ENVIRONMENT={self.environment}); this one is {weak}. Generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        impression = self.impression_secret
        weak = None if impression is None else weakness(impression.get_secret_value())
        if weak is not None:
            raise ValueError(
                "GODO_IMPRESSION_SECRET, when set, must be 32+ random characters outside "
                f"development (GODO_ENVIRONMENT={self.environment}); this one is {weak}"
            )
        return self

    @property
    def serves_docs(self) -> bool:
        """Whether the interactive docs and the OpenAPI document are served."""
        return self.environment == "development" if self.api_docs is None else self.api_docs

    @property
    def impression_key(self) -> bytes:
        """The MAC key of impression ids (`core.impression_ids`): from `impression_secret`, or
        derived from the JWT secret (itself refused outside development when it is the default)."""
        secret = self.impression_secret or self.jwt_secret
        return impression_key(secret.get_secret_value())

    @property
    def cursor_key(self) -> bytes:
        """The MAC key of feed cursors (`serving.cursors`): from the impression secret when
        set, else the JWT secret, under a label of its own."""
        secret = self.impression_secret or self.jwt_secret
        return hmac.digest(secret.get_secret_value().encode(), _CURSOR_KEY_LABEL, "sha256")

    @property
    def data_path(self) -> Path:
        """`data_dir` as an absolute path, created on first use."""
        path = self.data_dir.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def warehouse_path(self) -> Path:
        return self.data_path / "warehouse.duckdb"

    @property
    def backup_path(self) -> Path:
        """`backup_dir` as an absolute path, created on first use; backups hold personal data,
        so the folder is private to its owner."""
        path = (self.backup_dir or self.data_path / "backups").expanduser().resolve()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    @property
    def resolved_mlflow_uri(self) -> str:
        """The tracking URI; the default is a SQLite file, which the registry needs."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_path / 'mlflow.db'}"

    @property
    def resolved_mlflow_artifact_root(self) -> str | None:
        """Where new experiments keep artifacts: the setting, else data_dir/mlartifacts for a
        local store; None for a tracking server, whose own artifact store then decides (a
        folder on this container's disk would be lost and unreachable by the server)."""
        if self.mlflow_artifact_root:
            return self.mlflow_artifact_root
        if self.resolved_mlflow_uri.startswith(("http://", "https://")):
            return None
        return str(self.data_path / "mlartifacts")

    @property
    def has_synthetic_city(self) -> bool:
        if self.synthetic_city is not None:
            return self.synthetic_city
        return self.environment == "development"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
