"""The tree model: its features, LightGBM fit with early stopping, save/load, and the blend."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.data.schema import TableSpec
from core.errors import DataError
from core.model.trees import (
    STATE_FILE,
    TREE_FILE,
    TreeFeatures,
    TreeModel,
    apply_blend,
    encode_targets,
    fit_blend,
    has_tree_features,
    log_softmax,
)

ROLES = {"amount": "numeric", "age": "numeric", "kind": "categorical", "day": "datetime"}


def _table(n: int, seed: int, *, noise: bool = False, task: str = "binary") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.normal(size=n)
    age = rng.uniform(20, 70, size=n)
    kind = rng.choice(["a", "b", "c"], size=n)
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, size=n), unit="D")
    signal = 1.5 * amount + (kind == "b") * 1.5 - (age - 45) / 15
    if noise:
        signal = np.zeros(n)
    frame = pd.DataFrame(
        {"amount": amount, "age": age, "kind": kind, "day": day.strftime("%Y-%m-%d")}
    )
    frame.loc[rng.random(n) < 0.1, "amount"] = np.nan  # missing numbers
    if task == "regression":
        frame["y"] = 100 + 20 * signal + rng.normal(scale=5, size=n)
    elif task == "multiclass":
        score = signal + rng.logistic(size=n)
        frame["y"] = np.select([score < -1, score < 1], ["low", "mid"], "high")
    else:
        frame["y"] = np.where(signal + rng.logistic(size=n) > 0, "yes", "no")
    return frame


def _spec(task: str = "binary", roles: dict | None = None) -> TableSpec:
    classes = {"binary": ("no", "yes"), "multiclass": ("high", "low", "mid")}.get(task, ())
    return TableSpec(
        target="y",
        task=task,
        roles=dict(roles or ROLES),
        classes=classes,
        positive_class="yes" if task == "binary" else None,
    )


def _auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    from core.stats.metrics import binary_ranking_metrics

    return binary_ranking_metrics(is_positive, score)["roc_auc"]


# --------------------------------------------------------------------------- features


def test_features_read_unseen_categories_and_missing_values_as_missing():
    train = _table(200, 0)
    features = TreeFeatures.fit(_spec(), train)
    assert features.categories["kind"] == ["a", "b", "c"]
    assert features.names == [
        "amount",
        "age",
        "kind",
        "day (month sin)",
        "day (month cos)",
        "day (weekday)",
    ]
    assert features.categorical_index == [2]
    new = pd.DataFrame(
        {
            "amount": [1.5, None, "$1,200"],
            "age": [30, 40, 50],
            "kind": ["b", "never seen", None],
            "day": ["2024-03-01", "not a date", None],
        }
    )
    x = features.transform(new)
    assert x.shape == (3, 6) and x.dtype == np.float64
    assert x[0, 0] == 1.5 and np.isnan(x[1, 0]) and x[2, 0] == 1200.0
    assert x[0, 2] == 1.0  # "b" is the second training category
    assert np.isnan(x[1, 2]) and np.isnan(x[2, 2])  # unseen and missing -> missing
    assert np.isfinite(x[:, 3:]).all()  # date parts as the network reads them


def test_features_state_is_json_and_reads_the_same():
    frame = _table(300, 1)
    frame["note"] = np.where(frame["kind"] == "b", "late payment again", "paid on time")
    spec = _spec(roles={**ROLES, "note": "text"})
    features = TreeFeatures.fit(spec, frame, text=True)
    assert features.vocabulary and "text: late payment" in features.names
    restored = TreeFeatures.from_dict(json.loads(json.dumps(features.to_dict())))
    a, b = features.transform(frame), restored.transform(frame)
    np.testing.assert_array_equal(a.toarray(), b.toarray())  # NaN (missing) included
    # the TF-IDF block equals sklearn's TfidfVectorizer on the same settings
    from sklearn.feature_extraction.text import TfidfVectorizer

    reference = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(frame["note"])
    expected = reference.transform(frame["note"]).toarray()
    np.testing.assert_allclose(a[:, 6:].toarray(), expected, atol=1e-12)
    # the shipped model leaves text to the network
    assert TreeFeatures.fit(spec, frame).names[-1] == "day (weekday)"


def test_features_name_a_missing_column():
    features = TreeFeatures.fit(_spec(), _table(50, 2))
    with pytest.raises(DataError, match="'kind'"):
        features.transform(_table(10, 3).drop(columns="kind"))


def test_a_table_of_only_text_has_no_tree_features():
    frame = pd.DataFrame(
        {"note": ["late payment"] * 30 + ["paid early"] * 30, "y": ["no"] * 30 + ["yes"] * 30}
    )
    spec = _spec(roles={"note": "text"})
    assert not has_tree_features(spec) and has_tree_features(spec, text=True)
    with pytest.raises(DataError, match="only text"):
        TreeModel(spec).fit(frame, frame)
    assert TreeModel(spec, text=True).fit(frame, frame).raw_outputs(frame).shape == (60, 2)


# --------------------------------------------------------------------------- the model


def test_binary_outputs_are_log_probabilities_and_round_trip_exactly(tmp_path):
    train, val, test = _table(1500, 10), _table(400, 11), _table(400, 12)
    model = TreeModel(_spec()).fit(train, val)
    outputs = model.raw_outputs(test)
    assert outputs.shape == (400, 2)
    np.testing.assert_allclose(np.exp(outputs).sum(axis=1), 1.0)
    np.testing.assert_allclose(log_softmax(outputs), outputs, atol=1e-12)
    proba = model.predict(test)
    assert _auc(test["y"].to_numpy() == "yes", proba[:, 1]) > 0.8
    assert 0 < model.best_iteration < model.max_rounds

    model.save(tmp_path)
    assert (tmp_path / TREE_FILE).read_text().startswith("tree")  # LightGBM's text format
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["best_iteration"] == model.best_iteration
    assert state["features"]["categories"]["kind"] == ["a", "b", "c"]
    loaded = TreeModel.load(tmp_path)
    assert loaded.best_iteration == model.best_iteration
    np.testing.assert_array_equal(loaded.raw_outputs(test), outputs)


def test_early_stopping_stops_early_on_noise():
    model = TreeModel(_spec(), max_rounds=2000, early_stopping_rounds=50)
    model.fit(_table(800, 20, noise=True), _table(300, 21, noise=True))
    assert model.best_iteration < 100
    assert model.booster_.current_iteration() < model.best_iteration + 60  # it stopped
    assert model.settings()["best_iteration"] == model.best_iteration


def test_without_validation_rows_a_fixed_number_of_trees():
    model = TreeModel(_spec(), max_rounds=40).fit(_table(300, 22), None)
    assert model.best_iteration == 40


def test_multiclass_path(tmp_path):
    spec = _spec("multiclass")
    train, val, test = (
        _table(n, s, task="multiclass") for n, s in ((1500, 30), (400, 31), (400, 32))
    )
    model = TreeModel(spec).fit(train, val)
    outputs = model.raw_outputs(test)
    assert outputs.shape == (400, 3)
    np.testing.assert_allclose(np.exp(outputs).sum(axis=1), 1.0)
    y = encode_targets(spec, test["y"])
    accuracy = float(np.mean(outputs.argmax(axis=1) == y))
    assert accuracy > np.bincount(y).max() / len(y) + 0.1  # well above the majority class
    model.save(tmp_path)
    np.testing.assert_array_equal(TreeModel.load(tmp_path).raw_outputs(test), outputs)


def test_regression_path_answers_in_the_scaled_space(tmp_path):
    spec = _spec("regression")
    train, val, test = (
        _table(n, s, task="regression") for n, s in ((1500, 40), (400, 41), (400, 42))
    )
    model = TreeModel(spec).fit(train, val)
    y = train["y"].to_numpy()
    assert model.target_stats == pytest.approx({"mean": y.mean(), "std": y.std()})
    outputs = model.raw_outputs(test)
    assert outputs.shape == (400, 1)
    values = model.predict(test)
    np.testing.assert_allclose(values, outputs[:, 0] * y.std() + y.mean())
    assert np.corrcoef(values, test["y"])[0, 1] > 0.9
    # the Preprocessor's statistics, when given, define the space
    given = TreeModel(spec, target_stats={"mean": 0.0, "std": 1.0}).fit(train, val)
    np.testing.assert_allclose(given.raw_outputs(test)[:, 0], given.predict(test))
    model.save(tmp_path)
    np.testing.assert_array_equal(TreeModel.load(tmp_path).raw_outputs(test), outputs)


def test_targets_outside_the_classes_are_left_out():
    train = _table(300, 50)
    train.loc[:9, "y"] = "unknown"
    train.loc[10:19, "y"] = None
    assert TreeModel(_spec(), max_rounds=20).fit(train, _table(100, 51)).best_iteration > 0


# --------------------------------------------------------------------------- the blend


def _classification_outputs(n: int, seed: int):
    """Well-calibrated logits, labels drawn from them, and pure-noise logits."""
    rng = np.random.default_rng(seed)
    good = rng.normal(scale=2.0, size=(n, 3))
    y = np.array([rng.choice(3, p=p) for p in np.exp(log_softmax(good))])
    return good, y, rng.normal(scale=5.0, size=(n, 3))


def test_blend_keeps_the_network_when_the_trees_are_noise():
    good, y, noise = _classification_outputs(3000, 60)
    blend = fit_blend("multiclass", good, noise, y)
    assert blend["weight"] == 1.0
    assert blend["val_loss_blend"] == blend["val_loss_network"] < blend["val_loss_trees"]
    json.dumps(blend)


def test_blend_keeps_the_trees_when_the_network_is_noise():
    good, y, noise = _classification_outputs(3000, 61)
    blend = fit_blend("multiclass", noise, good, y)
    assert blend["weight"] == 0.0
    assert blend["val_loss_blend"] == blend["val_loss_trees"] < blend["val_loss_network"]


def test_blend_of_two_partial_views_beats_both():
    rng = np.random.default_rng(62)
    a, b = rng.normal(size=4000), rng.normal(size=4000)
    y = (a + b + rng.logistic(size=4000) > 0).astype(int)
    network = np.stack([np.zeros(4000), a], axis=1)  # each sees half the signal
    trees = np.stack([np.zeros(4000), b], axis=1)
    blend = fit_blend("binary", network, trees, y)
    assert 0.0 < blend["weight"] < 1.0
    assert blend["val_loss_blend"] < min(blend["val_loss_network"], blend["val_loss_trees"])
    mixed = apply_blend(blend, network, trees)
    np.testing.assert_allclose(np.exp(mixed).sum(axis=1), 1.0)
    w = blend["weight"]
    expected = log_softmax(w * log_softmax(network) + (1 - w) * log_softmax(trees))
    np.testing.assert_allclose(mixed, expected)
    loss = -np.mean(mixed[np.arange(4000), y])
    assert loss == pytest.approx(blend["val_loss_blend"])


def test_blend_for_regression_uses_mean_squared_error():
    rng = np.random.default_rng(63)
    y = rng.normal(size=2000)
    network = (y + rng.normal(scale=0.5, size=2000)).reshape(-1, 1)
    trees = y + rng.normal(scale=0.5, size=2000)  # (N,) is accepted too
    blend = fit_blend("regression", network, trees, y)
    assert blend["loss"] == "mse" and 0.3 <= blend["weight"] <= 0.7
    assert blend["val_loss_blend"] <= min(blend["val_loss_network"], blend["val_loss_trees"])
    mixed = apply_blend(blend, network, trees)
    assert mixed.shape == (2000, 1)
    assert np.mean((mixed[:, 0] - y) ** 2) == pytest.approx(blend["val_loss_blend"])
    assert fit_blend("regression", rng.normal(scale=5.0, size=2000), trees, y)["weight"] == 0.0


def test_blend_with_the_real_tree_model():
    """Trees against a network that knows nothing: the blend is all trees."""
    spec = _spec()
    train, val = _table(1000, 70), _table(500, 71)
    trees = TreeModel(spec).fit(train, val).raw_outputs(val)
    y = encode_targets(spec, val["y"])
    useless = np.zeros_like(trees)
    blend = fit_blend("binary", useless, trees, y)
    assert blend["weight"] == 0.0
    assert blend["val_loss_blend"] <= min(blend["val_loss_network"], blend["val_loss_trees"])
