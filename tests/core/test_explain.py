"""SHAP explanations: additivity, the right columns and words, the fast path equal to the
straightforward one, the background used, the backbone cache, typed errors, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import ConfigError, DataError, RunError
from core.explain import attributions, masking
from core.explain.attributions import (
    DEFAULT_BACKGROUND_ROWS,
    ExplainBackground,
    ExplanationCancelled,
    explain_rows,
    explain_tokens,
    explanation_frame,
    summary_row,
    warm_up_explanations,
)
from core.runs import folder as runs
from core.runs.fitted import load_model
from core.runs.status import read_status
from core.runs.worker import execute
from core.training.estimator import FineTuner
from tests.conftest import credit_table, regression_table, sentiment_table

pytestmark = pytest.mark.timeout(600)


def _config(backbone: str, target: str, model: dict | None = None, **train) -> RunConfig:
    train = {
        "epochs": 1,
        "batch_size": 16,
        "lr": 1e-3,
        "head_lr": 1e-2,
        "seed": 0,
        "precision": "fp32",
        **train,
    }
    return RunConfig(
        data=DataConfig(target=target),
        model=ModelConfig(backbone=backbone, d_hidden=32, d_numeric=16, **(model or {})),
        train=TrainConfig(**train),
    )


def _run(root, config: RunConfig, frame: pd.DataFrame):
    run_dir = runs.create_run(root, config, frame, source="test")
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def credit_run(tmp_path_factory, tiny_backbone):
    return _run(
        tmp_path_factory.mktemp("explain"),
        _config(tiny_backbone, "credit_risk", max_steps=4),
        credit_table(),
    )


@pytest.fixture(scope="module")
def regression_tuner(tiny_backbone):
    return FineTuner(_config(tiny_backbone, "spread_bps", max_steps=4)).fit(regression_table())


@pytest.fixture(scope="module")
def multiclass_tuner(tiny_backbone):
    return FineTuner(_config(tiny_backbone, "label", max_steps=4)).fit(sentiment_table())


@pytest.fixture(scope="module")
def credit_tuner(tiny_backbone):
    return FineTuner(_config(tiny_backbone, "credit_risk", max_steps=4)).fit(credit_table())


@pytest.fixture(scope="module")
def blended_tuner(credit_tuner):
    """The credit model blended with trees that read every column, the notes as TF-IDF too."""
    import copy

    from core.model.trees import TreeModel

    train = credit_table()
    blended = copy.copy(credit_tuner)
    blended.trees_ = TreeModel(credit_tuner.spec_, text=True, max_rounds=20).fit(
        train.head(150), train.tail(50)
    )
    assert blended.trees_.features_.vocabulary  # the text part is exercised
    blended.blend_ = {"task": "binary", "weight": 0.5}
    return blended


@pytest.fixture(scope="module")
def row_text_run(tmp_path_factory, tiny_backbone):
    config = _config(tiny_backbone, "credit_risk", {"table_encoding": "row_text"}, max_steps=2)
    return _run(tmp_path_factory.mktemp("explain_row_text"), config, credit_table())


# --------------------------------------------------------------------------- additivity


def test_rows_add_up_to_the_engines_probability(credit_run):
    rows = credit_table().head(12)
    explanation = explain_rows(credit_run, rows, precision="fp32")
    tuner = load_model(credit_run)
    columns = tuner.spec_.feature_columns
    assert explanation.shape == (12, len(columns))
    assert list(explanation.feature_names) == columns
    assert explanation.output_names == tuner.spec_.positive_class  # binary: the positive class
    assert (explanation.data == rows[columns].to_numpy(dtype=object)).sum() == rows[
        columns
    ].notna().sum().sum()
    total = explanation.base_values + explanation.values.sum(axis=1)
    np.testing.assert_allclose(
        total, tuner.predict_proba(rows)[:, tuner.spec_.positive_index], atol=1e-3
    )
    # One reference set for all rows (16 random training rows by default): one base value.
    assert np.ptp(explanation.base_values) == 0
    assert explanation.background == ExplainBackground(
        "sample", DEFAULT_BACKGROUND_ROWS, 0, "16 random training rows (seed 0)"
    )


def test_rows_add_up_with_a_background_sample_and_bf16(credit_run):
    rows = credit_table(seed=5).head(6)
    explanation = explain_rows(credit_run, rows, background=8, precision="bf16", n_permutations=2)
    frame = explanation_frame(explanation)
    np.testing.assert_allclose(
        frame["prediction"],
        load_model(credit_run).predict_proba(rows)[:, load_model(credit_run).spec_.positive_index],
        atol=2e-2,
    )
    assert explanation.stats.precision == "bf16"


def test_regression_explains_the_predicted_value(regression_tuner):
    rows = regression_table(seed=9).head(10)
    explanation = explain_rows(
        regression_tuner, rows, background=regression_table().head(4), precision="fp32"
    )
    total = explanation.base_values + explanation.values.sum(axis=1)
    np.testing.assert_allclose(total, regression_tuner.predict(rows), atol=1e-3)
    assert explanation.output_names == "spread_bps"


def test_multiclass_explains_the_chosen_class(multiclass_tuner):
    rows = sentiment_table(seed=4).head(4)
    background = sentiment_table().head(3)
    probabilities = multiclass_tuner.predict_proba(rows)
    for chosen, index in (("bearish", 0), (1, 1), (None, 2)):
        explanation = explain_rows(
            multiclass_tuner, rows, background=background, class_index=chosen, precision="fp32"
        )
        assert explanation.output_names == multiclass_tuner.spec_.classes[index]
        total = explanation.base_values + explanation.values.sum(axis=1)
        np.testing.assert_allclose(total, probabilities[:, index], atol=1e-3)


def test_tokens_add_up_to_the_rows_output(credit_run):
    row = credit_table().iloc[[3]]
    explanation = explain_tokens(credit_run, row, "notes", precision="fp32")
    tokens = [t.strip() for t in explanation.data[0] if t.strip()]
    assert "request" in tokens and len(tokens) >= 5
    total = explanation.base_values[0] + explanation.values[0].sum()
    assert total == pytest.approx(
        load_model(credit_run).predict_proba(row)[0, load_model(credit_run).spec_.positive_index],
        abs=1e-3,
    )


# --------------------------------------------------------------------------- the right columns


def test_the_two_columns_that_decide_the_label_rank_first(tiny_backbone):
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {
            "sector": rng.choice(["banking", "energy", "retail", "mining"], size=n),
            "score": rng.normal(size=n).round(3),
            "region": rng.choice(["north", "south", "east", "west"], size=n),
            "volume": rng.normal(size=n).round(3),
            "tenure": rng.uniform(0, 10, size=n).round(2),
        }
    )
    signal = 2.0 * frame["sector"].isin(["banking", "energy"]) + 2.0 * frame["score"] - 1.0
    frame["outcome"] = np.where(signal > 0, "yes", "no")
    tuner = FineTuner(_config(tiny_backbone, "outcome", epochs=6, patience=6)).fit(frame)
    assert tuner.history_[-1]["val"]["roc_auc"] > 0.9  # the model learned it, so SHAP can show it
    explanation = explain_rows(tuner, frame.head(60), background=frame.tail(20), precision="fp32")
    importance = pd.Series(np.abs(explanation.values).mean(axis=0), index=explanation.feature_names)
    assert set(importance.nlargest(2).index) == {"sector", "score"}, importance


# --------------------------------------------------------------------------- fast path


def _same(fast, slow) -> None:
    np.testing.assert_allclose(fast.values, slow.values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.base_values, slow.base_values, rtol=0, atol=1e-6)
    assert fast.stats.model_rows == slow.stats.model_rows


@pytest.mark.parametrize(
    "which", ["blended", "regression", "multiclass", "row_text"], ids=lambda w: w
)
def test_the_fast_path_gives_the_straightforward_values(
    which, blended_tuner, regression_tuner, multiclass_tuner, row_text_run
):
    """Inputs built once and masked by indexing, batched, each distinct row once, the head alone
    on assembled inputs (cells), trees on a prebuilt matrix with TF-IDF text, texts per
    combination (row text): the values of shap calling the model on preprocessed frames."""
    tuner, rows, background = {
        "blended": (blended_tuner, credit_table(seed=3).head(6), credit_table().head(3)),
        "regression": (regression_tuner, regression_table(seed=9).head(6), regression_table()[:3]),
        "multiclass": (multiclass_tuner, sentiment_table(seed=4).head(5), sentiment_table()[:3]),
        "row_text": (load_model(row_text_run), credit_table(seed=3).head(4), credit_table()[:2]),
    }[which]
    options = {"background": background, "precision": "fp32", "n_permutations": 2}
    fast = explain_rows(tuner, rows, **options)
    _same(fast, explain_rows(tuner, rows, fast=False, **options))
    total = fast.base_values + fast.values.sum(axis=1)
    if which == "blended":  # the trees' part, from prebuilt inputs, matches TreeModel's own
        positive = tuner.spec_.positive_index
        np.testing.assert_allclose(total, tuner.predict_proba(rows)[:, positive], atol=1e-5)
    if which == "regression":
        np.testing.assert_allclose(total, tuner.predict(rows), atol=1e-3)


def test_batches_do_not_change_the_values(credit_tuner, monkeypatch):
    rows, background = credit_table(seed=2).head(5), credit_table().head(4)
    whole = explain_rows(credit_tuner, rows, background=background, precision="fp32")
    monkeypatch.setattr(attributions, "EVAL_BATCH_ROWS", 1)
    _same(explain_rows(credit_tuner, rows, background=background, precision="fp32"), whole)


def test_cells_run_only_the_head_per_masked_row(credit_tuner, monkeypatch):
    calls = []
    fuse = credit_tuner.model_.fuse
    monkeypatch.setattr(
        credit_tuner.model_, "fuse", lambda *args: calls.append(len(args[1])) or fuse(*args)
    )
    explain_rows(credit_tuner, credit_table().head(3), background=credit_table().tail(2))
    assert len(calls) == 1 and calls[0] <= 8  # the start-up check on a few mixed rows


def test_backbone_passes_count_the_cell_vocabulary_once(credit_tuner):
    rows, background = credit_table(seed=6).head(4), credit_table().head(2)
    credit_tuner.model_.eval()  # as a loaded run is: in eval mode, with no cell vectors yet
    credit_tuner.model_._cell_table = None  # (a frozen backbone keeps them from training on)
    first = explain_rows(credit_tuner, rows, background=background).stats
    again = explain_rows(credit_tuner, rows, background=background).stats
    vocabulary = len(credit_tuner.preprocessor_.cell_vocabulary)
    # The vocabulary is encoded once and kept; the notes are encoded per explanation.
    assert first.backbone_passes == again.backbone_passes + vocabulary
    assert again.backbone_passes == 6  # 4 rows' notes + 2 background rows' notes


def test_replayed_calls_are_checked():
    recorder = masking.Recorder()
    recorder.record()
    recorder(np.array([[0.0], [1.0]]))
    recorder(np.array([[2.0]]))
    recorder.evaluate(lambda codes: codes[:, 0] * 10)
    assert recorder(np.array([[0.0], [1.0]])).tolist() == [0.0, 10.0]
    # Not the recorded rows (something else drew from numpy's random state): asked directly.
    assert recorder(np.array([[5.0]])).tolist() == [50.0]


# --------------------------------------------------------------------------- background


def test_background_choices_are_recorded(credit_run, row_text_run):
    rows = credit_table(seed=8).head(3)
    summary = explain_rows(credit_run, rows, background="summary").background
    assert summary == ExplainBackground("summary", 1, None, attributions.SUMMARY_DESCRIPTION)
    sampled = explain_rows(credit_run, rows, background=5, seed=3).background
    assert (sampled.kind, sampled.n_rows, sampled.seed) == ("sample", 5, 3)
    assert sampled.description == "5 random training rows (seed 3)"
    given = explain_rows(credit_run, rows, background=credit_table().head(1)).background
    assert given == ExplainBackground("rows", 1, None, "1 given row")
    # Reading rows as text, every background row multiplies the texts: one summary row.
    assert explain_rows(row_text_run, rows).background.kind == "summary"


# --------------------------------------------------------------------------- speed machinery


def test_cache_runs_the_backbone_on_fewer_texts_than_model_rows(credit_run):
    explanation = explain_rows(credit_run, credit_table().head(10))
    stats = explanation.stats
    # Masking numbers and dates never changes the text, so most evaluations reuse a cached vector.
    assert 0 < stats.backbone_passes < stats.model_rows / 2, stats


def test_progress_and_cancel(credit_run, monkeypatch):
    rows = credit_table().head(4)
    seen = []
    explain_rows(credit_run, rows, on_progress=seen.append)
    assert seen == [1.0]  # 4 rows fit one batch of masked rows
    monkeypatch.setattr(attributions, "EVAL_BATCH_ROWS", 1)  # one row per batch
    seen.clear()
    explain_rows(credit_run, rows, on_progress=seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ExplanationCancelled):
        explain_rows(credit_run, rows, on_progress=seen.append, should_stop=lambda: len(seen) >= 6)
    assert len(seen) == 6


def test_summary_row_is_a_typical_training_row(credit_run):
    tuner = load_model(credit_run)
    train = credit_table()
    row = summary_row(train, tuner.spec_)
    assert list(row.columns) == tuner.spec_.feature_columns
    assert row["monthly_income"][0] == pytest.approx(train["monthly_income"].median())
    assert row["housing"][0] == "own" and row["notes"][0] == ""
    assert row["application_date"][0] in set(train["application_date"])


def test_warm_up_needs_no_model(monkeypatch):
    import transformers

    from core.model import backbones

    def no_model(*args, **kwargs):
        raise AssertionError("the warm-up loaded a model")

    monkeypatch.setattr(backbones, "load_backbone", no_model)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_model)
    # Compiles shap's kernels; a dashboard calls it at start-up, and a rerun may call it again.
    assert warm_up_explanations() is None
    assert warm_up_explanations() is None


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_typed_errors(credit_run, tmp_path, regression_tuner):
    rows = credit_table().head(3)
    with pytest.raises(DataError, match="'housing'"):
        explain_rows(credit_run, rows.drop(columns=["housing"]))
    with pytest.raises(DataError, match="empty"):
        explain_rows(credit_run, rows.head(0))
    with pytest.raises(ConfigError, match="'medium'"):
        explain_rows(credit_run, rows, class_index="medium")
    with pytest.raises(ConfigError, match="out of range"):
        explain_rows(credit_run, rows, class_index=2)
    with pytest.raises(ConfigError, match="at most"):
        explain_rows(credit_run, rows, background=credit_table(n=300))
    with pytest.raises(ConfigError, match="'median'.*'summary'"):
        explain_rows(credit_run, rows, background="median")
    with pytest.raises(ConfigError, match="regression"):
        explain_rows(regression_tuner, regression_table().head(2), class_index=0)
    with pytest.raises(ConfigError, match="background="):
        explain_rows(regression_tuner, regression_table().head(2))
    with pytest.raises(DataError, match="'purpose'.*text columns are \\['notes'\\]"):
        explain_tokens(credit_run, rows.head(1), "purpose")
    with pytest.raises(DataError, match="exactly one"):
        explain_tokens(credit_run, rows, "notes")
    with pytest.raises(DataError, match="no text"):
        explain_tokens(credit_run, rows.head(1).assign(notes=np.nan), "notes")
    unfinished = runs.create_run(tmp_path, _config("unused", "credit_risk"), rows)
    with pytest.raises(RunError, match="queued"):
        explain_rows(unfinished, rows)
    with pytest.raises(DataError, match="explain_rows"):
        explanation_frame(explain_tokens(credit_run, rows.head(1), "notes"))


# --------------------------------------------------------------------------- CLI


def test_cli_writes_one_line_per_row(credit_run, tmp_path, fintune):
    data, out = tmp_path / "new.csv", tmp_path / "shap.csv"
    credit_table(seed=7).to_csv(data, index=False)
    result = fintune("explain", credit_run, data, "--rows", 5, "--class", "bad", "-o", out)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out)
    columns = load_model(credit_run).spec_.feature_columns
    assert list(frame.columns) == ["row", *columns, "base_value", "prediction"]
    assert len(frame) == 5
    np.testing.assert_allclose(
        frame["base_value"] + frame[columns].sum(axis=1), frame["prediction"], atol=1e-6
    )
    assert "bad" in result.stderr and "backbone passes" in result.stderr


def test_cli_bad_input_exits_2(credit_run, tmp_path, fintune):
    data = tmp_path / "new.csv"
    credit_table().drop(columns=["housing"]).to_csv(data, index=False)
    result = fintune("explain", credit_run, data, "-o", tmp_path / "o.csv")
    assert (
        result.returncode == 2 and "'housing'" in result.stderr and "Traceback" not in result.stderr
    )
    credit_table().to_csv(data, index=False)
    result = fintune("explain", credit_run, data, "--class", "medium", "-o", tmp_path / "o.csv")
    assert (
        result.returncode == 2 and "'medium'" in result.stderr and "Traceback" not in result.stderr
    )


# --------------------------------------------------------------------------- real MiniLM


@pytest.mark.integration
def test_token_shap_ranks_the_planted_word_first():
    from core.config import default_config

    rng = np.random.default_rng(0)
    fillers = [
        "the",
        "company",
        "said",
        "quarterly",
        "results",
        "for",
        "its",
        "retail",
        "unit",
        "today",
        "analysts",
        "expected",
        "shares",
        "group",
        "bank",
    ]
    cues = {"up": "profit", "down": "loss"}
    labels = rng.choice(list(cues), size=400)
    texts = []
    for label in labels:
        words = list(rng.choice(fillers, size=8))
        words.insert(int(rng.integers(1, 8)), cues[label])
        texts.append(" ".join(words))
    frame = pd.DataFrame({"headline": texts, "direction": labels})
    config = default_config("direction").replace(
        model={"freeze_depth": 4}, train={"epochs": 2, "seed": 0}
    )
    tuner = FineTuner(config).fit(frame)
    row = pd.DataFrame({"headline": ["analysts said the retail loss for the group today"]})
    explanation = explain_tokens(tuner, row, "headline", class_index="up")
    tokens = [t.strip() for t in explanation.data[0]]
    assert tokens[int(np.argmax(np.abs(explanation.values[0])))] == "loss", list(
        zip(tokens, explanation.values[0], strict=True)
    )
    assert explanation.values[0][tokens.index("loss")] < 0  # it pushes away from "up"
