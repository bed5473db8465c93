"""bench.serve: issue 15's targets and ratios from one run's phases, and the servers' logs."""

from __future__ import annotations

import math

import pytest

from bench.load import Phase
from bench.serve import Results, fell_back, log_summary, targets_for


def phase(rps: float, p99_ms: float = 5.0, cpu_by_process: tuple[float, ...] = (1.0,)) -> Phase:
    """`rps` over a 10 s window."""
    return Phase(
        requests=int(rps * 10),
        errors=0,
        seconds=10.0,
        p50_ms=1.0,
        p99_ms=p99_ms,
        server_cpu=sum(cpu_by_process),
        client_cpu=0.1,
        generator="wrk",
        server_cpu_by_process=cpu_by_process,
    )


def results(
    *,
    floor: float = 1000,
    feed: float = 500,
    p99_half: float = 8.0,
    two_workers: list[Phase] | None = None,
    fallback: float = 200,
) -> Results:
    return Results(
        floor=phase(floor),
        bare=phase(800),
        feed=phase(feed),
        feed_2_workers_attempts=two_workers or [phase(900, cpu_by_process=(0.0, 5.0, 4.5))],
        feed_fallback=phase(fallback),
        floor_half=phase(feed / 2),
        bare_half=phase(feed / 2),
        feed_half=phase(feed / 2, p99_ms=p99_half),
    )


def test_every_target_met() -> None:
    targets = targets_for(results())
    assert [(t.name, round(t.value, 3), t.met) for t in targets] == [
        ("feed / floor rps", 0.5, True),
        ("feed p99 at half load", 8.0, True),
        ("feed 2 workers / 1 worker", 1.8, True),
        ("feed on Postgres / floor rps", 0.2, True),
    ]


@pytest.mark.parametrize(
    ("run", "missed"),
    [
        (results(feed=390), "feed / floor rps"),
        (results(p99_half=10.5), "feed p99 at half load"),
        (results(two_workers=[phase(790, cpu_by_process=(5.0, 4.0))]), "feed 2 workers / 1 worker"),
        (results(fallback=149), "feed on Postgres / floor rps"),
    ],
)
def test_each_target_can_be_missed(run: Results, missed: str) -> None:
    assert [t.name for t in targets_for(run) if not t.met] == [missed]


def test_the_most_even_two_worker_run_counts() -> None:
    lopsided = phase(600, cpu_by_process=(0.0, 5.0, 0.2))
    even = phase(850, cpu_by_process=(0.0, 4.0, 3.8))
    run = results(two_workers=[lopsided, even])
    assert run.feed_2_workers is even
    assert run.ratios()["feed_2_workers_over_1"] == pytest.approx(1.7)


def test_ratios_without_a_floor_are_nan() -> None:
    run = results(floor=0)
    assert math.isnan(run.ratios()["feed_over_floor"])
    assert not targets_for(run)[0].met


def test_fallbacks_are_counted_from_the_log() -> None:
    lines = [
        "WARNING store.feed [a]: redis unavailable, reading feed of user 3 from postgres",
        "2026-12-03 WARNING serving.ratelimit [b]: rate limiter cannot reach Redis",
        "WARNING store.feed [c]: redis unavailable, reading feed of user 4 from postgres",
    ]
    assert fell_back(lines) == 2
    assert log_summary({"floor": [], "Redis down": lines}) == (
        "floor 0, Redis down 3 (2 reads fell back to Postgres)"
    )
