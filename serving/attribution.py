"""Impression ids sent back with swipes and RSVPs: verified, counted, then stored or ignored.

An id that does not verify (malformed, forged, another user's, another event's, expired) is
ignored, never an error: the swipe or RSVP is what matters, and older app versions, replays
and clock trouble must not cost the user their action. Each id counts once in
`godo_impression_attributions_total` by outcome, so a spike of `forged` or `foreign_user`
shows up on a dashboard instead of in a 4xx rate. Routers verify first (pure CPU: one MAC)
and count once the action is stored, so a refused request counts nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import HTTPConnection

from core.impression_ids import RejectedImpression, verify_impression
from serving.observability import record_attribution


@dataclass(frozen=True)
class Attribution:
    """What an action's impression id came to: the uuid to store (None when ignored or
    absent) and the outcome to count (None when no id was sent)."""

    impression_id: uuid.UUID | None
    outcome: str | None


NO_ID = Attribution(None, None)


@dataclass(frozen=True)
class ImpressionCheck:
    """The app's impression key and max age, bound to the request whose metrics count."""

    request: HTTPConnection
    key: bytes
    max_age: timedelta

    def verify(
        self, token: str | None, *, user_id: int, event_id: str, now: datetime | None = None
    ) -> Attribution:
        """Whether `token` may be stored with `user_id`'s action on `event_id`, and why not."""
        if token is None:
            return NO_ID
        try:
            impression = verify_impression(
                self.key,
                token,
                user_id=user_id,
                event_id=event_id,
                now=now or datetime.now(UTC),
                max_age=self.max_age,
            )
        except RejectedImpression as rejected:
            return Attribution(None, rejected.reason)
        return Attribution(impression.impression_id, "attributed")

    def count(self, attributions: Iterable[Attribution], *, action: str) -> None:
        """Count the outcomes of stored actions (`action`: "swipe" or "rsvp")."""
        for attribution in attributions:
            if attribution.outcome is not None:
                record_attribution(self.request, action=action, outcome=attribution.outcome)
