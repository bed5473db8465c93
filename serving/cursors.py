"""Opaque feed cursors: which run a client is paging through, and the last rank it saw.

The mobile app must not build or read cursors, so they are URL-safe base64 of a small JSON
document; a cursor that does not decode to one is a 422 naming the `cursor` parameter, like any
other bad query value. Pinning the run keeps paging consistent while a newer run is published;
continuing after a rank (not an offset) keeps pages stable while the user swipes.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from fastapi.exceptions import RequestValidationError

from serving.schemas import storable_text_error

# Ranks are `recommendations.rank`, a SMALLINT: a cursor past it was not issued by the API.
MAX_RANK = 2**15 - 1


@dataclass(frozen=True)
class Cursor:
    run_id: str
    after_rank: int


def encode(cursor: Cursor) -> str:
    raw = json.dumps({"r": cursor.run_id, "k": cursor.after_rank}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(value: str) -> Cursor:
    """The cursor in `value`, or a 422 that names the `cursor` query parameter."""
    try:
        padded = value + "=" * (-len(value) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        run_id, after_rank = data["r"], data["k"]
        if not isinstance(run_id, str) or not run_id or type(after_rank) is not int:
            raise ValueError("wrong field types")
        if not 0 <= after_rank <= MAX_RANK:
            raise ValueError("rank out of range")
        text_error = storable_text_error(run_id)
        if text_error is not None:
            raise ValueError(f"run id {text_error}")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as error:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "cursor"),
                    "msg": "not a cursor this API issued; start again without one",
                    "type": "value_error",
                    "input": value,
                    "ctx": {"error": str(error)},
                }
            ]
        ) from error
    return Cursor(run_id=run_id, after_rank=after_rank)
