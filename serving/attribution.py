"""Impression ids sent back with swipes and RSVPs: verified, counted, then stored or ignored.

An id that does not verify (malformed, forged, another user's, another event's, expired) is
ignored, never an error: the swipe or RSVP is what matters, and older app versions, replays
and clock trouble must not cost the user their action. Each id counts once in
`godo_impression_attributions_total` by outcome, so a spike of `forged` or `foreign_user`
shows up on a dashboard instead of in a 4xx rate. Verification is pure CPU (an HMAC), so
it runs wherever the route does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import HTTPConnection

from godo.impression_ids import RejectedImpression, verify_impression
from serving.observability import record_attribution


@dataclass(frozen=True)
class ImpressionCheck:
    """The app's impression key and max age, bound to the request whose metrics count."""

    request: HTTPConnection
    key: bytes
    max_age: timedelta

    def attribute(
        self,
        token: str | None,
        *,
        user_id: int,
        event_id: str,
        action: str,
        now: datetime | None = None,
    ) -> uuid.UUID | None:
        """The impression `token` names if it may be stored with this action, else None."""
        if token is None:
            return None
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
            record_attribution(self.request, action=action, outcome=rejected.reason)
            return None
        record_attribution(self.request, action=action, outcome="attributed")
        return impression.impression_id
