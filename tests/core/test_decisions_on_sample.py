"""Issue 19's checks on the bundled German credit sample (1,000 real applications): a planted
bias is found with a tight interval and a coin-flip split is not; every declined row gets reasons
whose SHAP values add up to its score; every counterfactual flips the decision when scored.

One run on the real table with a tiny backbone (seconds), the planted columns added to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.evaluation.fairness import FOUR_FIFTHS
from core.explain.counterfactual import counterfactuals
from core.explain.reasons import reason_codes
from core.runs import folder as runs
from core.runs.fairness import protected_inputs, run_fairness
from core.runs.fitted import load_model
from core.runs.status import read_status
from core.runs.worker import execute

pytestmark = pytest.mark.timeout(300)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "credit_risk.csv"
ACTIONABLE = [
    "credit_amount",
    "duration_months",
    "savings_account_bonds",
    "checking_account_status",
]


def _planted() -> pd.DataFrame:
    """The sample with a branch column whose B applicants were labelled bad far more often (a
    biased labelling process the model learns), and a coin flip that says nothing."""
    frame = pd.read_csv(SAMPLE)
    rng = np.random.default_rng(19)
    n = len(frame)
    branch = rng.choice(["A", "B"], size=n)
    relabelled = (branch == "B") & (rng.random(n) < 0.6)
    frame["credit_risk"] = np.where(relabelled, "bad", frame["credit_risk"])
    frame["branch"] = branch
    frame["coin"] = rng.choice(["heads", "tails"], size=n)
    return frame


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, tiny_backbone) -> Path:
    config = RunConfig(
        data=DataConfig(
            target="credit_risk", split="random", test_fraction=0.4, positive_class="bad"
        ),
        model=ModelConfig(backbone=tiny_backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(epochs=2, batch_size=32, lr=1e-3, head_lr=1e-2, seed=0, precision="fp32"),
    )
    run_dir = runs.create_run(tmp_path_factory.mktemp("sample"), config, _planted(), source="x")
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


def test_planted_bias_is_found_and_a_coin_flip_is_not(sample_run):
    assert {"personal_status_sex", "age_years", "foreign_worker"} <= set(
        protected_inputs(sample_run)
    )
    result = run_fairness(sample_run, ["branch", "coin"])
    ratios = result.disparities.set_index(["column", "group"])
    biased = ratios.loc[("branch", "B")]
    assert biased["approval_ratio"] < FOUR_FIFTHS
    assert biased["approval_ratio_high"] < FOUR_FIFTHS  # the whole interval: not noise
    assert biased["finding"].startswith("clearly below 0.8")
    coin = ratios.loc["coin"]
    other = coin[coin["reference"] != coin.index].iloc[0]
    assert other["approval_ratio"] >= FOUR_FIFTHS and other["finding"] == ""
    assert other["approval_ratio_low"] < 1 <= other["approval_ratio_high"]
    assert list(result.flagged()["column"].unique()) == ["branch"]


def test_every_declined_row_has_reasons_that_add_up_to_its_score(sample_run):
    rows = runs.test_rows(sample_run)
    codes = reason_codes(sample_run, rows)
    tuner = load_model(sample_run)
    positive = list(tuner.spec_.classes).index("bad")
    scores = tuner.predict_proba(rows)[:, positive]
    declined = scores >= runs.read_decision(sample_run).threshold
    assert declined.sum() >= 20 and (~declined).sum() >= 20
    assert codes.frame["declined"].tolist() == declined.tolist()
    assert (codes.frame.loc[declined, "reason_1"] != "").all()
    explanation = codes.explanation
    outputs = np.asarray(explanation.base_values).reshape(-1) + explanation.values.sum(axis=1)
    np.testing.assert_allclose(outputs, scores[declined], atol=1e-6)


def test_every_counterfactual_flips_the_decision_when_scored(sample_run):
    tuner = load_model(sample_run)
    positive = list(tuner.spec_.classes).index("bad")
    threshold = runs.read_decision(sample_run).threshold
    rows = runs.test_rows(sample_run)
    scores = tuner.predict_proba(rows)[:, positive]
    flipped = 0
    declined = np.flatnonzero(scores >= threshold)
    for i in declined[np.argsort(scores[declined])][:5]:  # the 5 declined nearest the threshold
        row = rows.iloc[[i]]
        found = counterfactuals(sample_run, row, ACTIONABLE, max_changes=2)
        for result in found.results:
            changed = row.copy()
            for column, (old, new) in result.changes.items():
                assert column in ACTIONABLE and changed[column].iloc[0] == old
                changed[column] = new
            score = tuner.predict_proba(changed)[0, positive]
            assert score < threshold <= scores[i]  # declined before, approved after
            assert score == pytest.approx(result.probability, abs=1e-6)
            flipped += 1
    assert flipped > 0
