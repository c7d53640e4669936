"""Fairness by group: planted bias found, fair splits not flagged, bands, pooling, faults, CLI."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import cli
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import ConfigError, DataError, RunError
from core.evaluation.fairness import (
    FOUR_FIFTHS,
    group_fairness,
    group_labels,
    likely_protected,
    pool_rare,
    ratio_finding,
)
from core.runs import folder as runs
from core.runs.fairness import protected_inputs, retrain_without, run_fairness
from core.runs.status import read_status
from core.runs.worker import execute
from tests.conftest import credit_table

pytestmark = pytest.mark.timeout(300)


def _planted(n: int = 600, seed: int = 3) -> pd.DataFrame:
    """The credit table with a planted column: group B rows are labelled bad far more often, so
    the model learns to flag B; and a column of coin flips that says nothing."""
    rng = np.random.default_rng(seed)
    frame = credit_table(n=n, seed=seed)
    group = rng.choice(["A", "B"], size=n)
    bad = (frame["credit_risk"] == "bad") & (rng.random(n) < 0.5)  # about 20% bad in A
    bad |= (group == "B") & (rng.random(n) < 0.7)  # about 75% in B
    frame["credit_risk"] = np.where(bad, "bad", "good")
    frame["group"] = group
    frame["coin"] = rng.choice(["heads", "tails"], size=n)
    return frame


@pytest.fixture(scope="module")
def biased_run(tmp_path_factory, tiny_backbone) -> Path:
    config = RunConfig(
        data=DataConfig(
            target="credit_risk",
            split="random",
            val_fraction=0.2,
            test_fraction=0.4,
            positive_class="bad",  # not left to chance: bad is about half the rows
        ),
        model=ModelConfig(backbone=tiny_backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2, seed=0, precision="fp32"),
    )
    run_dir = runs.create_run(tmp_path_factory.mktemp("fairness"), config, _planted(), source="x")
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


@pytest.fixture
def own_run(biased_run, tmp_path) -> Path:
    """A private copy of the run, to damage."""
    copy = tmp_path / biased_run.name
    shutil.copytree(biased_run, copy)
    return copy


# --------------------------------------------------------------------------- on a real run


def test_planted_bias_is_found_with_a_tight_interval(biased_run):
    result = run_fairness(biased_run, ["group"])
    ratios = result.disparities.set_index("group")
    assert ratios.loc["A", "reference"] == "A"  # the most-approved group
    assert ratios.loc["B", "approval_ratio"] < FOUR_FIFTHS
    assert ratios.loc["B", "approval_ratio_high"] < FOUR_FIFTHS  # the whole interval: not noise
    assert ratios.loc["B", "finding"] == "clearly below 0.8 (four-fifths rule)"
    groups = result.groups.set_index("group")
    assert groups["rows"].sum() == result.rows == len(runs.read_predictions(biased_run))
    low, high = groups.loc["B", ["approval_rate_low", "approval_rate_high"]]
    assert low <= groups.loc["B", "approval_rate"] <= high
    assert groups.loc["B", "observed_rate"] > groups.loc["A", "observed_rate"]
    parity = result.gaps.set_index("measure").loc["demographic_parity"]
    assert parity["low"] > 0.1 and parity["p_value"] < 0.01


def test_a_fair_split_is_not_flagged(biased_run):
    result = run_fairness(biased_run, ["coin"])
    ratios = result.disparities
    other = ratios[ratios["group"] != ratios["reference"]].iloc[0]
    assert other["approval_ratio"] >= FOUR_FIFTHS and other["finding"] == ""
    assert other["approval_ratio_low"] < 1 <= other["approval_ratio_high"]
    assert result.gaps.set_index("measure").loc["demographic_parity", "p_value"] > 0.05
    assert result.flagged().empty


def test_the_estimates_are_fairlearns(biased_run):
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    result = run_fairness(biased_run, ["group"], n_boot=50)
    predictions = runs.read_predictions(biased_run)
    decision = runs.read_decision(biased_run)
    flagged = predictions["prob_bad"] >= decision.threshold
    is_bad = predictions["credit_risk"] == "bad"
    group = runs.load_data(biased_run).loc[predictions["row"], "group"].to_numpy()
    gaps = result.gaps.set_index("measure")["value"]
    assert gaps["equalized_odds"] == pytest.approx(
        equalized_odds_difference(is_bad, flagged, sensitive_features=group)
    )
    assert gaps["demographic_parity"] == pytest.approx(
        demographic_parity_difference(is_bad, flagged, sensitive_features=group)
    )


def test_defaults_to_likely_protected_inputs_and_bands_age(biased_run):
    assert protected_inputs(biased_run) == ["age_years"]
    started = time.perf_counter()
    result = run_fairness(biased_run)
    assert time.perf_counter() - started < 5  # a thousand resamples, vectorised
    assert result.columns == ("age_years",)
    bands = list(result.groups["group"])
    assert len(bands) == 4 and all("–" in b for b in bands)
    assert any("age_years is cut in 4 bands" in n for n in result.notes)


def test_held_out_rows_add_the_validation_rows(biased_run):
    test = run_fairness(biased_run, ["group"], n_boot=50)
    held_out = run_fairness(biased_run, ["group"], rows="held_out", n_boot=50)
    assert held_out.rows == test.rows + len(runs.read_val_predictions(biased_run))
    assert held_out.rows_used == "held_out"


def test_a_column_that_is_not_an_input_is_said_so(own_run):
    config = json.loads((own_run / "config.json").read_text())
    assert "branch_country" not in config["data"]["roles"]
    result = run_fairness(own_run, ["coin", "branch_country"], n_boot=50)
    assert any("only one group" in n for n in result.notes)  # a constant column
    assert set(result.groups["column"]) == {"coin"}


# --------------------------------------------------------------------------- faults


def test_unknown_column_lists_the_runs_columns(biased_run):
    with pytest.raises(DataError, match=r"'gruop' is not in .*Did you mean 'group'.*age_years"):
        run_fairness(biased_run, ["gruop"])


def test_target_and_text_columns_are_refused(biased_run):
    with pytest.raises(DataError, match="is the target"):
        run_fairness(biased_run, ["credit_risk"])
    with pytest.raises(DataError, match="free text"):
        run_fairness(biased_run, ["notes"])
    with pytest.raises(DataError, match="row identifiers"):
        run_fairness(biased_run, ["applicant_id"])
    with pytest.raises(ConfigError, match="held_out"):
        run_fairness(biased_run, ["group"], rows="train")


def test_non_binary_and_undecided_runs_are_refused(own_run):
    (own_run / "decision.json").unlink()
    with pytest.raises(RunError, match="fintune threshold"):
        run_fairness(own_run, ["group"])
    metrics = json.loads((own_run / "metrics.json").read_text())
    (own_run / "metrics.json").write_text(json.dumps({**metrics, "task": "regression"}))
    with pytest.raises(RunError, match="not a finished binary run"):
        run_fairness(own_run, ["group"])


def test_retrain_without_queues_the_same_run_with_the_column_ignored(biased_run):
    submitted = []

    class Jobs:
        def submit(self, config, frame, *, source=""):
            submitted.append((config, frame, source))
            return "new-run"

    assert retrain_without(Jobs(), biased_run, ["age_years"]) == "new-run"
    (config, frame, source) = submitted[0]
    assert config.data.roles["age_years"] == "ignore" and source == "x"
    assert config.model == runs.load_config(biased_run).model
    assert len(frame) == len(runs.load_data(biased_run))
    with pytest.raises(DataError, match="is the target"):
        retrain_without(Jobs(), biased_run, ["credit_risk"])


# --------------------------------------------------------------------------- the CLI


def test_cli_prints_the_tables_and_writes_a_csv(biased_run, tmp_path, capsys):
    output = tmp_path / "fairness.csv"
    code = cli.main(
        ["fairness", str(biased_run), "--by", "group", "--by", "coin", "-o", str(output)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "approval rate" in captured.out and "clearly below 0.8" in captured.out
    assert "\ngroup\n" in captured.out and "\ncoin\n" in captured.out
    table = pd.read_csv(output)
    assert set(table["column"]) == {"group", "coin"} and "approval_ratio" in table.columns


def test_cli_bad_column_is_one_line_and_exit_2(biased_run, capsys):
    assert cli.main(["fairness", str(biased_run), "--by", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Column 'nope' is not in") and "\n" not in err


# --------------------------------------------------------------------------- the parts


def test_likely_protected_reads_words_not_substrings():
    names = [
        "age_years",
        "applicantAge",
        "personal_status_sex",
        "foreign_worker",
        "Gender",
        "marital_status",
        "year_of_birth",
        "mortgage",
        "agent_code",
        "average_balance",
        "racecourse",
        "income",
    ]
    assert likely_protected(names) == names[:7]


def test_numbers_are_banded_and_few_numbers_kept():
    values = pd.Series(np.arange(19, 75), name="age")
    labels, note = group_labels(values, bands=4)
    assert list(dict.fromkeys(labels)) == ["19–32", "33–46", "47–60", "61–74"]
    assert "4 bands" in note
    few, note = group_labels(pd.Series([1, 2, 3, 4, 1, 2, np.nan], name="rate"))
    assert list(few) == ["1", "2", "3", "4", "1", "2", "missing"] and note is None
    with pytest.raises(DataError, match="bands"):
        group_labels(values, bands=1)


def test_rare_groups_are_pooled_and_said_so():
    labels = pd.Series(["a"] * 30 + ["b"] * 25 + ["c"] * 3 + ["d"] * 2, name="region")
    pooled, note = pool_rare(labels, 20)
    assert set(pooled) == {"a", "b", "other"} and (pooled == "other").sum() == 5
    assert "2 groups with fewer than 20 rows" in note and "'c'" in note
    alone, note = pool_rare(labels[:58], 20)  # one small group keeps its name
    assert "c" in set(alone) and note is None
    x = pd.DataFrame({"x": np.r_[np.arange(1, 100), [500, 900]]})  # bands in number order
    result = group_fairness(
        x, np.arange(101) % 2 == 0, np.linspace(0, 1, 101), 0.5, bands=10, min_rows=5
    )
    assert list(result.groups["group"])[:3] == ["1–11", "12–21", "22–31"]


def test_a_small_group_is_not_called_unfair_on_noise():
    rng = np.random.default_rng(0)
    n = 400
    group = np.r_[["big"] * 388, ["small"] * 12]
    is_positive = rng.random(n) < 0.3
    score = rng.random(n)
    score[-12:] = [0.9] * 8 + [0.1] * 4  # 4 of 12 approved, against about half of the others
    result = group_fairness(pd.DataFrame({"g": group}), is_positive, score, 0.5, min_rows=10)
    small = result.disparities.set_index("group").loc["small"]
    assert small["approval_ratio"] < FOUR_FIFTHS <= small["approval_ratio_high"]
    assert small["finding"].startswith("below 0.8 (four-fifths rule), but")
    assert any("'small' has fewer than 10 rows" in n for n in result.notes) is False


def test_ratio_finding_words():
    assert ratio_finding(0.6, [0.5, 0.7]) == "clearly below 0.8 (four-fifths rule)"
    assert ratio_finding(0.7, [0.5, 0.95]).startswith("below 0.8 (four-fifths rule), but")
    assert ratio_finding(0.85, [0.6, 1.1]) == ""
    assert ratio_finding(float("nan"), None) == ""


# --------------------------------------------------------------------------- the model report


def test_report_section_groups_by_protected_inputs(biased_run, tmp_path):
    import dataclasses
    import re

    from core.review import facts
    from core.review.report import write_model_report
    from core.review.sections.fairness import fairness_section

    page = write_model_report(biased_run, tmp_path / "report.html", shap_rows=0).read_text()
    part = re.search(r'<section id="fairness">(.*?)</section>', page, re.S).group(1)
    assert "<h2>Fairness by group</h2>" in part and "<h3>age_years</h3>" in part
    assert "approval ratio" in part and "bad (positives)" in part and "fintune fairness" in part
    run = facts.read_run(biased_run)
    roles = {**run.spec.roles, "age_years": "ignore"}
    run.spec = dataclasses.replace(run.spec, roles=roles)
    text = "".join(fairness_section(run))
    assert "No model input looks like a protected attribute" in text and "--by COLUMN" in text
