"""What-if: edited rows scored, and counterfactuals that really flip a binary run's decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import cli
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import ConfigError, DataError
from core.explain.counterfactual import counterfactuals
from core.explain.whatif import edit_row, score_rows
from core.runs import folder as runs
from core.runs.fitted import load_model
from core.runs.status import read_status
from core.runs.worker import execute
from core.stats.thresholds import Decision
from tests.conftest import credit_table, sentiment_table

pytestmark = pytest.mark.timeout(300)


def _config(backbone: str, target: str) -> RunConfig:
    return RunConfig(
        data=DataConfig(target=target),
        model=ModelConfig(backbone=backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2, seed=0, precision="fp32"),
    )


def _finished(root: Path, config: RunConfig, frame, source: str) -> Path:
    run_dir = runs.create_run(root, config, frame, source=source)
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


def planted_table(n: int = 400) -> pd.DataFrame:
    """credit_table with an amount and a duration that together decide the risk."""
    frame = credit_table(n)
    rng = np.random.default_rng(7)
    frame["credit_amount"] = rng.integers(5, 150, size=n) * 100
    frame["duration_months"] = rng.integers(1, 11, size=n) * 6
    score = frame["credit_amount"] / 15_000 + frame["duration_months"] / 60
    frame["credit_risk"] = np.where(score > 1.0, "bad", "good")
    return frame


@pytest.fixture(scope="module")
def credit(tmp_path_factory, tiny_backbone):
    frame = planted_table()
    run_dir = _finished(
        tmp_path_factory.mktemp("whatif"), _config(tiny_backbone, "credit_risk"), frame, "c.csv"
    )
    return run_dir, frame


ACTIONABLE = ["credit_amount", "duration_months", "housing", "age_years"]


ROWS = range(0, 40, 3)  # a mix of flagged and approved rows


def _served(run_dir: Path, row: pd.DataFrame, changes: dict) -> float:
    """The positive class's probability of ``row`` with ``changes``, scored on its own."""
    tuner = load_model(run_dir)
    edited = edit_row(run_dir, row, changes)
    return float(tuner.predict_proba(edited)[0, tuner.spec_.positive_index])


@pytest.fixture(scope="module")
def found(credit):
    """The counterfactuals of a few rows: [(row, result)]."""
    run_dir, frame = credit
    return [(frame.iloc[[i]], counterfactuals(run_dir, frame.iloc[[i]], ACTIONABLE)) for i in ROWS]


def test_every_counterfactual_flips_the_decision_when_scored(credit, found):
    run_dir, _ = credit
    n_pairs = 0
    for row, result in found:
        flagged = result.probability >= result.threshold
        assert result.decision.endswith("(flagged)" if flagged else "(approved)")
        assert result.target_decision.endswith("(approved)" if flagged else "(flagged)")
        assert result.results, result.message  # the planted columns decide: a flip exists
        for option in result.results:
            new = {column: value for column, (_, value) in option.changes.items()}
            served = _served(run_dir, row, new)
            assert (served >= result.threshold) != flagged, option.phrase
            assert served == pytest.approx(option.probability, abs=1e-6)
            assert option.decision == result.target_decision
            assert option.margin == pytest.approx(abs(served - result.threshold))
        n_pairs += sum(option.n_changes == 2 for option in result.results)
    assert n_pairs  # the pairs were exercised too


def test_results_change_only_actionable_columns_and_come_smallest_first(found):
    for row, result in found:
        keys = [(option.n_changes, option.distance) for option in result.results]
        assert keys == sorted(keys)
        assert len({tuple(sorted(option.changes)) for option in result.results}) == len(keys)
        for option in result.results:
            assert set(option.changes) <= set(ACTIONABLE)
            for column, (old, new) in option.changes.items():
                assert old == row[column].iloc[0] and new != old
                assert f"{column} " in option.phrase and " → " in option.phrase


def test_no_pair_holds_a_single_change_that_flips_alone(credit, found):
    run_dir, _ = credit
    checked = 0
    for row, result in found:
        flagged = result.probability >= result.threshold
        for option in result.results:
            if option.n_changes < 2:
                continue
            for column, (_, value) in option.changes.items():
                alone = _served(run_dir, row, {column: value})
                assert (alone >= result.threshold) == flagged, (option.phrase, column)
                checked += 1
    assert checked


def test_triples_flip_and_hold_no_pair_that_flips(credit):
    run_dir, frame = credit
    row = frame.iloc[[0]]
    progress: list[float] = []
    result = counterfactuals(
        run_dir, row, ACTIONABLE, max_changes=3, n_results=20, on_progress=progress.append
    )
    assert progress == sorted(progress) and progress[-1] == 1.0
    flagged = result.probability >= result.threshold
    assert result.results and max(o.n_changes for o in result.results) <= 3
    for option in result.results:
        new = {column: value for column, (_, value) in option.changes.items()}
        assert (_served(run_dir, row, new) >= result.threshold) != flagged
        if option.n_changes == 3:
            for column in new:
                pair = {c: v for c, v in new.items() if c != column}
                assert (_served(run_dir, row, pair) >= result.threshold) == flagged


