"""bench.quality's fold construction, overrides and summary: pure functions, no training."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.quality import (
    build_config,
    make_folds,
    parse_overrides,
    summarise,
    table_folds,
    variant_overrides,
)

PARTS = ("train", "val", "test")


def _check_partition(folds, n_rows, *, val_fraction=0.15):
    tests = np.concatenate([f["test"] for f in folds])
    assert len(tests) == len(np.unique(tests)), "test folds overlap"
    for fold in folds:
        train, val, test = (set(fold[p].tolist()) for p in PARTS)
        assert train and val and test
        assert not train & val and not train & test and not val & test
        for part in PARTS:
            assert np.all(np.diff(fold[part]) > 0), "positions sorted and unique"
    return tests


def test_stratified_folds_partition_the_rows_and_keep_class_shares():
    rng = np.random.default_rng(1)
    labels = rng.choice(["good", "bad", "rare"], size=503, p=[0.7, 0.25, 0.05])
    folds = make_folds(len(labels), 5, val_fraction=0.15, strata=labels)
    assert len(folds) == 5
    tests = _check_partition(folds, len(labels))
    assert np.array_equal(np.sort(tests), np.arange(len(labels)))
    overall = pd.Series(labels).value_counts(normalize=True)
    for fold in folds:
        everything = np.concatenate([fold[p] for p in PARTS])
        assert np.array_equal(np.sort(everything), np.arange(len(labels)))
        assert abs(len(fold["val"]) / (len(fold["train"]) + len(fold["val"])) - 0.15) < 0.01
        for part in ("test", "val"):
            shares = pd.Series(labels[fold[part]]).value_counts(normalize=True)
            for label, share in overall.items():
                assert abs(shares.get(label, 0.0) - share) < 0.03, (part, label)


def test_random_folds_without_strata_and_a_class_rarer_than_the_folds():
    folds = make_folds(100, 4)
    tests = _check_partition(folds, 100)
    assert np.array_equal(np.sort(tests), np.arange(100))
    labels = np.array(["a"] * 97 + ["b"] * 3)  # 3 < 4 folds: falls back to plain K-fold
    tests = _check_partition(make_folds(100, 4, strata=labels), 100)
    assert np.array_equal(np.sort(tests), np.arange(100))


def test_same_seed_same_folds():
    labels = np.array(["a", "b"] * 50)
    first, second = make_folds(100, 5, strata=labels), make_folds(100, 5, strata=labels)
    for a, b in zip(first, second, strict=True):
        for part in PARTS:
            assert np.array_equal(a[part], b[part])


def _dates(n_dates, per_date, seed=0):
    days = pd.date_range("2021-01-01", periods=n_dates, freq="D").to_numpy()
    times = np.repeat(days, per_date)
    return np.random.default_rng(seed).permutation(times)  # rows not in date order


def test_time_folds_are_forward_chaining_and_never_split_a_date():
    times = _dates(120, 3)
    folds = make_folds(len(times), 5, val_fraction=0.15, times=times)
    tests = _check_partition(folds, len(times))
    # Every row is in a test fold except the first block, which only ever trains.
    assert len(tests) == pytest.approx(len(times) * 5 / 6, abs=3)
    previous_test_end = None
    for i, fold in enumerate(folds):
        t = {p: times[fold[p]] for p in PARTS}
        assert t["train"].max() < t["val"].min() <= t["val"].max() < t["test"].min()
        if previous_test_end is not None:
            assert t["test"].min() > previous_test_end
            # expanding window: the history is everything before the test block
            assert len(fold["train"]) + len(fold["val"]) > len(folds[i - 1]["train"])
        previous_test_end = t["test"].max()
        history = np.concatenate([fold["train"], fold["val"]])
        assert np.array_equal(np.sort(history), np.flatnonzero(times < t["test"].min()))
        for part in PARTS:  # a date's rows all sit in one part
            inside = np.isin(times, t[part])
            assert np.array_equal(np.flatnonzero(inside), fold[part])
    covered = times[tests]
    assert covered.max() == times.max()


def test_time_folds_embargo_leaves_dates_out():
    times = _dates(200, 2)
    folds = make_folds(len(times), 4, times=times, embargo=3)
    day = np.timedelta64(1, "D")
    for fold in folds:
        t = {p: times[fold[p]] for p in PARTS}
        assert (t["val"].min() - t["train"].max()) == 4 * day
        assert (t["test"].min() - t["val"].max()) == 4 * day


def test_too_few_dates_for_the_folds_is_an_error():
    with pytest.raises(ValueError, match="distinct dates"):
        make_folds(12, 5, times=_dates(4, 3))
    with pytest.raises(ValueError, match="2 or more"):
        make_folds(100, 1)


def test_table_folds_use_the_configured_split():
    rng = np.random.default_rng(0)
    n = 240
    frame = pd.DataFrame(
        {
            "date": np.repeat(pd.date_range("2022-01-03", periods=n // 2, freq="D"), 2).astype(str),
            "x": rng.normal(size=n),
            "y": rng.choice(["up", "down"], size=n),
        }
    )
    frame.loc[5, "y"] = None  # unlabelled rows are in no fold
    from core.data.schema import describe_table

    config = build_config("y", "time:date", {})
    spec = describe_table(frame, config.data)
    folds, kind = table_folds(frame, spec, config.data, 3)
    assert kind.startswith("time-ordered")
    dates = pd.to_datetime(frame["date"])
    for fold in folds:
        assert 5 not in np.concatenate([fold[p] for p in PARTS])
        assert dates.iloc[fold["val"]].max() < dates.iloc[fold["test"]].min()
    config = build_config("y", "random", {})
    folds, kind = table_folds(frame, describe_table(frame, config.data), config.data, 3)
    assert kind == "stratified"
    tests = np.sort(np.concatenate([f["test"] for f in folds]))
    assert np.array_equal(tests, np.delete(np.arange(n), 5))


def test_overrides_parse_into_nested_settings():
    parsed = parse_overrides(
        ["model.freeze_depth=6", "train.lr=1e-4", "model.numeric_in_text=always", "data.embargo=2"]
    )
    assert parsed == {
        "model": {"freeze_depth": 6, "numeric_in_text": "always"},
        "train": {"lr": 1e-4},
        "data": {"embargo": 2},
    }
    assert parse_overrides(["model.max_length=none", "train.compile=true"]) == {
        "model": {"max_length": None},
        "train": {"compile": True},
    }
    assert variant_overrides("model.freeze_depth=3+train.epochs=2") == {
        "model": {"freeze_depth": 3},
        "train": {"epochs": 2},
    }
    assert variant_overrides("frozen") == {"model": {"freeze_depth": 6}}
    for bad in ("freeze_depth=6", "model.freeze_depth", "optimizer.lr=1"):
        with pytest.raises(ValueError):
            parse_overrides([bad])
    with pytest.raises(ValueError, match="not a setting"):
        build_config("y", "random", {"model": {"freeze_dept": 6}})
    with pytest.raises(ValueError, match="epochs"):
        build_config("y", "random", {"train": {"epochs": 0}})
    assert build_config("y", "time:date", parsed).model.freeze_depth == 6


def _row(ours, reference, fold, *, metric="roc_auc", extra=None, info=None):
    return {
        "dataset": "credit",
        "variant": "default",
        "task": "binary",
        "metric": metric,
        "fold": fold,
        "fold_kind": "stratified",
        "rows_total": 100,
        "rows": {"train": 68, "val": 12, "test": 20},
        "reference_name": "LightGBM",
        "ours": ours,
        "reference": reference,
        "ours_seconds": 10.0 + fold,
        "reference_seconds": 0.5,
        "epochs_run": 2,
        "ours_extra": extra or {},
        "reference_info": info or {},
    }


def test_summary_paired_difference_and_intervals():
    from scipy.stats import t

    ours = [0.80, 0.78, 0.83, 0.75, 0.81]
    reference = [0.79, 0.80, 0.80, 0.74, 0.76]
    rows = [
        _row(o, r, i, extra={"network_roc_auc": o - 0.01}, info={"n_trees": 100 + i})
        for i, (o, r) in enumerate(zip(ours, reference, strict=True))
    ]
    s = summarise(rows)
    d = np.array(ours) - np.array(reference)
    assert s["difference_mean"] == pytest.approx(d.mean())
    half = t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert s["difference_interval_t"] == pytest.approx([d.mean() - half, d.mean() + half])
    corrected = s["difference_interval_corrected"]
    assert corrected[0] < s["difference_interval_t"][0] and corrected[1] > half + d.mean()
    assert (s["wins"], s["losses"], s["ties"]) == (4, 1, 0)
    assert s["ours_mean"] == pytest.approx(np.mean(ours))
    assert s["ours_sd"] == pytest.approx(np.std(ours, ddof=1))
    assert s["ours_seconds_median"] == 12.0
    assert s["ours_extra"]["network_roc_auc"]["mean"] == pytest.approx(np.mean(ours) - 0.01)
    assert s["reference_info"]["n_trees"]["median"] == 102


def test_summary_regression_lower_is_better_and_undefined_folds():
    rows = [_row(1.0, 2.0, 0, metric="rmse"), _row(3.0, 2.0, 1, metric="rmse")]
    rows.append(_row(float("nan"), 1.0, 2, metric="rmse"))
    s = summarise(rows)
    assert (s["wins"], s["losses"]) == (1, 1)
    assert s["folds_undefined"] == 1
    assert s["difference_mean"] == pytest.approx(0.0)


def test_the_command_runs_end_to_end_without_training(monkeypatch, tmp_path, capsys):
    """main() with the fitting replaced: folds, printing, settings and the JSON file."""
    import json

    import bench.quality as quality

    n = 150
    rng = np.random.default_rng(0)
    market = pd.DataFrame(
        {
            "date": pd.date_range("2022-01-03", periods=n, freq="D").astype(str),
            "close": rng.normal(size=n),
            "next_day_direction": rng.choice(["up", "down"], size=n),
        }
    )
    seen = []

    def fake_fold(frame, config, fold):
        seen.append((config.model.freeze_depth, fold))
        return {
            "task": "binary",
            "metric": "roc_auc",
            "rows": {p: len(fold[p]) for p in PARTS},
            "ours": 0.7,
            "reference": 0.6,
            "reference_name": "LightGBM",
            "ours_seconds": 1.0,
            "reference_seconds": 0.1,
            "epochs_run": 1,
            "ours_extra": {"network_roc_auc": 0.65},
            "reference_info": {"params": {"num_leaves": 15}, "best_iteration": len(seen)},
        }

    monkeypatch.setattr(quality, "load_table", lambda name, max_rows: market)
    monkeypatch.setattr(quality, "run_fold", fake_fold)
    out = tmp_path / "q.json"
    quality.main(
        ["--datasets", "market", "--folds", "3", "--variants", "default,model.freeze_depth=2"]
        + ["--set", "train.lr=1e-4", "--json", str(out)]
    )
    printed = capsys.readouterr()
    assert [depth for depth, _ in seen] == ["auto", "auto", "auto", 2, 2, 2]
    assert "fold 3/3" in printed.err and "test 2022-" in printed.err
    assert "+0.100" in printed.out and "3/0/0" in printed.out
    assert "network_roc_auc 0.650" in printed.out
    assert "best_iteration median 2" in printed.out and "lr 0.0001" in printed.out
    payload = json.loads(out.read_text())
    assert len(payload["fold_rows"]) == 6 and len(payload["summary"]) == 2
    assert payload["summary"][1]["variant"] == "model.freeze_depth=2"
    periods = [row["test_dates"] for row in payload["fold_rows"][:3]]
    assert periods[0][0] <= periods[0][1] < periods[1][0] <= periods[1][1] < periods[2][0]


def test_a_typo_fails_before_any_training(monkeypatch):
    import bench.quality as quality

    monkeypatch.setattr(quality, "run_fold", lambda *a: pytest.fail("trained"))
    for argv in (["--set", "model.freeze_dept=2"], ["--variants", "frozn"], ["--datasets", "x"]):
        with pytest.raises(SystemExit, match="bench.quality"):
            quality.main(argv)


def test_lightgbm_reference_early_stops_on_our_val_rows_with_our_date_parts(monkeypatch):
    """run_fold gives LightGBM the fold's validation rows for early stopping, and its features
    include the month and weekday parts the network derives from a date column."""
    from core.config import DataConfig
    from core.data.preprocess import DATE_PART_NAMES
    from core.data.schema import describe_table
    from core.evaluation.baselines import run_baseline
    from core.model import trees

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2022-01-03", periods=n, freq="D").astype(str),
            "x": rng.normal(size=n),
        }
    )
    frame["y"] = (frame["x"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    spec = describe_table(frame, DataConfig(target="y"))
    parts = {"train": frame.iloc[:280], "val": frame.iloc[280:340], "test": frame.iloc[340:]}
    seen = {}
    fit = trees.TreeModel.fit

    def recording(self, train, val=None):
        seen["val"], model = val, fit(self, train, val)
        seen["names"] = model.features_.names
        return model

    monkeypatch.setattr(trees.TreeModel, "fit", recording)
    name, result = run_baseline(spec, parts)
    assert name.startswith("LightGBM")
    assert seen["val"].index.equals(parts["val"].index)
    assert [f"date ({part})" for part in DATE_PART_NAMES] == [
        c for c in seen["names"] if c.startswith("date")
    ]
    settings = result["settings"]
    assert settings["early_stopping_rounds"] > 0
    assert settings["best_iteration"] < settings["max_rounds"]  # stopped early on those rows
