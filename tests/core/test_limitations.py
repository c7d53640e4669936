"""The report's limitation rules, each at its threshold: fires just past it, stays quiet at it."""

from __future__ import annotations

import pytest

from core.review import limitations as lim
from core.review.limitations import Epochs, Evidence


def _interval(width: float, n_test: int = 500, task: str = "binary", value: float = 0.8):
    return lim.interval_limits(
        metric="roc_auc" if task != "regression" else "rmse",
        value=value,
        interval=(value - width / 2, value + width / 2),
        n_test=n_test,
        task=task,
    )


def test_wide_interval_fires_past_the_threshold_only():
    assert _interval(lim.WIDE_INTERVAL - 1e-9) == []  # at the threshold, give or take rounding
    (found,) = _interval(lim.WIDE_INTERVAL + 1e-6)
    assert found.startswith("Wide interval: 500 test rows") and "ROC AUC" in found


def test_regression_interval_is_judged_relative_to_the_value():
    value = 10.0
    assert _interval(lim.RELATIVE_WIDE_INTERVAL * value, task="regression", value=value) == []
    (found,) = _interval(lim.RELATIVE_WIDE_INTERVAL * value + 1e-3, task="regression", value=value)
    assert found.startswith("Wide interval")


def test_small_test_set_fires_below_the_row_count_even_when_narrow():
    assert _interval(0.01, n_test=lim.SMALL_TEST_ROWS) == []
    (found,) = _interval(0.01, n_test=lim.SMALL_TEST_ROWS - 1)
    assert found.startswith(f"Small test set: {lim.SMALL_TEST_ROWS - 1} test rows")


def test_missing_or_undefined_interval():
    (found,) = lim.interval_limits(
        metric="roc_auc", value=0.8, interval=None, n_test=50, task="binary"
    )
    assert found.startswith("No bootstrap interval was recorded")
    assert (
        lim.interval_limits(
            metric="roc_auc", value=None, interval=(0.1, 0.9), n_test=50, task="binary"
        )
        == []
    )
    assert (
        lim.interval_limits(
            metric="roc_auc", value=0.8, interval=(float("nan"), 0.9), n_test=50, task="binary"
        )
        == []
    )


def test_imbalanced_target_at_the_minority_share():
    share = lim.MINORITY_SHARE
    assert lim.imbalance_limits({"good": 1 - share, "bad": share}, class_weights="none") == []
    (found,) = lim.imbalance_limits({"good": 0.81, "bad": share - 0.01}, class_weights="balanced")
    assert found.startswith("Class imbalance: 'bad' is 19.0%")
    assert "Class weights: balanced." in found
    assert lim.imbalance_limits({}, class_weights="none") == []


def test_few_events_below_the_count():
    assert lim.few_event_limits(lim.FEW_EVENTS, positive="bad") == []
    assert lim.few_event_limits(None, positive=None) == []
    (found,) = lim.few_event_limits(lim.FEW_EVENTS - 1, positive="bad")
    assert found.startswith("Few events: the test rows hold 29 of class 'bad'")
    (zero,) = lim.few_event_limits(0, positive="bad")
    assert "by 100 points" in zero  # no division by zero


def test_poor_calibration_above_the_ece():
    assert lim.calibration_limits(lim.POOR_CALIBRATION_ECE) == []
    assert lim.calibration_limits(None) == [] and lim.calibration_limits(float("nan")) == []
    (found,) = lim.calibration_limits(lim.POOR_CALIBRATION_ECE + 0.001)
    assert found.startswith("Calibration: the expected calibration error is 0.051")


def test_one_prediction_for_every_row():
    assert lim.constant_prediction_limits(["bad", "good"], task="binary") == []
    assert lim.constant_prediction_limits([], task="binary") == []
    (binary,) = lim.constant_prediction_limits(["good"] * 3, task="binary")
    assert "predicts 'good' for all 3 test rows at the decision threshold" in binary
    (multi,) = lim.constant_prediction_limits(["up"] * 2, task="multiclass")
    assert "for all 2 test rows, so" in multi
    (regression,) = lim.constant_prediction_limits([1.5, 1.5], task="regression")
    assert regression.startswith("Constant predictions")


def test_split_rules():
    assert lim.split_limits(split="random", date_columns=[], embargo=0) == []
    (random,) = lim.split_limits(split="random", date_columns=["day"], embargo=0)
    assert random.startswith("Random split on a table with dates ('day')")
    (time,) = lim.split_limits(split="time:day", date_columns=["day"], embargo=0)
    assert time.startswith("Time split by 'day' without an embargo")
    assert lim.split_limits(split="time:day", date_columns=["day"], embargo=1) == []
    assert lim.split_limits(split="stratified", date_columns=["day"], embargo=0) == []


