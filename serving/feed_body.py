"""The feed's JSON body, built from the cards with orjson instead of the response model.

Why: validating ~50 nested cards into `FeedOut` and serializing them (twice: once for the
ETag, once more by FastAPI checking the return value) was the largest CPU cost of a cached
feed read. Here each card's viewer-independent part is turned into a dict once per cached
card and reused by every request that shows it; a request only adds what depends on it
(rank, score, reason, friends going, distance) and orjson writes the bytes.

The body has exactly the shape of `serving.schemas.FeedOut`, which the route still declares
for the OpenAPI schema: `tests/unit/serving/test_feed_body.py` holds the two together field by field
and value by value, and the schemathesis run checks real responses against the schema.

Impression ids are spliced in last. `feed_body` writes a fixed placeholder where each item's
`impression_id` goes; the ETag is taken over that template, so two responses that differ
only in their (per-request, random) ids are the same weak entity and `If-None-Match` still
gets a 304, for which nothing is recorded. `with_impression_ids` then splits the template at
the placeholders and joins the ids in, one pass instead of a second serialization. The split
is exact: orjson writes every quote inside a string with a backslash before it, so the
placeholder's bytes (an unescaped quote, the key, a quote, a colon, the value) can only be
the `impression_id` key itself, which only items have.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

from store.cards import EventCard
from store.feed import Feed

# Datetimes as pydantic writes them (`Z` for UTC), so the body matches the documented model.
_OPTIONS = orjson.OPT_UTC_Z
_PLACEHOLDER = "-"
_ID_SLOT = b'"impression_id":"-"'
_ID_OPEN = b'"impression_id":"'
_ID_CLOSE = b'"'
_NO_ID = b'"impression_id":null'
MAX_MEMO_ENTRIES = 100_000


class _CardDocuments:
    """Each card's shared document, kept while the card object is the one cached.

    Keyed by the card object's identity: the live cache replaces a changed card with a new
    object, so a stale document can never be served for it, and the `is` check guards
    against a recycled id. Bounded; the oldest quarter goes when full.
    """

    def __init__(self, max_entries: int = MAX_MEMO_ENTRIES) -> None:
        self.max_entries = max_entries
        self._documents: dict[int, tuple[EventCard, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def of(self, card: EventCard) -> dict[str, Any]:
        entry = self._documents.get(id(card))
        if entry is not None and entry[0] is card:
            return entry[1]
        document = card_document(card)
        with self._lock:
            if len(self._documents) >= self.max_entries:
                for key in list(self._documents)[: max(1, self.max_entries // 4)]:
                    del self._documents[key]
            self._documents[id(card)] = (card, document)
        return document


_documents = _CardDocuments()


def card_document(card: EventCard) -> dict[str, Any]:
    """The fields of `serving.schemas.EventCardOut` that are the same for every viewer."""
    venue = card.venue
    price = card.price
    return {
        "event_id": card.event_id,
        "name": card.name,
        "category": card.category,
        "metro": card.metro,
        "start_utc": card.start_utc,
        "start_local": card.start_local,
        "timezone": card.timezone,
        "end_utc": card.end_utc,
        "venue": None
        if venue is None
        else {
            "name": venue.name,
            "address": venue.address,
            "latitude": venue.latitude,
            "longitude": venue.longitude,
        },
        "price": {
            "is_free": price.is_free,
            "price_min_cents": price.price_min_cents,
            "price_max_cents": price.price_max_cents,
            "currency": price.currency,
        },
        "image_url": card.image_url,
    }


def feed_body(feed: Feed, next_cursor: str | None) -> bytes:
    """`feed` as the JSON of `serving.schemas.FeedOut`, each `impression_id` a placeholder
    (the template the ETag is taken over); `with_impression_ids` makes it the response."""
    items = [
        {
            **_documents.of(item.card),
            "distance_km": item.distance_km,
            "rank": item.rank,
            "score": item.score,
            "reason": item.reason,
            "friends_going": item.friends_going,
            "impression_id": _PLACEHOLDER,
        }
        for item in feed.items
    ]
    return orjson.dumps(
        {
            "user_id": feed.user_id,
            "run_id": feed.run_id,
            "source": feed.source,
            "cold_start": feed.cold_start,
            "items": items,
            "next_cursor": next_cursor,
        },
        option=_OPTIONS,
    )


def with_impression_ids(template: bytes, ids: list[bytes] | None) -> bytes:
    """The response body: `template` with each item's id in order, or null for every item
    when the page was not recorded (`ids` None)."""
    if ids is None:
        return template.replace(_ID_SLOT, _NO_ID)
    parts = template.split(_ID_SLOT)
    if len(parts) != len(ids) + 1:
        raise ValueError(f"{len(parts) - 1} id slots in the body for {len(ids)} ids")
    pieces = [parts[0]]
    for token, part in zip(ids, parts[1:], strict=True):
        pieces += (_ID_OPEN, token, _ID_CLOSE, part)
    return b"".join(pieces)
