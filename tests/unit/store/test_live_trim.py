"""Whether a resuming client missed trimmed events, from XINFO STREAM on Redis 6.2 and 7.

Redis 7 reports `entries-added`; 6.2 (the embedded server) does not. Both must tell a client
whose position is before the oldest entry left to resync, and a client inside the stream not to.
"""

from __future__ import annotations

from typing import Any

import pytest

from store.live_events import _before_trimmed

FIRST = ("1700000000000-5", {b"type": b"friend_rsvp"})


def _info(version: int, *, length: int, added: int | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"length": length, "first-entry": FIRST, "last-generated-id": "1-0"}
    if version >= 7:
        info["entries-added"] = length if added is None else added
    return info


@pytest.mark.parametrize("version", [6, 7])
def test_a_position_before_the_oldest_entry_of_a_trimmed_stream_resyncs(version: int) -> None:
    assert _before_trimmed(_info(version, length=500, added=700), "1700000000000-1")


@pytest.mark.parametrize("version", [6, 7])
def test_a_position_inside_the_stream_resumes(version: int) -> None:
    info = _info(version, length=500, added=700)
    assert not _before_trimmed(info, "1700000000000-5")
    assert not _before_trimmed(info, "1700000000001-0")


def test_an_untrimmed_stream_lost_nothing() -> None:
    """Redis 7's own count, or on 6.2 the counter `_start_id` folds in, tells it apart; a
    stream with no count at all costs a needless resync, never a silent gap."""
    assert not _before_trimmed(_info(7, length=3), "0-0")
    assert not _before_trimmed({**_info(6, length=3), "entries-added": 3}, "0-0")
    assert _before_trimmed(_info(6, length=3), "0-0")


def test_an_empty_stream_never_resyncs() -> None:
    assert not _before_trimmed({"length": 0, "first-entry": None}, "1700000000000-1")
