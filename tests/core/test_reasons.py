"""Reason codes for declined rows: SHAP against approved rows, the wording, predict, serve."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from core.cli import main
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import ConfigError, RunError
from core.explain import reasons as reasons_module
from core.explain.attributions import ExplanationCancelled
from core.explain.reasons import (
    NO_REFERENCE,
    REFERENCE_ROWS,
    ReasonWording,
    approved_reference,
    reason_codes,
)
from core.runs import folder as runs
from core.runs.fitted import load_model
from core.runs.status import read_status
from core.runs.worker import execute
from core.serving.predict import score_file
from core.serving.service import create_app
from core.stats.thresholds import Decision
from tests.conftest import credit_table, regression_table, sentiment_table

pytestmark = pytest.mark.timeout(300)

REASONS = [f"reason_{k}" for k in range(1, 5)]


def _finished(root, backbone: str, target: str, frame: pd.DataFrame):
    config = RunConfig(
        data=DataConfig(target=target),
        model=ModelConfig(backbone=backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2, seed=0, precision="fp32"),
    )
    run_dir = runs.create_run(root, config, frame, source="test")
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def credit_run(tmp_path_factory, tiny_backbone):
    return _finished(
        tmp_path_factory.mktemp("reasons"), tiny_backbone, "credit_risk", credit_table()
    )


@pytest.fixture(scope="module")
def new_rows() -> pd.DataFrame:
    return credit_table(n=60, seed=7)


@pytest.fixture(scope="module")
def codes(credit_run, new_rows):
    return reason_codes(credit_run, new_rows)


def _train_rows(run_dir) -> pd.DataFrame:
    """The run's training rows read straight from its folder (data.parquet and split.json)."""
    split = json.loads((run_dir / "split.json").read_text())
    return pd.read_parquet(run_dir / "data.parquet").iloc[split["train"]]


def _column_of(reason: str, columns: list[str]) -> str:
    """The column a reason is about: the longest column name it starts with."""
    found = [c for c in columns if reason.startswith(f"{c}:") or reason.startswith(f"{c} ")]
    assert found, reason
    return max(found, key=len)


# --------------------------------------------------------------------------- the reasons


def test_every_declined_row_gets_reasons_whose_shap_sum_matches_its_score(
    credit_run, new_rows, codes
):
    tuner = load_model(credit_run)
    decision = runs.read_decision(credit_run)
    frame = codes.frame
    expected = tuner.predict_proba(new_rows)[:, list(tuner.spec_.classes).index("bad")]
    np.testing.assert_allclose(frame["probability"], expected, atol=1e-6)
    declined = expected >= decision.threshold
    assert declined.any() and (~declined).any(), expected  # both kinds, or the test says little
    assert list(frame.index) == list(new_rows.index)
    assert list(frame.columns) == ["probability", "declined", *REASONS]
    assert frame["declined"].tolist() == declined.tolist()
    assert (frame.loc[declined, "reason_1"] != "").all()
    assert (frame.loc[~declined, REASONS] == "").all().all()

    explanation = codes.explanation
    columns = list(explanation.feature_names)
    assert list(explanation.instance_names) == list(new_rows.index[declined])
    outputs = explanation.base_values + explanation.values.sum(axis=1)
    np.testing.assert_allclose(outputs, expected[declined], atol=1e-6)
    for j, index in enumerate(explanation.instance_names):
        values = explanation.values[j]
        order = [columns[c] for c in np.argsort(-values, kind="stable") if values[c] > 0][:4]
        named = [r for r in frame.loc[index, REASONS] if r]
        assert [_column_of(r, columns) for r in named] == order
    assert codes.reference == f"{REFERENCE_ROWS} training rows the model approves (seed 0)"
    assert explanation.background.kind == "approved"
    assert codes.decision == decision


def test_the_reference_is_training_rows_the_model_approves(credit_run):
    tuner = load_model(credit_run)
    decision = runs.read_decision(credit_run)
    reference, described = approved_reference(tuner, _train_rows(credit_run), decision)
    assert len(reference) == REFERENCE_ROWS and described.startswith(f"{REFERENCE_ROWS} training")
    probability = tuner.predict_proba(reference)[:, list(tuner.spec_.classes).index("bad")]
    assert (probability < decision.threshold).all()
    with pytest.raises(RunError, match="choose a higher threshold"):
        approved_reference(tuner, _train_rows(credit_run), Decision("bad", 0.0))


def test_the_reference_is_scored_once_per_run_and_threshold(credit_run, new_rows, monkeypatch):
    calls = []
    real = reasons_module.approved_reference

    def counting(*args, **kwargs):
        calls.append(args[2].threshold)
        return real(*args, **kwargs)

    monkeypatch.setattr(reasons_module, "approved_reference", counting)
    for i in range(3):  # a page asking for one row at a time
        reason_codes(credit_run, new_rows.iloc[[i]], decision=0.31, words=False)
    reason_codes(credit_run, new_rows.iloc[[0]], decision=0.32, words=False)
    assert calls == [0.31, 0.32]


