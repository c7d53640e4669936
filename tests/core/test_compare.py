"""Side-by-side comparison of prediction tables: metrics, paired differences, DeLong, configs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_squared_error, roc_auc_score

from core.data.schema import TableSpec
from core.errors import RunError
from core.review.compare import (
    compare_predictions,
    compare_runs,
    config_differences,
    spec_from_metrics,
)

BINARY = TableSpec(
    target="risk", task="binary", roles={}, classes=("bad", "good"), positive_class="bad"
)
N_BOOT = 100


def _binary_table(
    y: np.ndarray, signal: float, seed: int, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """A prediction table whose P(bad) separates the classes with strength ``signal``."""
    rng = np.random.default_rng(seed)
    p_bad = 1 / (1 + np.exp(-(signal * (y == "bad") + rng.normal(-0.5 * signal, 1, len(y)))))
    return pd.DataFrame(
        {
            "row": np.arange(len(y)) if rows is None else rows,
            "risk": y,
            "prediction": np.where(p_bad >= 0.5, "bad", "good"),
            "prob_bad": p_bad,
            "prob_good": 1 - p_bad,
        }
    )


def _labels(n: int = 300, seed: int = 0) -> np.ndarray:
    return np.where(np.random.default_rng(seed).random(n) < 0.3, "bad", "good")


# --------------------------------------------------------------------------- binary


def test_binary_metrics_one_row_per_model():
    y = _labels()
    tables = {
        "A": _binary_table(y, 1.0, 1),
        "B": _binary_table(y, 2.5, 2),
        "C": _binary_table(y, 0.0, 3),
    }
    result = compare_predictions(BINARY, tables, n_boot=N_BOOT)
    assert result.models == ["A", "B", "C"]
    assert result.metrics["model"].tolist() == ["A", "B", "C"]
    for name, table in tables.items():
        row = result.metrics.set_index("model").loc[name]
        assert row["roc_auc"] == pytest.approx(
            roc_auc_score(table["risk"] == "bad", table["prob_bad"])
        )


def test_binary_differences_and_delong_when_rows_align():
    y = _labels()
    tables = {"A": _binary_table(y, 0.5, 1), "B": _binary_table(y, 3.0, 2)}
    result = compare_predictions(BINARY, tables, n_boot=N_BOOT)
    assert result.same_rows and result.note == ""
    auc = result.metrics.set_index("model")["roc_auc"]
    diff = result.differences.set_index("metric").loc["roc_auc"]
    assert diff["model"] == "B"
    assert diff["difference"] == pytest.approx(auc["B"] - auc["A"])
    assert diff["low"] <= diff["difference"] <= diff["high"]
    assert bool(diff["better"]) and diff["p_value"] < 0.05
    assert set(result.differences["metric"]) >= {"roc_auc", "ks", "brier", "log_loss"}
    (delong,) = result.delong.to_dict("records")
    assert delong["model"] == "B"
    assert delong["auc_reference"] == pytest.approx(auc["A"])
    assert delong["auc"] == pytest.approx(auc["B"])
    assert delong["p_value"] < 0.001 and delong["low"] > 0


def test_lower_is_better_metrics_marked_better_when_smaller():
    y = _labels()
    tables = {"A": _binary_table(y, 0.5, 1), "B": _binary_table(y, 3.0, 2)}
    diffs = compare_predictions(BINARY, tables, n_boot=N_BOOT).differences.set_index("metric")
    assert diffs.loc["brier", "difference"] < 0 and bool(diffs.loc["brier", "better"])
    assert diffs.loc["log_loss", "difference"] < 0 and bool(diffs.loc["log_loss", "better"])


def test_delong_scores_the_positive_class():
    y = _labels()
    tables = {"A": _binary_table(y, 0.5, 1), "B": _binary_table(y, 3.0, 2)}
    spec = TableSpec(
        target="risk", task="binary", roles={}, classes=("bad", "good"), positive_class="good"
    )
    result = compare_predictions(spec, tables, n_boot=N_BOOT)
    (delong,) = result.delong.to_dict("records")
    expected = roc_auc_score(tables["B"]["risk"] == "good", tables["B"]["prob_good"])
    assert delong["auc"] == pytest.approx(expected)


def test_different_rows_skip_paired_tests():
    y = _labels(300)
    tables = {"A": _binary_table(y, 1.0, 1), "B": _binary_table(y[:250], 2.0, 2)}
    result = compare_predictions(BINARY, tables, n_boot=N_BOOT)
    assert not result.same_rows
    assert result.differences.empty and result.delong.empty
    assert "different rows" in result.note
    assert len(result.metrics) == 2


def test_same_row_ids_but_different_labels_are_not_aligned():
    y = _labels(200)
    other = y.copy()
    other[:5] = np.where(other[:5] == "bad", "good", "bad")
    tables = {"A": _binary_table(y, 1.0, 1), "B": _binary_table(other, 1.0, 2)}
    assert not compare_predictions(BINARY, tables, n_boot=N_BOOT).same_rows


def test_shuffled_rows_are_not_aligned():
    y = _labels(200)
    tables = {
        "A": _binary_table(y, 1.0, 1),
        "B": _binary_table(y, 1.0, 2, rows=np.arange(200)[::-1]),
    }
    assert not compare_predictions(BINARY, tables, n_boot=N_BOOT).same_rows


def test_single_model_has_no_differences():
    result = compare_predictions(BINARY, {"A": _binary_table(_labels(), 1.0, 1)}, n_boot=N_BOOT)
    assert len(result.metrics) == 1
    assert not result.same_rows and result.note == ""
    assert result.differences.empty and result.delong.empty


# ------------------------------------------------------------------------ multiclass and regression


def test_multiclass_compare_has_no_delong():
    rng = np.random.default_rng(4)
    classes = ("bear", "bull", "flat")
    y = rng.choice(classes, 240)
    tables = {}
    for name, strength in (("A", 0.5), ("B", 2.0)):
        logits = rng.normal(size=(240, 3)) + strength * (y[:, None] == np.array(classes))
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        tables[name] = pd.DataFrame(
            {
                "row": np.arange(240),
                "label": y,
                **{f"prob_{c}": proba[:, i] for i, c in enumerate(classes)},
            }
        )
    spec = TableSpec(target="label", task="multiclass", roles={}, classes=classes)
    result = compare_predictions(spec, tables, n_boot=N_BOOT)
    assert result.same_rows and result.delong.empty
    assert {"roc_auc", "accuracy", "f1", "log_loss", "brier"} <= set(result.metrics.columns)
    assert set(result.differences["metric"]) >= {"accuracy", "roc_auc"}


def test_regression_compare():
    rng = np.random.default_rng(5)
    y = rng.normal(0, 0.02, 200)  # returns: both signs
    tables = {
        name: pd.DataFrame(
            {"row": np.arange(200), "ret": y, "prediction": y + rng.normal(0, noise, 200)}
        )
        for name, noise in (("A", 0.02), ("B", 0.005))
    }
    spec = TableSpec(target="ret", task="regression", roles={}, classes=())
    result = compare_predictions(spec, tables, n_boot=N_BOOT)
    rmse = result.metrics.set_index("model")["rmse"]
    for name, table in tables.items():
        assert rmse[name] == pytest.approx(
            np.sqrt(mean_squared_error(table["ret"], table["prediction"]))
        )
    assert "directional_accuracy" in result.metrics.columns
    diff = result.differences.set_index("metric").loc["rmse"]
    assert diff["difference"] < 0 and bool(diff["better"])
    assert result.delong.empty


# --------------------------------------------------------------------------- configs and runs


def test_config_differences_lists_only_differing_settings():
    configs = {
        "run1": {
            "train": {"epochs": 3, "lr": 1e-3},
            "data": {"target": "y", "roles": {"a": "text"}},
        },
        "run2": {
            "train": {"epochs": 5, "lr": 1e-3},
            "data": {"target": "y", "roles": {"a": "text"}},
        },
    }
    table = config_differences(configs)
    assert table["setting"].tolist() == ["train.epochs"]
    assert table.iloc[0].to_dict() == {"setting": "train.epochs", "run1": "3", "run2": "5"}


def test_config_differences_missing_key_and_roles_unflattened():
    configs = {
        "run1": {"model": {"backbone": "x"}, "data": {"roles": {"a": "text"}}},
        "run2": {
            "model": {"backbone": "x", "dropout": 0.2},
            "data": {"roles": {"a": "categorical"}},
        },
    }
    table = config_differences(configs).set_index("setting")
    assert sorted(table.index) == ["data.roles", "model.dropout"]
    assert table.loc["model.dropout", "run1"] == "None"


def test_config_differences_needs_two_runs():
    assert config_differences({"run1": {"a": 1}}).empty


def test_spec_from_metrics_defaults_positive_to_second_class():
    spec = spec_from_metrics({"task": "binary", "classes": ["no", "yes"]}, "target")
    assert spec.positive_class == "yes" and spec.positive_index == 1
    spec = spec_from_metrics(
        {"task": "binary", "classes": ["no", "yes"], "positive_class": "no"}, "target"
    )
    assert spec.positive_index == 0


def _fake_run(root, name: str, table: pd.DataFrame, epochs: int, target: str = "risk"):
    run = root / name
    run.mkdir()
    metrics = {"task": "binary", "classes": ["bad", "good"], "positive_class": "bad"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    config = {"data": {"target": target}, "train": {"epochs": epochs}, "source": f"/tmp/{name}.csv"}
    (run / "config.json").write_text(json.dumps(config))
    table.to_csv(run / "predictions.csv", index=False)
    return run


def test_compare_runs_from_folders(tmp_path):
    y = _labels(150)
    first = _fake_run(tmp_path, "r1", _binary_table(y, 1.0, 1), epochs=2)
    second = _fake_run(tmp_path, "r2", _binary_table(y, 2.0, 2), epochs=4)
    result = compare_runs([first, second], n_boot=N_BOOT)
    assert result.models == ["r1", "r2"] and result.same_rows
    assert result.config["setting"].tolist() == ["train.epochs"]  # "source" is left out
    assert len(result.delong) == 1


def test_compare_runs_rejects_different_targets(tmp_path):
    y = _labels(100)
    first = _fake_run(tmp_path, "r1", _binary_table(y, 1.0, 1), epochs=2)
    second = _fake_run(tmp_path, "r2", _binary_table(y, 1.0, 2), epochs=2, target="other")
    with pytest.raises(RunError, match="same target"):
        compare_runs([first, second], n_boot=N_BOOT)
    with pytest.raises(RunError):
        compare_runs([first])
