"""Assignment and validation of experiments: pure, no services."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from store.experiments import (
    ArmSpec,
    ExperimentError,
    ExperimentSpec,
    Serves,
    ServingExperiment,
    ServingExperiments,
    arm_index,
    unit_hash,
    validate,
)

START = datetime(2026, 12, 1, tzinfo=UTC)
USERS = 100_000


def _experiment(
    arms: tuple[tuple[str, float], ...],
    *,
    name: str = "ranker-v2",
    salt: str = "s1",
    layer: str = "default",
    traffic: tuple[float, float] = (0.0, 1.0),
    start: float = 0.0,
    end: float = 1e12,
) -> ServingExperiment:
    return ServingExperiment(name, salt, layer, traffic, start, end, arms)


def _spec(**changes: object) -> ExperimentSpec:
    fields: dict[str, object] = {
        "name": "ranker-v2",
        "arms": (
            ArmSpec("control", 0.5, Serves("model", "champion")),
            ArmSpec("popular", 0.5, Serves("rule", "popularity")),
        ),
        "start": START,
        "end": START + timedelta(days=14),
    }
    fields.update(changes)
    return ExperimentSpec(**fields)  # type: ignore[arg-type]


def _registered(ref: str) -> bool:
    return ref in {"champion", "3", "7"}


@pytest.mark.parametrize(
    "weights",
    [(0.5, 0.5), (0.1, 0.9), (0.2, 0.3, 0.5), (0.05, 0.0, 0.95), (1 / 3, 1 / 3, 1 / 3)],
)
def test_shares_are_within_one_percent_of_the_weights_at_100k_users(
    weights: tuple[float, ...],
) -> None:
    arms = tuple((f"arm{i}", w) for i, w in enumerate(weights))
    experiment = _experiment(arms, salt=f"salt-{weights}")
    counts = Counter(experiment.arm_for(user) for user in range(USERS))
    for name, weight in arms:
        assert abs(counts[name] / USERS - weight) < 0.01, (name, counts[name])
    assert counts["arm1"] == 0 or weights[1] > 0  # a zero-weight arm gets nobody


def test_the_salt_decides_and_two_salts_assign_independently() -> None:
    arms = (("a", 0.5), ("b", 0.5))
    first = _experiment(arms, salt="one")
    second = _experiment(arms, salt="two")
    same = sum(first.arm_for(u) == second.arm_for(u) for u in range(USERS)) / USERS
    assert abs(same - 0.5) < 0.01  # independent halves agree half the time
    assert [first.arm_for(u) for u in range(1000)] == [
        _experiment(arms, salt="one").arm_for(u) for u in range(1000)
    ]


def test_unit_hash_is_uniform_in_the_unit_interval() -> None:
    values = [unit_hash("x", u) for u in range(USERS)]
    assert min(values) >= 0.0 and max(values) < 1.0
    deciles = Counter(int(v * 10) for v in values)
    assert all(abs(deciles[d] / USERS - 0.1) < 0.005 for d in range(10))


def test_assignment_is_identical_in_another_process() -> None:
    """Another interpreter (its own PYTHONHASHSEED) assigns every user to the same arm."""
    arms = (("control", 0.3), ("challenger", 0.7))
    here = [_experiment(arms, salt="cross").arm_for(u) for u in range(2000)]
    script = (
        "from store.experiments import ServingExperiment\n"
        "e = ServingExperiment('x', 'cross', 'default', (0.0, 1.0), 0.0, 1e12, "
        "(('control', 0.3), ('challenger', 0.7)))\n"
        "print(','.join(e.arm_for(u) for u in range(2000)))\n"
    )
    there = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=Path(__file__).parents[3],
    ).stdout.strip()
    assert there.split(",") == here


def test_arm_index_skips_zero_weight_arms_and_gives_a_short_sum_to_the_last_arm() -> None:
    assert arm_index((0.5, 0.5, 1.0), 0.5) == 2
    assert arm_index((0.5, 0.5, 1.0), 0.4999) == 0
    assert arm_index((0.5, 1.0 - 1e-12), 0.9999999999999) == 1
    assert arm_index((0.5, 1.0 - 1e-12, 1.0 - 1e-12), 0.9999999999999) == 1


def test_traffic_takes_its_share_of_the_layer_and_layers_are_independent() -> None:
    arms = (("a", 0.5), ("b", 0.5))
    left = _experiment(arms, name="left", traffic=(0.0, 0.3))
    right = _experiment(arms, name="right", traffic=(0.3, 1.0))
    other_layer = _experiment(arms, name="other", layer="ui", traffic=(0.0, 0.3))
    in_left = {u for u in range(USERS) if left.includes(u)}
    in_right = {u for u in range(USERS) if right.includes(u)}
    in_other = {u for u in range(USERS) if other_layer.includes(u)}
    assert not in_left & in_right and len(in_left | in_right) == USERS
    assert abs(len(in_left) / USERS - 0.3) < 0.01
    assert abs(len(in_left & in_other) / USERS - 0.09) < 0.01  # 0.3 x 0.3: independent


def test_assignment_follows_time_and_precedence() -> None:
    arms = (("a", 0.5), ("b", 0.5))
    early = _experiment(arms, name="early", start=100.0, end=200.0)
    later = _experiment(arms, name="later", layer="ui", start=150.0, end=300.0)
    both = ServingExperiments((later, early))
    assert both.assignment(7, now=50.0) is None  # nothing started: the champion
    assert both.assignment(7, now=120.0).experiment == "early"  # type: ignore[union-attr]
    assert both.assignment(7, now=160.0).experiment == "early"  # type: ignore[union-attr]
    assert both.assignment(7, now=200.0).experiment == "later"  # type: ignore[union-attr]
    assert both.assignment(7, now=300.0) is None
    outside = _experiment(arms, name="slice", traffic=(0.0, 0.5))
    users = [u for u in range(100) if not outside.includes(u)]
    assert users and all(ServingExperiments((outside,)).assignment(u, 1.0) is None for u in users)


def test_the_serving_document_round_trips() -> None:
    document = ServingExperiments(
        (_experiment((("a", 0.25), ("b", 0.75)), traffic=(0.1, 0.6), start=5.0, end=9.0),)
    )
    assert ServingExperiments.parse(document.document()) == document
    assert ServingExperiments.parse(None).experiments == ()


def test_a_valid_spec_passes() -> None:
    validate(_spec(), model_registered=_registered)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "arms": (
                    ArmSpec("a", 0.5, Serves("model", "3")),
                    ArmSpec("b", 0.4, Serves("model", "7")),
                )
            },
            "sum to 0.9",
        ),
        (
            {
                "arms": (
                    ArmSpec("a", 0.5, Serves("model", "3")),
                    ArmSpec("b", 0.5 + 1e-8, Serves("model", "7")),
                )
            },
            "not 1",
        ),
        (
            {
                "arms": (
                    ArmSpec("a", 0.5, Serves("model", "3")),
                    ArmSpec("b", 0.5, Serves("model", "99")),
                )
            },
            "no model version or alias '99'",
        ),
        (
            {
                "arms": (
                    ArmSpec("a", 0.5, Serves("model", "challenger")),
                    ArmSpec("b", 0.5, Serves("model", "3")),
                )
            },
            "no model version or alias 'challenger'",
        ),
        (
            {
                "arms": (
                    ArmSpec("a", 0.5, Serves("rule", "random")),
                    ArmSpec("b", 0.5, Serves("model", "3")),
                )
            },
            "unknown rule 'random'",
        ),
        (
            {
                "arms": (
                    ArmSpec("a", 0.5, Serves("model", "3")),
                    ArmSpec("a", 0.5, Serves("model", "7")),
                )
            },
            "duplicate arm name 'a'",
        ),
        ({"arms": (ArmSpec("a", 1.0, Serves("model", "3")),)}, "at least two arms"),
        ({"end": START}, "is not after start"),
        ({"end": START - timedelta(days=1)}, "is not after start"),
        ({"name": "Bad:Name"}, "experiment name 'Bad:Name'"),
        ({"layer": "a b"}, "layer name 'a b'"),
        ({"traffic": (0.5, 0.5)}, "traffic"),
        ({"traffic": (0.0, 1.5)}, "traffic"),
        (
            {
                "arms": (
                    ArmSpec("a", -0.5, Serves("model", "3")),
                    ArmSpec("b", 1.5, Serves("model", "7")),
                )
            },
            "not in [0, 1]",
        ),
    ],
)
def test_refusals_name_the_problem(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ExperimentError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(_spec(**changes), model_registered=_registered)


def test_weights_within_the_tolerance_pass() -> None:
    arms = tuple(ArmSpec(f"a{i}", 0.1, Serves("model", "3")) for i in range(10))  # sums 0.999..
    validate(_spec(arms=arms), model_registered=_registered)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("control=0.5:model:champion", ArmSpec("control", 0.5, Serves("model", "champion"))),
        ("pop=0.25:rule:popularity", ArmSpec("pop", 0.25, Serves("rule", "popularity"))),
        ("v7=0.25:model:7", ArmSpec("v7", 0.25, Serves("model", "7"))),
    ],
)
def test_arm_specs_parse(text: str, expected: ArmSpec) -> None:
    assert ArmSpec.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("control", "NAME=WEIGHT"),
        ("control=half:model:3", "is not a number"),
        ("control=0.5:champion", "names nothing to serve"),
        ("control=0.5:file:x", "names nothing to serve"),
    ],
)
def test_malformed_arm_specs_are_refused(text: str, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        ArmSpec.parse(text)
