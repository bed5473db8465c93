"""Which X-Forwarded-For entry names the client, for a given number of trusted proxies."""

from __future__ import annotations

import pytest

from serving.proxy import forwarded_client


def _headers(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", value.encode()) for value in values]


@pytest.mark.parametrize(
    ("values", "hops", "client"),
    [
        (("1.1.1.1, 2.2.2.2",), 1, "2.2.2.2"),  # the proxy's own append, not the client's
        (("1.1.1.1, 2.2.2.2, 3.3.3.3",), 2, "2.2.2.2"),
        (("1.1.1.1", "2.2.2.2"), 1, "2.2.2.2"),  # repeated headers read in order
        (("2001:db8::1",), 1, "2001:db8::1"),
        (("1.1.1.1",), 2, None),  # fewer entries than proxies: not through all of them
        (("not-an-ip",), 1, None),
        ((), 1, None),
        (("1.1.1.1",), 0, None),  # no trusted proxy: the peer address stands
    ],
)
def test_the_client_is_the_entry_the_trusted_proxies_appended(
    values: tuple[str, ...], hops: int, client: str | None
) -> None:
    assert forwarded_client(_headers(*values), hops) == client
