"""Where a server's CPU goes, from a py-spy profile: a few buckets instead of a flame graph.

    py-spy record --pid <uvicorn pid> --duration 15 --rate 250 --format raw -o feed.txt
    uv run python -m bench.profile_summary feed.txt [--json]

Why: `bench/README.md` keeps the feed's profile as a short table next to its figures, so the
next engineer sees what is left to win without opening a flame graph. Each sample of the
event loop's thread is charged to the innermost frame that belongs to a bucket (so Redis
client time spent inside the feed's code is the Redis client's, and a middleware's send
wrapper that hands bytes to uvicorn is uvicorn's). Idle samples and other threads (the
thread pool waiting for work) are left out: the table is shares of the loop's busy time.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (bucket, substrings of a frame's file path), innermost match wins; order only breaks ties
# between patterns that could match the same frame.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("redis client (redis-py, hiredis)", ("redis/", "hiredis")),
    ("redis group commit (store.redis_batch)", ("store/redis_batch.py",)),
    (
        "feed read (store.feed, caches, steps)",
        (
            "store/feed.py",
            "store/live_cache.py",
            "store/cards.py",
            "store/steps.py",
            "store/experiments.py",
        ),
    ),
    ("impressions (ids, XADD entry)", ("store/impressions.py", "core/impression_ids.py")),
    (
        "feed body (orjson, cursor, etag)",
        ("serving/feed_body.py", "serving/cursors.py", "serving/routers/feed.py"),
    ),
    ("auth (token memory, deps)", ("core/tokens.py", "serving/deps.py", "fastapi/security")),
    ("FastAPI dependencies and params", ("fastapi/dependencies", "fastapi/_compat", "pydantic")),
    (
        "FastAPI/Starlette routing and handler",
        (
            "fastapi/routing.py",
            "starlette/routing.py",
            "fastapi/applications.py",
            "starlette/applications.py",
            "starlette/responses.py",
            "starlette/_exception_handler.py",
            "fastapi/middleware/asyncexitstack.py",
            "starlette/middleware/exceptions.py",
            "starlette/middleware/errors.py",
            "fastapi/telemetry",
            "fastapi/_body_limit.py",
        ),
    ),
    (
        "middleware (ours, CORS, GZip, metrics)",
        (
            "serving/ratelimit.py",
            "serving/observability.py",
            "serving/security.py",
            "serving/request_ids.py",
            "serving/body_limit.py",
            "serving/proxy.py",
            "serving/problems.py",
            "starlette/middleware",
            "prometheus_client",
            "uvicorn/middleware",
            "starlette/datastructures.py",
        ),
    ),
    ("uvicorn HTTP (httptools parse, transport writes)", ("uvicorn/protocols",)),
]
OTHER = "event loop, asyncio and the rest"


def bucket_of(frames: list[str]) -> str:
    """The bucket of the innermost frame that has one."""
    for frame in reversed(frames):
        location = frame.rsplit("(", 1)[-1]
        for name, patterns in BUCKETS:
            if any(pattern in location for pattern in patterns):
                return name
    return OTHER


def is_loop_thread(frames: list[str]) -> bool:
    """A sample of the thread running uvicorn's event loop (not a thread-pool worker)."""
    return any("uvicorn/server.py" in frame or "asyncio/runners.py" in frame for frame in frames)


def summarize(lines: Iterable[str]) -> dict[str, float]:
    """Bucket -> share of the loop thread's samples (py-spy `--format raw` lines)."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if is_loop_thread(frames):
            counts[bucket_of(frames)] += int(count)
    total = sum(counts.values())
    return {name: counts[name] / total for name, _ in [*BUCKETS, (OTHER, ())]} if total else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--json", action="store_true", help="print the shares as JSON")
    args = parser.parse_args()
    shares = summarize(args.profile.read_text().splitlines())
    if args.json:
        print(json.dumps({name: round(share, 4) for name, share in shares.items()}))
        return
    for name, share in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"  {share * 100:5.1f}%  {name}")


if __name__ == "__main__":
    main()
