"""PSI: near zero on the same distribution, large on a shift, exact on a hand example, JSON-safe."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.schema import describe_table
from core.errors import DataError
from core.evaluation.stability import (
    EPSILON,
    PSI_ALERT,
    Reference,
    psi,
    psi_level,
    stability_reference,
    stability_report,
)
from tests.conftest import credit_table


def test_levels():
    assert [psi_level(v) for v in (0.0, 0.099, 0.1, 0.2499, 0.25, 3.0)] == [
        "stable",
        "stable",
        "watch",
        "watch",
        "shift",
        "shift",
    ]


def test_same_distribution_is_stable_and_shift_is_flagged():
    rng = np.random.default_rng(0)
    reference = Reference.fit(rng.normal(size=2000))
    assert reference.kind == "numeric"
    assert (
        len(reference.edges) == 11
        and reference.edges[0] == -math.inf
        and reference.edges[-1] == math.inf
    )
    assert sum(reference.proportions) == pytest.approx(1.0)
    assert psi(reference, rng.normal(size=2000)) < 0.02
    assert psi(reference, rng.normal(loc=1.0, size=2000)) > 0.25


def test_hand_computed_example():
    # bins=2 splits at the median 2.5: reference shares (0.5, 0.5, missing 0).
    reference = Reference.fit([1.0, 2.0, 3.0, 4.0], bins=2)
    assert reference.edges == (-math.inf, 2.5, math.inf)
    assert reference.proportions == (0.5, 0.5, 0.0)
    # New shares (0.75, 0.25, 0); the empty missing bin is floored to EPSILON on both sides: 0.
    expected = 0.25 * math.log(0.75 / 0.5) + (-0.25) * math.log(0.25 / 0.5)
    assert psi(reference, [1.0, 2.0, 2.5, 4.0]) == pytest.approx(expected, abs=1e-12)
    # An empty bin gives a large but finite value.
    empty_bin = (EPSILON - 0.5) * math.log(EPSILON / 0.5) + 0.5 * math.log(1.0 / 0.5)
    assert psi(reference, [3.0, 4.0]) == pytest.approx(empty_bin, abs=1e-12)


def test_tied_quantiles_are_deduplicated():
    reference = Reference.fit([0.0] * 90 + list(range(1, 11)))
    assert len(set(reference.edges)) == len(reference.edges)
    assert psi(reference, [0.0] * 90 + list(range(1, 11))) == pytest.approx(0.0)


def test_categories_unseen_go_to_other_and_missing_has_a_bin():
    values = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    reference = Reference.fit(values)
    assert reference.kind == "categorical"
    assert reference.categories == ("a", "b", "c")
    assert reference.proportions == (0.5, 0.3, 0.2, 0.0, 0.0)
    new = pd.Series(["a"] * 50 + ["z"] * 30 + [None] * 20)
    assert reference.shares(new).tolist() == [0.5, 0.0, 0.0, 0.3, 0.2]
    assert psi(reference, new) > PSI_ALERT


def test_top_categories_cap_and_numeric_missing():
    many = pd.Series([f"k{i:02d}" for i in range(30)] * 3 + ["k00"] * 10)
    reference = Reference.fit(many)
    assert len(reference.categories) == 20 and reference.categories[0] == "k00"
    assert reference.proportions[20] == pytest.approx(30 / 100)  # the ten rarest are "other"

    numbers = Reference.fit(pd.Series([1.0, 2.0, np.nan, 4.0]), bins=2)
    assert numbers.proportions[-1] == pytest.approx(0.25)
    assert psi(numbers, pd.Series([np.nan] * 4)) > 1.0


def test_integer_codes_survive_missing_values():
    reference = Reference.fit(pd.Series([1, 2, 3] * 10), kind="categorical")
    assert psi(reference, pd.Series([1.0, 2.0, 3.0] * 10)) == pytest.approx(0.0)


def test_round_trip_through_json():
    rng = np.random.default_rng(1)
    sample = rng.lognormal(size=500)
    for reference in (Reference.fit(sample), Reference.fit(rng.choice(["x", "y", None], size=500))):
        text = json.dumps(reference.to_dict(), allow_nan=False)
        restored = Reference.from_dict(json.loads(text))
        assert restored == reference
        new = rng.lognormal(mean=0.3, size=300) if reference.kind == "numeric" else ["x", "q"] * 50
        assert psi(restored, new) == psi(reference, new)


def test_damaged_reference_and_empty_sample():
    with pytest.raises(DataError, match="damaged"):
        Reference(kind="numeric", edges=(-math.inf, math.inf), proportions=(1.0,))
    with pytest.raises(DataError, match="empty"):
        psi(Reference.fit([1.0, 2.0]), [])


def test_reference_and_report_over_a_table():
    frame = credit_table(400)
    spec = describe_table(frame, DataConfig(target="credit_risk"))
    references = stability_reference(frame, spec)
    assert set(references) == {
        "age_years",
        "monthly_income",
        "purpose",
        "housing",
        "notes (length)",
    }
    assert (
        references["purpose"].kind == "categorical"
        and references["notes (length)"].kind == "numeric"
    )

    same = stability_report(references, frame)
    assert list(same.columns) == ["input", "psi", "level"]
    assert (same["psi"] < 1e-9).all() and set(same["level"]) == {"stable"}

    drifted = credit_table(400, seed=5)
    drifted["monthly_income"] *= 2
    drifted["notes"] = drifted["notes"] + " and a much longer tail of words"
    drifted = drifted.drop(columns=["purpose"])  # a missing column is skipped, not an error
    report = stability_report(references, drifted)
    assert set(report["input"]) == {"age_years", "monthly_income", "housing", "notes (length)"}
    assert report["psi"].is_monotonic_decreasing
    assert set(report["input"][:2]) == {"monthly_income", "notes (length)"}
    assert set(report.loc[report["input"].isin(["monthly_income", "notes (length)"]), "level"]) == {
        "shift"
    }

    only = stability_reference(frame, spec, columns=["housing"])
    assert list(only) == ["housing"]


def test_chance_level_matches_the_psi_of_two_samples_of_one_distribution():
    from core.evaluation.stability import psi_chance_level

    rng = np.random.default_rng(3)
    observed = [psi(Reference.fit(rng.normal(size=700)), rng.normal(size=150)) for _ in range(200)]
    assert np.mean(observed) == pytest.approx(psi_chance_level(700, 150), rel=0.25)


def test_psi_within_chance_for_small_samples_is_stable():
    from core.evaluation.stability import psi_chance_level

    chance = psi_chance_level(140, 200)  # about 0.11: small samples drift by chance
    assert psi_level(0.18) == "watch" and psi_level(0.18, chance) == "stable"
    assert psi_level(0.30, chance) == "shift"  # beyond what chance gives
