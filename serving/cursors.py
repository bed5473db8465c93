"""Opaque, signed feed cursors: which run a client is paging through, and the last rank it saw.

The mobile app must not build or read cursors. A cursor is URL-safe base64 of a small JSON
document, a `.`, and a keyed BLAKE2b tag (16 bytes) of that document, keyed from the API's
secret (`Settings.cursor_key`, like impression ids: `core.impression_ids`). A cursor that does
not decode, or whose tag does not verify (hand-made, altered, or signed with another key), is
a 422 naming the `cursor` parameter, like any other bad query value. Why signed: the cursor
names a run, and a hand-made one could page through a run nobody should be served (a staged
run a publish never finished). Signing makes every cursor one the API issued for a run it
served; the feed still refuses a pinned run that was never published (`store.feed`), as a
second line.

Pinning the run keeps paging consistent while a newer run is published; continuing after a
rank (not an offset) keeps pages stable while the user swipes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from fastapi.exceptions import RequestValidationError

from serving.schemas import storable_text_error

_TAG_BYTES = 16
# Ranks are `recommendations.rank`, a SMALLINT: a cursor past it was not issued by the API.
MAX_RANK = 2**15 - 1


@dataclass(frozen=True)
class Cursor:
    run_id: str
    after_rank: int


def encode(cursor: Cursor, key: bytes) -> str:
    raw = json.dumps({"r": cursor.run_id, "k": cursor.after_rank}, separators=(",", ":"))
    return f"{_b64(raw.encode())}.{_b64(_tag(key, raw.encode()))}"


def decode(value: str, key: bytes) -> Cursor:
    """The cursor in `value`, or a 422 that names the `cursor` query parameter."""
    try:
        body, dot, tag = value.partition(".")
        if not dot:
            raise ValueError("unsigned")
        raw = _unb64(body)
        if not hmac.compare_digest(_unb64(tag), _tag(key, raw)):
            raise ValueError("bad signature")
        data = json.loads(raw)
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


def _tag(key: bytes, raw: bytes) -> bytes:
    return hashlib.blake2b(raw, key=key, digest_size=_TAG_BYTES).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode())
