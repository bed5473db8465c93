"""bench.targets and the pure parts of bench.load: targets met or missed, by how much."""

from __future__ import annotations

import math

import pytest

from bench.load import Phase, cpu_spent, percentile, worker_balance
from bench.targets import Target, figure, ratio, report


@pytest.mark.parametrize(
    ("value", "op", "bound", "met", "margin"),
    [
        (0.45, ">=", 0.4, True, 0.05),
        (0.4, ">=", 0.4, True, 0.0),
        (0.3, ">=", 0.4, False, -0.1),
        (8.0, "<=", 10.0, True, 2.0),
        (10.0, "<=", 10.0, True, 0.0),
        (12.5, "<=", 10.0, False, -2.5),
    ],
)
def test_target_met_and_margin(
    value: float, op: str, bound: float, met: bool, margin: float
) -> None:
    target = Target("t", value, op, bound)  # type: ignore[arg-type]
    assert target.met is met
    assert target.margin == pytest.approx(margin)


def test_an_unmeasured_figure_meets_no_target() -> None:
    for op in (">=", "<="):
        target = Target("t", math.nan, op, 1.0)  # type: ignore[arg-type]
        assert not target.met
        assert "not measured" in target.describe()
        assert target.figures()["value"] is None


def test_describe_names_the_gap_of_a_miss() -> None:
    short = Target("feed / floor rps", 0.3, ">=", 0.4).describe()
    assert "0.30x   (target >= 0.4x: missed, 0.10x short, at 75% of it)" in short
    over = Target("feed p99 at half load", 25.0, "<=", 10.0, "ms").describe()
    assert "(target <= 10ms: missed, 15.00ms over, 2.5x the bound)" in over
    met = Target("feed p99 at half load", 7.5, "<=", 10.0, "ms").describe()
    assert "7.50ms   (target <= 10ms: met, 2.50ms to spare)" in met


def test_figures_are_plain_json_values() -> None:
    assert Target("publish", 0.9, ">=", 0.8).figures() == {
        "name": "publish",
        "value": 0.9,
        "op": ">=",
        "bound": 0.8,
        "unit": "x",
        "met": True,
        "margin": 0.1,
    }


def test_report_aligns_names() -> None:
    lines = report([Target("a", 1.0, ">=", 0.5), Target("longer name", 1.0, ">=", 2.0)])
    assert lines[0].index("1.00x") == lines[1].index("1.00x")
    assert "met" in lines[0]
    assert "missed" in lines[1]


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(1.0, 2.0, 0.5), (1.0, 0.0, math.nan), (math.nan, 2.0, math.nan), (1.0, math.nan, math.nan)],
)
def test_ratio(numerator: float, denominator: float, expected: float) -> None:
    result = ratio(numerator, denominator)
    assert (math.isnan(result) and math.isnan(expected)) or result == expected


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100..1, unsorted on purpose
    assert percentile(values, 0.5) == 51.0
    assert percentile(values, 0.99) == 100.0
    assert percentile([3.0], 0.99) == 3.0
    assert math.isnan(percentile([], 0.5))


def test_cpu_spent_per_process() -> None:
    before = {10: 5.0, 11: 1.0, 12: 2.0}
    after = {10: 5.5, 11: 3.0, 13: 0.25}  # 12 exited, 13 started in between
    assert cpu_spent(before, after) == (0.5, 2.0, 0.25)


def test_phase_rates_and_cpu_per_request() -> None:
    phase = Phase(
        requests=2000,
        errors=0,
        seconds=4.0,
        p50_ms=1.0,
        p99_ms=3.0,
        server_cpu=3.0,
        client_cpu=0.5,
        generator="wrk",
        server_cpu_by_process=(1.0, 2.0),
    )
    assert phase.rps == 500.0
    assert phase.cpu_ms_per_request == 1.5
    figures = phase.figures()
    assert figures["server_cores"] == 0.75
    assert figures["server_cores_by_process"] == [0.25, 0.5]
    idle = Phase(0, 0, 0.0, math.nan, math.nan, 0.0, 0.0, "wrk")
    assert math.isnan(idle.rps)
    assert math.isnan(idle.cpu_ms_per_request)


@pytest.mark.parametrize(
    ("cpu_by_process", "balance"),
    [
        ((0.01, 2.0, 1.5), 0.75),  # the master idles; the workers' share counts
        ((0.0, 2.0, 0.05), 0.025),  # one worker got (nearly) every connection
        ((1.0, 1.0), 1.0),
    ],
)
def test_worker_balance(cpu_by_process: tuple[float, ...], balance: float) -> None:
    assert worker_balance(cpu_by_process) == pytest.approx(balance)


@pytest.mark.parametrize("cpu_by_process", [(), (1.0,), (0.0, 0.0)])
def test_worker_balance_needs_two_busy_processes(cpu_by_process: tuple[float, ...]) -> None:
    assert math.isnan(worker_balance(cpu_by_process))


def test_figure_rounds_and_turns_nan_into_none() -> None:
    assert figure(1.23456, 2) == 1.23
    assert figure(math.nan, 2) is None