def test_numeric_reasons_give_the_percentile_among_training_rows(credit_run, new_rows, codes):
    train = _train_rows(credit_run)
    checked = 0
    for index, line in codes.frame[codes.frame["declined"]].iterrows():
        for reason in line[REASONS]:
            match = re.fullmatch(
                r"(age_years|monthly_income) ([\d,.]+): (higher|lower) than (\d+)% of applicants",
                reason,
            )
            if not match:
                continue
            column, shown, side, percent = match.groups()
            value = float(new_rows.loc[index, column])
            assert float(shown.replace(",", "")) == pytest.approx(value, rel=1e-3)
            known = train[column].dropna().to_numpy(dtype=float)
            below, above = (known < value).mean(), (known > value).mean()
            share = below if side == "higher" else above
            assert share == max(below, above)
            assert int(percent) == math.floor(share * 100 + 1e-9)
            checked += 1
    assert checked, codes.frame


def test_wording_of_numbers_categories_dates_and_missing_values(credit_run):
    tuner = load_model(credit_run)
    train = pd.DataFrame(
        {
            "age_years": np.arange(1, 101),  # 1 .. 100
            "monthly_income": np.linspace(1000, 20000, 100),
            "purpose": "new car",
            "housing": "own",
            "notes": "loan request",
            "application_date": "2023-01-01",
        }
    )
    wording = ReasonWording(train, tuner.spec_)
    assert wording.phrase("age_years", 93) == "age_years 93: higher than 92% of applicants"
    assert wording.phrase("age_years", 5) == "age_years 5: lower than 95% of applicants"
    assert wording.phrase("age_years", 150) == "age_years 150: higher than all applicants"
    assert wording.phrase("monthly_income", 15000.0).startswith("monthly_income 15,000: higher")
    assert wording.phrase("monthly_income", 1234.56).startswith("monthly_income 1,235: lower")
    assert wording.phrase("monthly_income", np.nan) == "monthly_income: missing"
    assert wording.phrase("housing", "rent") == "housing: rent"
    assert wording.phrase("purpose", None) == "purpose: missing"
    assert wording.phrase("application_date", "2023-03-05") == "application_date: 2023-03-05"
    assert wording.phrase("notes", "late late", words=["late"]) == "notes: the word 'late'"
    assert wording.phrase("notes", "x " * 40).startswith("notes: 'x x")


def test_refusals_and_cancellation(credit_run, new_rows):
    with pytest.raises(RunError, match="choose a higher threshold"):
        reason_codes(credit_run, new_rows, decision=0.0)
    predictions, warnings = score_file(credit_run, new_rows, threshold=0.0)
    assert not set(REASONS) & set(predictions.columns)
    assert any("no reason codes" in w for w in warnings)
    nothing = reason_codes(credit_run, new_rows, decision=1.0)  # P >= 1.0: nobody declined
    assert not nothing.frame["declined"].any() and (nothing.frame[REASONS] == "").all().all()
    assert nothing.reference == NO_REFERENCE and nothing.explanation.values.shape == (0, 6)
    with pytest.raises(ConfigError, match="n_reasons"):
        reason_codes(credit_run, new_rows, n_reasons=0)
    with pytest.raises(ExplanationCancelled):
        reason_codes(credit_run, new_rows, decision=0.3, should_stop=lambda: True)
    progress = []
    reason_codes(credit_run, new_rows.head(10), on_progress=progress.append)
    assert progress and progress[-1] == pytest.approx(1.0) and progress == sorted(progress)
    # A FineTuner object: its training rows come with it.
    tuner = load_model(credit_run)
    with pytest.raises(ConfigError, match="pass training_rows="):
        reason_codes(tuner, new_rows)
    from_object = reason_codes(
        tuner,
        new_rows,
        decision=runs.read_decision(credit_run),
        training_rows=_train_rows(credit_run),
    )
    by_folder = reason_codes(credit_run, new_rows)
    pd.testing.assert_frame_equal(from_object.frame, by_folder.frame)


# --------------------------------------------------------------------------- other runs


def test_regression_runs_have_no_reasons(tmp_path_factory, tiny_backbone):
    run_dir = _finished(
        tmp_path_factory.mktemp("reasons_regression"),
        tiny_backbone,
        "spread_bps",
        regression_table(),
    )
    rows = regression_table(n=10, seed=9)
    with pytest.raises(ConfigError, match="Reason codes are for binary runs"):
        reason_codes(run_dir, rows)
    predictions, _ = score_file(run_dir, rows)
    assert not [c for c in predictions.columns if c.startswith("reason_")]
    assert (
        TestClient(create_app(run_dir))
        .post("/predict", json={"rows": json.loads(rows.to_json(orient="records"))})
        .json()["predictions"][0]["reasons"]
        is None
    )


