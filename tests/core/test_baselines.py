"""The baselines: LightGBM through the tree model's code, early-stopped; the majority floor."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.data.schema import TableSpec
from core.evaluation.baselines import (
    LIGHTGBM_PARAMS,
    fit_baselines,
    lightgbm_reference,
    lightgbm_settings,
    reference_name,
    run_baseline,
)

ROLES = {"amount": "numeric", "kind": "categorical", "day": "datetime", "memo": "text"}


def _parts(task: str = "binary") -> tuple[TableSpec, dict[str, pd.DataFrame]]:
    rng = np.random.default_rng(0)
    n = 900
    amount = rng.normal(size=n)
    kind = rng.choice(["a", "b", "c"], size=n)
    memo = np.where(rng.random(n) < 0.5, "wire transfer abroad", "card payment local")
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, size=n), unit="D")
    signal = amount + (kind == "b") + (memo == "wire transfer abroad")
    frame = pd.DataFrame(
        {"amount": amount, "kind": kind, "day": day.strftime("%Y-%m-%d"), "memo": memo}
    )
    if task == "regression":
        frame["y"] = 10 * signal + rng.normal(size=n)
        spec = TableSpec(target="y", task="regression", roles=ROLES, classes=())
    else:
        frame["y"] = np.where(signal + rng.logistic(size=n) > 1, "bad", "good")
        spec = TableSpec(
            target="y", task="binary", roles=ROLES, classes=("bad", "good"), positive_class="bad"
        )
    parts = {"train": frame.iloc[:600], "val": frame.iloc[600:750], "test": frame.iloc[750:]}
    return spec, parts


def test_lightgbm_reference_is_early_stopped_and_reports_its_settings():
    spec, parts = _parts()
    outputs, settings = lightgbm_reference(spec, parts)
    assert outputs["val"].shape == (150, 2) and outputs["test"].shape == (150, 2)
    np.testing.assert_allclose(outputs["test"].sum(axis=1), 1.0)
    assert 0 < settings["best_iteration"] < settings["max_rounds"]
    assert settings["text"] and settings["n_features"] > 6  # numbers, codes, dates and TF-IDF
    assert settings["params"]["objective"] == "binary"
    json.dumps(settings)
    assert lightgbm_settings(spec)["params"] == settings["params"]


def test_fit_and_run_baseline_keep_their_shapes():
    spec, parts = _parts()
    fitted = fit_baselines(spec, parts)
    assert (
        list(fitted) == [reference_name(spec), "Majority class"] == ["LightGBM", "Majority class"]
    )
    name, metrics = run_baseline(spec, parts)
    assert name == "LightGBM" and metrics["test"]["roc_auc"] > 0.7
    assert metrics["settings"]["best_iteration"] > 0  # what a benchmark prints
    assert LIGHTGBM_PARAMS["learning_rate"] == metrics["settings"]["params"]["learning_rate"]

    spec, parts = _parts("regression")
    fitted = fit_baselines(spec, parts)
    assert fitted["LightGBM"]["test"].shape == (150,)
    assert np.corrcoef(fitted["LightGBM"]["test"], parts["test"]["y"])[0, 1] > 0.9
