"""Response models: the API's public contract, decoupled from `store`'s dataclasses.

Keeping them separate lets `store` change its internals (extra fields, new sources) without
changing what the mobile app receives; pydantic's `from_attributes` does the mapping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "error"]


class FeedItemOut(BaseModel):
    """One ranked event, with what its card in the app shows."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str
    rank: int = Field(description="1-based position in the published list.")
    score: float
    reason: str = Field(description="Why the event was recommended (candidate source).")
    name: str
    category: str
    start_utc: datetime
    end_utc: datetime | None
    venue_name: str | None
    metro: str
    is_free: bool
    price_min_cents: int | None


class FeedOut(BaseModel):
    """A user's feed from the current published run."""

    model_config = ConfigDict(from_attributes=True)

    user_id: int
    run_id: str | None = Field(description="The published run served; null before any run.")
    source: Literal["redis", "postgres", "none"] = Field(
        description="Where the feed was read: the hot copy, the durable copy, or no run yet."
    )
    cold_start: bool = Field(
        description="True when the run had no list for this user and its fallback was served."
    )
    items: list[FeedItemOut]


class HealthOut(BaseModel):
    """Health of the API and the stores it reads."""

    status: Status
    postgres: Status
    redis: Status


class ProblemOut(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field validation errors (422 only)."
    )
