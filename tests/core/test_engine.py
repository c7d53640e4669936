"""FineTuner: fit on tiny tables, predict, save and load, inspect inputs."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, RunError
from core.training.estimator import FineTuner, inspect_inputs


def test_learns_an_easy_table(easy_df, tiny_config):
    """The label is one categorical word: the backbone path must carry it (val ROC AUC > 0.9)."""
    config = tiny_config("outcome", epochs=6, patience=6)
    tuner = FineTuner(config).fit(easy_df)
    epochs = tuner.history_
    assert len(epochs) == 6
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert max(e["val"]["roc_auc"] for e in epochs) > 0.9
    test = easy_df.iloc[tuner.splits_["test"]]
    assert tuner.evaluate(test)["roc_auc"] > 0.9


def test_fit_binary_sets_fitted_attributes(credit_df, tiny_config):
    tuner = FineTuner(tiny_config("credit_risk", max_steps=2))
    assert tuner.fit(credit_df) is tuner
    for name in (
        "spec_",
        "preprocessor_",
        "model_",
        "tokenizer_",
        "max_length_",
        "splits_",
        "history_",
    ):
        assert hasattr(tuner, name), name
    proba = tuner.predict_proba(credit_df.head(7))
    assert proba.shape == (7, 2) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(tuner.predict(credit_df.head(7))) <= {"bad", "good"}
    assert (
        16 <= tuner.max_length_ <= 128
    )  # auto length: the 95th percentile, within the model's limit


def test_fit_multiclass(sentiment_df, tiny_config):
    tuner = FineTuner(tiny_config("label", max_steps=3)).fit(sentiment_df)
    frame = tuner.predictions_frame(sentiment_df.head(5))
    assert list(frame.columns) == [
        "row",
        "label",
        "prediction",
        "prob_bearish",
        "prob_bullish",
        "prob_neutral",
    ]
    metrics = tuner.evaluate(sentiment_df.iloc[tuner.splits_["val"]])
    assert set(metrics) == {"roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"}


def test_fit_regression(regression_df, tiny_config):
    tuner = FineTuner(tiny_config("spread_bps", epochs=3)).fit(regression_df)
    predictions = tuner.predict(regression_df.head(10))
    assert predictions.shape == (10,) and np.isfinite(predictions).all()
    metrics = tuner.evaluate(regression_df.iloc[tuner.splits_["test"]])
    assert {"rmse", "mae", "r2", "mape"} <= set(metrics)
    assert metrics["rmse"] < regression_df["spread_bps"].std()  # better than predicting the mean
    with pytest.raises(RunError, match="predict_proba is for classification"):
        tuner.predict_proba(regression_df.head(2))
    assert list(tuner.predictions_frame(regression_df.head(2)).columns) == [
        "row",
        "spread_bps",
        "prediction",
    ]


@pytest.mark.parametrize("layout", ["roberta", "distilbert", "deberta-v2", "electra"])
def test_fit_other_layouts_with_freezing(credit_df, tiny_config, tiny_backbones, layout):
    config = tiny_config(
        "credit_risk",
        max_steps=2,
        model={"backbone": str(tiny_backbones[layout]), "freeze_depth": 2},
    )
    tuner = FineTuner(config).fit(credit_df)
    assert tuner.predict_proba(credit_df.head(3)).shape == (3, 2)


def test_freeze_depth_beyond_the_backbone(credit_df, tiny_config):
    with pytest.raises(
        ConfigError, match=r"Freeze depth 9 is more than .* has layers \(3\): choose 0-3"
    ):
        FineTuner(tiny_config("credit_risk", model={"freeze_depth": 9})).fit(credit_df)


def test_predict_before_fit(credit_df, tiny_config):
    with pytest.raises(RunError, match="not fitted"):
        FineTuner(tiny_config("credit_risk")).predict(credit_df)


def test_save_load_round_trip(credit_df, tiny_config, tmp_path):
    tuner = FineTuner(tiny_config("credit_risk", max_steps=3)).fit(credit_df)
    model_dir = tuner.save(tmp_path / "model")
    assert (model_dir / "model.safetensors").is_file()
    assert not list(model_dir.rglob("*.bin")) and not list(model_dir.rglob("*.pkl"))
    again = FineTuner.load(model_dir)
    assert np.array_equal(again.predict_proba(credit_df), tuner.predict_proba(credit_df))
    assert again.spec_ == tuner.spec_ and again.max_length_ == tuner.max_length_


def test_load_from_an_empty_folder(tmp_path):
    with pytest.raises(RunError, match="holds no saved model"):
        FineTuner.load(tmp_path)


def test_class_weights_auto_for_imbalanced_targets(credit_df, tiny_config, monkeypatch):
    import core.training.loop

    seen = []
    original = core.training.loop._loss_fn
    monkeypatch.setattr(
        core.training.loop,
        "_loss_fn",
        lambda task, weights, config: seen.append(weights) or original(task, weights, config),
    )

    imbalanced = credit_df.copy()
    imbalanced["credit_risk"] = np.where(
        np.arange(len(imbalanced)) % 10 == 0, "bad", "good"
    )  # 10% bad
    FineTuner(tiny_config("credit_risk", max_steps=1)).fit(imbalanced)
    weights = seen[-1]
    assert weights is not None
    bad, good = weights.tolist()
    assert bad > good  # the rare class weighs more ...
    assert bad / good == pytest.approx(
        3.0, rel=0.01
    )  # ... by sqrt(90/10): softened, not fully balanced

    balanced = credit_df.copy()
    balanced["credit_risk"] = np.where(np.arange(len(balanced)) % 2 == 0, "bad", "good")
    FineTuner(tiny_config("credit_risk", max_steps=1)).fit(balanced)
    assert seen[-1] is None  # no weights when classes are balanced

    FineTuner(tiny_config("credit_risk", max_steps=1, class_weights="none")).fit(imbalanced)
    assert seen[-1] is None


def test_inspect_inputs_shows_what_the_model_reads(credit_df, tiny_config):
    rows = inspect_inputs(credit_df, tiny_config("credit_risk"), n_rows=2)
    assert len(rows) == 2
    first = rows[0]
    # Cells (the default): free text per row, each categorical cell its own short string.
    assert first["text"].startswith("notes: ") and "purpose: " not in first["text"]
    assert any(cell.startswith("purpose: ") for cell in first["cells"])
    assert first["tokens"][0] == "[CLS]" and first["tokens"][-1] == "[SEP]"
    whole_row = tiny_config("credit_risk").replace(model={"table_encoding": "row_text"})
    row_text = inspect_inputs(credit_df, whole_row, n_rows=1)[0]
    assert row_text["text"].startswith("notes: ") and " | purpose: " in row_text["text"]
    assert row_text["cells"] == []
    assert set(first["numeric"]) >= {"age_years", "monthly_income", "monthly_income (missing)"}
    assert first["target"] in ("bad", "good")


def test_compiled_model_trains(credit_df, tiny_config):
    """torch.compile is an engine option: the step really runs through dynamo and training works."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    tuner = FineTuner(tiny_config("credit_risk", max_steps=3, precision="fp32", compile=True)).fit(
        credit_df
    )
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert np.isfinite(tuner.history_[0]["train_loss"])
    proba = tuner.predict_proba(credit_df.head(20))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
