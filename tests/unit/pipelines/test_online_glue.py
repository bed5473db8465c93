"""The online_metrics asset's I/O-free glue: MLflow names, the SRM verdict, the textfile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.evaluation.online import OnlineTables, arms_frame, online_tables
from pipelines.assets.online import OnlineMetricsConfig, window_of
from recommender.online_report import sample_ratio_verdict, step_of, version_metrics, versions
from tests.unit.conftest import HALF_AND_HALF, ONLINE_T0, OUTCOME_SCHEMA
from textfile_metrics import online

T0 = ONLINE_T0
END = datetime(2025, 3, 8, tzinfo=UTC)
SCHEMA = OUTCOME_SCHEMA
ARMS = HALF_AND_HALF


def served(
    users: range, arm: str | None, version: str | None, actions: list[str | None]
) -> list[tuple[object, ...]]:
    experiment = None if arm is None else "exp"
    return [
        (user, f"e{rank}", rank, T0 + timedelta(minutes=rank), version, experiment, arm, a, False)
        for user in users
        for rank, a in enumerate(actions, start=1)
    ]


def tables_of(rows: list[tuple[object, ...]], arms: pl.DataFrame = ARMS) -> OnlineTables:
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    popularity = pl.DataFrame({"event_id": ["e1"], "count": [3]})
    return online_tables(frame, arms, catalogue_size=20, popularity=popularity)


# Control serves version 7 (1 like in 4 cards), treatment version 8 (2 in 4), champion
# traffic version 7 as well; impressions without a version too.
TABLES = tables_of(
    served(range(0, 10), "control", "7", ["like", "pass", None, None])
    + served(range(10, 20), "treat", "8", ["like", "like", "pass", None])
    + served(range(20, 25), None, "7", ["superlike", None])
    + served(range(25, 27), None, None, [None])
)


def test_each_version_logs_its_row_positions_arms_tests_and_srm() -> None:
    assert versions(TABLES) == ["7", "8", "unknown"]
    seven = version_metrics(TABLES, "7")
    assert seven["impressions"] == 50.0  # 10 users x 4 + 5 x 2
    assert seven["like_rate"] == pytest.approx(10 / 50)
    assert {"like_rate_low", "like_rate_high", "coverage", "novelty"} <= set(seven)
    assert seven["position.1-5.like_rate"] == pytest.approx(10 / 50)
    assert seven["arm.exp.control.like_rate"] == pytest.approx(0.25)
    # Outside every experiment: 5 superlikes in 10 cards of version 7 and 2 unversioned cards.
    assert seven["arm.none.none.superlike_rate"] == pytest.approx(5 / 12)
    assert "test.exp.treat.like_rate.diff" not in seven  # the treatment served version 8
    assert seven["srm.exp.p_value"] == pytest.approx(1.0)
    eight = version_metrics(TABLES, "8")
    assert eight["test.exp.treat.like_rate.diff"] == pytest.approx(0.5 - 0.25)
    assert eight["test.exp.treat.like_rate.p_value"] == pytest.approx(0.0, abs=1e-9)
    assert not any(key.startswith("arm.exp.control.") for key in eight)
    assert version_metrics(TABLES, "unknown")["impressions"] == 2.0
    assert step_of(END) == 20155  # 2025-03-08 is day 20155 since 1970-01-01


def test_the_verdict_is_an_error_on_a_mismatch_and_a_warning_when_untestable() -> None:
    fine = sample_ratio_verdict(TABLES.sample_ratio)
    assert fine.passed and fine.metadata["mismatched"] == "none"
    skewed = tables_of(
        served(range(0, 60), "control", "7", [None]) + served(range(60, 80), "treat", "8", [None])
    )
    verdict = sample_ratio_verdict(skewed.sample_ratio)
    assert (verdict.passed, verdict.severity) == (False, "ERROR")
    assert verdict.metadata["mismatched"] == "exp"
    assert float(verdict.metadata["p_value.exp"]) < 0.001  # chi2 = 2 * 20^2 / 40 = 20
    unweighted = tables_of(served(range(0, 10), "control", "7", [None]), arms_frame())
    warning = sample_ratio_verdict(unweighted.sample_ratio)
    assert (warning.passed, warning.severity) == (False, "WARN")
    assert warning.metadata["untested"] == "exp"
    quiet = sample_ratio_verdict(tables_of([]).sample_ratio)  # weights known, nobody served
    assert quiet.passed and quiet.metadata["experiments"] == 1
    empty = sample_ratio_verdict(tables_of([], arms_frame()).sample_ratio)
    assert empty.passed and empty.metadata["experiments"] == 0


def gauges(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def test_the_textfile_holds_rates_gains_and_the_srm_of_the_window(tmp_path: Path) -> None:
    path = online.write(tmp_path, TABLES, END)
    assert path == tmp_path / "metrics" / "online_metrics.prom"
    values = gauges(path)
    control = {"by": "arm", "experiment": "exp", "arm": "control", "model_version": "7"}
    like = frozenset({**control, "outcome": "like"}.items())
    assert values[("godo_online_rate", like)] == pytest.approx(0.25)
    assert values[("godo_online_rate_low", like)] <= 0.25 <= values[("godo_online_rate_high", like)]
    assert values[("godo_online_impressions", frozenset(control.items()))] == 40.0
    champion = {"by": "arm", "experiment": "none", "arm": "none", "model_version": "7"}
    assert values[("godo_online_users", frozenset(champion.items()))] == 7.0  # 5 + 2 unversioned
    version = {"by": "model_version", "experiment": "", "arm": "", "model_version": "unknown"}
    assert values[("godo_online_impressions", frozenset(version.items()))] == 2.0
    gain = frozenset(
        {"experiment": "exp", "arm": "treat", "control": "control", "metric": "like_rate"}.items()
    )
    assert values[("godo_online_gain", gain)] == pytest.approx(0.25)
    assert values[("godo_online_srm_mismatch", frozenset({("experiment", "exp")}))] == 0.0
    assert values[("godo_online_window_end_timestamp_seconds", frozenset())] == END.timestamp()
    # Rewritten whole: an arm gone from the window is gone from the file.
    online.write(tmp_path, tables_of([], arms_frame()), END)
    left = gauges(path)
    assert [name for name, _ in left] == ["godo_online_window_end_timestamp_seconds"]


def test_the_window_ends_now_or_at_the_configured_end() -> None:
    assert window_of(OnlineMetricsConfig(), now=END) == (END - timedelta(days=7), END)
    config = OnlineMetricsConfig(window_days=1, end="2025-03-08T02:00:00+02:00")
    assert window_of(config) == (datetime(2025, 3, 7, tzinfo=UTC), END)
    with pytest.raises(dg.Failure, match="time zone"):
        window_of(OnlineMetricsConfig(end="2025-03-08T00:00:00"))
