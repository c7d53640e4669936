"""The model report's reason codes and counterfactuals: declined counts from the run's own files,
escaped reasons, no protected attribute among the changes, and the ways the section degrades."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import RunError
from core.evaluation.fairness import likely_protected
from core.explain import reasons
from core.review import facts
from core.review.report import write_model_report
from core.review.sections.decisions import MAX_ACTIONABLE, find_decisions
from core.runs import folder as runs
from core.runs.status import read_status
from core.runs.worker import execute
from tests.conftest import credit_table, regression_table

pytestmark = pytest.mark.timeout(300)

HEADING = "Reason codes and what would change the decision"
HOSTILE_COLUMN = "<script>alert(1)</script>"  # renamed from the categorical "housing"


def _config(backbone: str, target: str) -> RunConfig:
    return RunConfig(
        data=DataConfig(target=target),
        model=ModelConfig(backbone=backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2, seed=0, precision="fp32"),
    )


def _finished(root: Path, config: RunConfig, frame) -> Path:
    run_dir = runs.create_run(root, config, frame, source="table.csv")
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


def _section(page: str) -> str:
    return re.search(r'<section id="decisions">(.*?)</section>', page, re.S).group(1)


@pytest.fixture(scope="module")
def binary(tmp_path_factory, tiny_backbone):
    """A credit run with a hostile categorical column name, its report and progress messages."""
    frame = credit_table().rename(columns={"housing": HOSTILE_COLUMN})
    run_dir = _finished(
        tmp_path_factory.mktemp("decisions"), _config(tiny_backbone, "credit_risk"), frame
    )
    messages: list[str] = []
    page = write_model_report(run_dir, shap_rows=4, on_progress=messages.append).read_text(
        encoding="utf-8"
    )
    return run_dir, page, messages


def _declined(run_dir: Path) -> pd.DataFrame:
    """The test rows whose P(positive) is at or above the saved threshold, from the files."""
    decision = runs.read_decision(run_dir)
    predictions = pd.read_csv(run_dir / "predictions.csv")
    return predictions[predictions[f"prob_{decision.positive_class}"] >= decision.threshold]


def test_declined_count_is_that_of_the_saved_threshold(binary):
    run_dir, page, messages = binary
    assert f"<h2>{HEADING}</h2>" in page
    # Right after the fairness section.
    assert page.index('<section id="fairness">') < page.index('<section id="decisions">')
    assert re.search(r'</section><section id="decisions">', page)
    assert page.index('<section id="decisions">') < page.index('<section id="attributions">')
    section = _section(page)
    declined = _declined(run_dir)
    tested = len(pd.read_csv(run_dir / "predictions.csv"))
    assert len(declined) > 0
    threshold = runs.read_decision(run_dir).threshold
    assert f"<th>Declined at threshold {threshold:.4f}</th><td>{len(declined):,} (" in section
    assert f"all {tested:,} test rows" in section
    assert "training row" in section and "the model approves" in section  # the reference
    assert "principal reason (reason 1)" in section
    assert any(m.startswith("Finding the reason codes of") for m in messages)
    assert any(m.startswith("Searching what would change the decision") for m in messages)
    assert messages[-1] == "Writing the report"


def test_example_reasons_and_column_names_are_escaped(binary):
    run_dir, page, _ = binary
    section = _section(page)
    assert "<script>alert" not in page
    assert html.escape(HOSTILE_COLUMN) in section  # a model input the search may change
    rows = runs.test_rows(run_dir)
    decision = runs.read_decision(run_dir)
    codes = reasons.reason_codes(
        run_dir,
        rows,
        decision=decision,
        probabilities=pd.read_csv(run_dir / "predictions.csv")[
            f"prob_{decision.positive_class}"
        ].to_numpy(),
    )
    top = codes.frame[codes.frame["declined"]].sort_values(
        "probability", ascending=False, kind="stable"
    )
    examples = top.head(3)
    assert len(examples) == min(3, len(_declined(run_dir)))
    for label, line in examples.iterrows():
        assert f"<h3>Row {label}: P({decision.positive_class}) = " in section
        assert line["reason_1"] and f"<li>{html.escape(line['reason_1'])}</li>" in section


def test_no_protected_attribute_is_a_suggested_change(binary):
    run_dir, page, _ = binary
    section = _section(page)
    used = re.search(rf"at most {MAX_ACTIONABLE}: (.*?)\. Pick your own", section).group(1)
    columns = [html.unescape(c) for c in used.split(", ")]
    assert "age_years" in likely_protected(credit_table().columns)
    assert columns and not likely_protected(columns)
    assert HOSTILE_COLUMN in columns and "age_years" not in columns
    assert "age_years left out" in section
    if "<td>age_years</td>" in section:  # a reason, though never a change: the report warns
        assert "suggest a protected attribute are among the reasons: age_years (" in section
    assert "fintune whatif" in section and "--actionable" in section
    # The same straight from the search: no change touches a protected column.
    run = facts.read_run(run_dir)
    found = find_decisions(run, lambda message: None)
    assert "age_years" in found.protected and "age_years" not in found.actionable
    for example in found.examples:
        if not isinstance(example.changes, str):
            assert set(example.changes.actionable) == set(found.actionable)
            for result in example.changes.results:
                assert "age_years" not in result.changes


def test_regression_run_says_the_section_is_for_binary_runs(tmp_path, tiny_backbone):
    run_dir = _finished(tmp_path, _config(tiny_backbone, "spread_bps"), regression_table())
    section = _section(write_model_report(run_dir, shap_rows=0).read_text(encoding="utf-8"))
    assert "for binary runs" in section and "this run is regression" in section


def test_no_saved_decision_and_failures_say_why(binary, tmp_path, monkeypatch):
    run_dir = tmp_path / binary[0].name
    shutil.copytree(binary[0], run_dir)
    page = write_model_report(run_dir, shap_rows=0).read_text(encoding="utf-8")
    assert "Skipped: this report was written with --shap-rows 0" in _section(page)

    def refuse(*args, **kwargs):
        raise RunError(f"None of the rows of {HOSTILE_COLUMN} is approved.")

    monkeypatch.setattr(reasons, "reason_codes", refuse)
    section = _section(write_model_report(run_dir, shap_rows=2).read_text(encoding="utf-8"))
    assert "Reason codes could not be computed: None of the rows of" in section
    assert html.escape(HOSTILE_COLUMN) in section and "<script>" not in section
    monkeypatch.undo()

    (run_dir / "decision.json").unlink()
    section = _section(write_model_report(run_dir, shap_rows=0).read_text(encoding="utf-8"))
    assert "No decision threshold is saved for this run" in section