def test_the_row_is_scored_as_score_rows_scores_it(credit, found):
    run_dir, frame = credit
    scored = score_rows(run_dir, frame.iloc[list(ROWS)])
    decision = runs.read_decision(run_dir)
    assert list(scored["threshold"].unique()) == [decision.threshold]
    for (_, result), (_, line) in zip(found, scored.iterrows(), strict=True):
        assert result.probability == pytest.approx(line["probability"], abs=1e-6)
        assert result.decision == line["decision"]
        assert line["positive_class"] == decision.positive_class


def test_no_flip_is_said_plainly(credit):
    run_dir, frame = credit
    positive = runs.read_decision(run_dir).positive_class
    # At threshold 0 every row is flagged, whatever changes.
    result = counterfactuals(
        run_dir, frame.iloc[[0]], ["credit_amount"], decision=Decision(positive, 0.0)
    )
    assert result.results == () and result.frame().empty
    assert "mark more columns as actionable, or allow up to 3 changes" in result.message
    assert result.n_scored > 0 and result.seconds > 0


def test_actionable_columns_are_checked(credit):
    run_dir, frame = credit
    row = frame.iloc[[0]]
    with pytest.raises(ConfigError, match="'notes' is free text"):
        counterfactuals(run_dir, row, ["credit_amount", "notes"])
    with pytest.raises(DataError, match="'credit_risk' is the target"):
        counterfactuals(run_dir, row, ["credit_risk"])
    with pytest.raises(DataError, match="'nope' is not an input column.*'credit_amount'"):
        counterfactuals(run_dir, row, ["nope"])
    with pytest.raises(ConfigError, match="at least one column"):
        counterfactuals(run_dir, row, [])
    with pytest.raises(ConfigError, match="max_changes=4: use 1, 2 or 3"):
        counterfactuals(run_dir, row, ["credit_amount"], max_changes=4)
    with pytest.raises(DataError, match="exactly one"):
        counterfactuals(run_dir, frame.iloc[:2], ["credit_amount"])
    with pytest.raises(ConfigError, match="training="):
        counterfactuals(load_model(run_dir), row, ["credit_amount"])


def test_edit_row_applies_checked_values(credit):
    run_dir, frame = credit
    row = frame.iloc[[5]]
    edited = edit_row(run_dir, row, {"credit_amount": "4,500", "housing": "own", "age_years": ""})
    assert edited["credit_amount"].iloc[0] == 4500 and edited["housing"].iloc[0] == "own"
    assert pd.isna(edited["age_years"].iloc[0])
    assert row["credit_amount"].iloc[0] == frame["credit_amount"].iloc[5]  # the input is unchanged
    assert list(edited.index) == list(row.index)
    assert len(score_rows(run_dir, edited)) == 1


def test_edit_row_faults_name_the_column_and_value(credit):
    run_dir, frame = credit
    row = frame.iloc[[5]]
    with pytest.raises(DataError, match="'nope' is not an input column.*'credit_amount'"):
        edit_row(run_dir, row, {"nope": 1})
    with pytest.raises(DataError, match="'lots' is not a number.*'credit_amount'"):
        edit_row(run_dir, row, {"credit_amount": "lots"})
    with pytest.raises(DataError, match="'soon' is not a date.*'application_date'"):
        edit_row(run_dir, row, {"application_date": "soon"})
    with pytest.raises(DataError, match="'credit_risk' is the target"):
        edit_row(run_dir, row, {"credit_risk": "bad"})
    with pytest.raises(DataError, match="exactly one"):
        edit_row(run_dir, frame.iloc[:2], {"credit_amount": 1})


def test_other_tasks_are_scored_but_get_no_counterfactuals(tmp_path, tiny_backbone):
    frame = sentiment_table()
    run_dir = _finished(tmp_path, _config(tiny_backbone, "label"), frame, "news.csv")
    scored = score_rows(run_dir, frame.head(3))
    assert list(scored["decision"]) == list(scored["prediction"].astype(str))
    with pytest.raises(ConfigError, match="multiclass.*binary run"):
        counterfactuals(run_dir, frame.head(1), ["headline"])


def test_cli_prints_the_decision_and_the_changes(credit, tmp_path, capsys):
    run_dir, frame = credit
    data = tmp_path / "rows.csv"
    frame.head(5).to_csv(data, index=False)
    args = ["whatif", str(run_dir), "--data", str(data), "--row", "0"]
    flags = ["--actionable", "credit_amount", "--actionable", "duration_months"]
    assert cli.main([*args, *flags, "--set", "age_years=40"]) == 0
    out = capsys.readouterr()
    assert "row 0 edited (age_years=40): P(" in out.out and "what would make it" in out.out
    assert "1. credit_amount" in out.out or "1. duration_months" in out.out
    assert "candidate rows scored" in out.err
    assert cli.main([*args, "--actionable", "nope"]) == 2
    assert "'nope' is not an input column" in capsys.readouterr().err
    assert cli.main([*args, "--set", "credit_amount=lots"]) == 2
    assert cli.main([*args, "--set", "credit_amount"]) == 2
    assert "COLUMN=VALUE" in capsys.readouterr().err
    assert cli.main([*args[:-1], "9"]) == 2
