"""bench.profile_summary: samples charged to the innermost bucket, loop thread only."""

from __future__ import annotations

import pytest

from bench.profile_summary import OTHER, bucket_of, summarize

LOOP = "thread (1);run (uvicorn/server.py:86);Runner.run (asyncio/runners.py:118)"
ROUTE = "app (fastapi/routing.py:154);get_feed (serving/routers/feed.py:35)"


def test_redis_time_inside_the_feed_is_the_redis_clients() -> None:
    frames = [
        *LOOP.split(";"),
        *ROUTE.split(";"),
        "_from_redis (store/feed.py:420)",
        "execute (redis/asyncio/client.py:2227)",
    ]
    assert bucket_of(frames) == "redis client (redis-py, hiredis)"


def test_a_frame_in_no_bucket_is_charged_to_its_nearest_caller_that_has_one() -> None:
    frames = [*ROUTE.split(";"), "mint_page (core/impression_ids.py:112)", "<listcomp> (x.py:1)"]
    assert bucket_of(frames) == "impressions (ids, XADD entry)"
    assert bucket_of(["select (selectors.py:1)"]) == OTHER


def test_shares_count_only_the_loop_thread() -> None:
    lines = [
        f"{LOOP};{ROUTE};_from_redis (store/feed.py:420) 3",
        f"{LOOP};send (uvicorn/protocols/http/httptools_impl.py:524) 1",
        "thread (2);_worker (concurrent/futures/thread.py:81);wait (threading.py:327) 50",
    ]
    shares = summarize(lines)
    assert shares["feed read (store.feed, caches, steps)"] == pytest.approx(0.75)
    assert shares["uvicorn HTTP (httptools parse, transport writes)"] == pytest.approx(0.25)
    assert sum(shares.values()) == pytest.approx(1.0)