def test_leakage_truncation_shift_failed_checks_and_costs():
    assert lim.leakage_limits([]) == []
    (leak,) = lim.leakage_limits(["'id' is an identifier.", "'x' predicts the target."])
    assert leak.startswith("Leakage checks raised 2 warning(s): 'id' is an identifier.")
    assert lim.truncation_limits(None) == [] and lim.truncation_limits((0.0, 128, 100)) == []
    (cut,) = lim.truncation_limits((0.25, 128, 1000))
    assert cut.startswith("Truncated texts: 25.0% of 1,000 rows serialise to more than 128 tokens")
    assert lim.shift_limits([]) == []
    (shift,) = lim.shift_limits([("income", 0.31)])
    assert "'income' (0.31)" in shift
    assert lim.failed_check_limits({}) == []
    assert lim.failed_check_limits({"stability": "boom"}) == [
        "The stability check failed (boom): its evidence is missing from this report."
    ]
    assert lim.cost_limits(False) == []
    assert lim.cost_limits(True)[0].startswith("The decision threshold weighs a false positive")


@pytest.mark.parametrize(
    ("metric", "model", "base", "fires"),
    [
        ("roc_auc", 0.80, 0.80, False),  # a tie is not a beat
        ("roc_auc", 0.80, 0.81, True),
        ("rmse", 2.0, 2.0, False),  # lower is better
        ("rmse", 2.0, 1.9, True),
        ("rmse", 2.0, 2.1, False),
    ],
)
def test_baseline_beats_the_model(metric, model, base, fires):
    found = lim.baseline_limits(
        metric=metric, value=model, interval=None, baselines={"LightGBM": (base, None)}
    )
    assert bool(found) is fires
    if fires:
        assert found[0].startswith("The LightGBM baseline beats the fine-tuned model")


def test_baseline_intervals_overlap_or_not():
    def verdict(base_interval):
        (found,) = lim.baseline_limits(
            metric="roc_auc",
            value=0.70,
            interval=(0.65, 0.75),
            baselines={"LightGBM": (0.80, base_interval)},
        )
        return found

    assert "their intervals do not overlap" in verdict((0.76, 0.84))
    assert "(their intervals overlap)" in verdict((0.75, 0.84))
    assert (
        lim.baseline_limits(
            metric="roc_auc", value=None, interval=None, baselines={"x": (0.9, None)}
        )
        == []
    )


def _training(run, last, best, *, allowed=5, max_steps=None, last_step=100):
    epochs = Epochs(run=run, last=last, last_step=last_step, best=best)
    return lim.training_limits(epochs, epochs_allowed=allowed, max_steps=max_steps, patience=2)


def test_training_rules():
    assert lim.training_limits(None, epochs_allowed=3, max_steps=None, patience=2) == []
    (capped,) = _training(2, 2, 2, max_steps=100, last_step=100)
    assert capped.startswith("Training was capped at max_steps = 100 after 2 epoch(s)")
    assert not any(t.startswith("Training was capped") for t in _training(2, 2, 2, max_steps=101))
    (early,) = _training(3, 3, 1)
    assert early.startswith("Early stopping: training stopped after epoch 3 of 5")
    (improving,) = _training(5, 5, 5)
    assert improving.startswith("The validation score was still improving at the last epoch (5)")
    (kept,) = _training(5, 5, 3)
    assert kept.startswith("The saved weights are those of epoch 3")
    assert _training(5, 5, None) == []
    (single,) = _training(1, 1, 1, allowed=1)
    assert single.startswith("The model was trained for a single epoch")
    assert len(_training(1, 1, 1, allowed=1, max_steps=500)) == 0


def _evidence(**changes) -> Evidence:
    quiet = {
        "task": "binary",
        "metric": "roc_auc",
        "value": 0.8,
        "interval": (0.78, 0.82),
        "n_test": 1000,
        "baselines": {},
        "class_shares": {"good": 0.6, "bad": 0.4},
        "class_weights": "none",
        "positive": "bad",
        "events": 400,
        "ece": 0.01,
        "predictions": ["good", "bad"],
        "leakage": [],
        "split": "random",
        "date_columns": [],
        "embargo": 0,
        "truncation": None,
        "epochs": None,
        "epochs_allowed": 3,
        "max_steps": None,
        "patience": 2,
        "shifted": [],
        "failed_checks": {},
        "equal_costs": False,
    }
    return Evidence(**{**quiet, **changes})


def test_all_rules_together_in_the_report_order():
    assert lim.limitations(_evidence()) == []
    found = lim.limitations(
        _evidence(
            notes=["A note."],
            n_test=100,
            equal_costs=True,
            events=3,
            leakage=["Leak."],
            shifted=[("x", 0.4)],
        )
    )
    assert [text.split(":")[0].split(" ")[0] for text in found] == [
        "A",
        "Small",
        "Few",
        "Leakage",
        "Population",
        "The",
    ]


def test_events_are_only_read_for_binary_runs():
    multiclass = _evidence(
        task="multiclass", events=1, class_shares={"a": 0.5, "b": 0.5}, predictions=["a", "b"]
    )
    assert lim.limitations(multiclass) == []
    regression = _evidence(
        task="regression",
        metric="rmse",
        value=10.0,
        interval=(9.5, 10.5),
        class_shares={},
        ece=0.9,
        predictions=[1.0, 1.0],
    )
    (constant,) = lim.limitations(regression)  # calibration is not a regression's limitation
    assert constant.startswith("Constant predictions")