def test_a_text_reason_names_its_words(tmp_path_factory, tiny_backbone):
    frame = sentiment_table(n=160)
    frame["label"] = np.where(frame["label"] == "bearish", "down", "other")
    run_dir = _finished(tmp_path_factory.mktemp("reasons_text"), tiny_backbone, "label", frame)
    rows = sentiment_table(n=40, seed=11)[["headline"]]
    tuner = load_model(run_dir)
    assert tuner.spec_.positive_class == "down"  # the rarer class
    k = list(tuner.spec_.classes).index("down")
    # The median training score: half the training rows approved, a share of new rows declined.
    threshold = float(np.median(tuner.predict_proba(_train_rows(run_dir))[:, k]))
    codes = reason_codes(run_dir, rows, decision=threshold)
    declined = codes.frame[codes.frame["declined"]]
    assert len(declined)
    # The only input column: its SHAP value is the row's probability less the approved
    # reference's mean, so it is every declined row's first reason.
    assert (declined["reason_2"] == "").all()
    worded = 0
    for index, reason in declined["reason_1"].items():
        match = re.fullmatch(r"headline: the words? ((?:'[^']+'(?:, )?)+)", reason)
        if match:
            words = re.findall(r"'([^']+)'", match.group(1))
            assert 1 <= len(words) <= 3
            assert all(word in rows.loc[index, "headline"] for word in words)
            worded += 1
        else:
            assert reason.startswith("headline: '")  # no word pushes toward decline: quoted
    assert worded
    plain = reason_codes(run_dir, rows, decision=codes.decision, words=False)
    assert plain.frame["reason_1"][plain.frame["declined"]].str.startswith("headline: '").all()


# --------------------------------------------------------------------------- predict and serve


def test_fintune_predict_writes_reasons_and_no_reasons_leaves_them_out(
    credit_run, new_rows, tmp_path
):
    source = tmp_path / "new.csv"
    new_rows.to_csv(source, index=False)
    out = tmp_path / "scored.csv"
    assert main(["predict", str(credit_run), str(source), "-o", str(out)]) == 0
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns[-4:]) == REASONS
    declined = written["prediction"] == "bad"
    assert declined.any() and (written.loc[declined, "reason_1"] != "").all()
    assert (written.loc[~declined, REASONS] == "").all().all()
    expected = reason_codes(credit_run, new_rows).frame
    assert written["reason_1"].tolist() == expected["reason_1"].tolist()
    assert main(["predict", str(credit_run), str(source), "-o", str(out), "--no-reasons"]) == 0
    assert not [c for c in pd.read_csv(out).columns if c.startswith("reason_")]


def test_serve_predict_gives_declined_rows_their_reasons(credit_run, new_rows, monkeypatch):
    client = TestClient(create_app(credit_run))
    records = json.loads(new_rows.to_json(orient="records"))
    body = client.post("/predict", json={"rows": records}).json()
    expected, _ = score_file(credit_run, new_rows)
    for p, (_, line) in zip(body["predictions"], expected.iterrows(), strict=True):
        assert p["prediction"] == line["prediction"]
        assert p["reasons"] == [r for r in line[REASONS] if r]
        assert bool(p["reasons"]) == (p["prediction"] == "bad")
    assert body["warnings"] == []
    skipped = client.post("/predict", json={"rows": records, "reasons": False}).json()
    assert all(p["reasons"] is None for p in skipped["predictions"])
    upload = client.post(
        "/predict?reasons=false",
        files={"file": ("rows.csv", new_rows.to_csv(index=False).encode(), "text/csv")},
    )
    assert all(p["reasons"] is None for p in upload.json()["predictions"])
    monkeypatch.setattr("core.serving.service.MAX_REASON_ROWS", 1)
    capped = TestClient(create_app(credit_run)).post("/predict", json={"rows": records}).json()
    assert all(p["reasons"] is None for p in capped["predictions"])
    assert "reasons are given for up to 1 per request" in capped["warnings"][-1]


def test_a_reason_names_its_column_even_when_one_name_starts_another():
    from core.explain.reasons import reason_column

    columns = ["age", "age_years", "credit amount", "purpose"]
    assert reason_column("age_years 22: lower than 94% of applicants", columns) == "age_years"
    assert reason_column("age 22: lower than 94% of applicants", columns) == "age"
    assert reason_column("credit amount 9,000: higher than 90% of applicants", columns) == (
        "credit amount"
    )
    assert reason_column("purpose: car (new)", columns) == "purpose"
    assert reason_column("housing: rent", columns) is None
