"""The rules behind the report's "Known limitations": what a run's numbers say to be careful with.

Each rule is a pure function of plain facts (numbers, labels, messages) that returns the sentences
it finds, none when it does not fire; :func:`limitations` applies them all, in the report's order,
to an :class:`Evidence` that :func:`core.review.facts.evidence` gathers from a run folder. Nothing
here reads files or writes HTML, so each threshold is tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..stats.metrics import HIGHER_IS_BETTER, metric_label

WIDE_INTERVAL = 0.10  # classification: a headline interval wider than this is called wide
RELATIVE_WIDE_INTERVAL = 0.25  # regression: interval width over the value
SMALL_TEST_ROWS = 200
MINORITY_SHARE = 0.20  # a class under this share of labelled rows makes the target imbalanced
FEW_EVENTS = 30  # positive test rows below which precision and recall move a lot per row
POOR_CALIBRATION_ECE = 0.05

Interval = tuple[float, float]


@dataclass(frozen=True)
class Epochs:
    """What the training history says: epochs run, the last one's number and step, the best one."""

    run: int
    last: int
    last_step: int
    best: int | None


@dataclass(frozen=True)
class Evidence:
    """The plain facts of one run that the rules read (gathered by ``facts.evidence``)."""

    task: str
    metric: str  # the headline metric
    value: float | None  # its test value
    interval: Interval | None  # its bootstrap 95% interval
    n_test: int
    baselines: dict[str, tuple[float | None, Interval | None]]  # name -> headline value, interval
    class_shares: dict[str, float]  # label -> share of labelled rows; empty for regression
    class_weights: object
    positive: str | None
    events: int | None  # positive test rows (binary only)
    ece: float | None
    predictions: Sequence  # the test predictions (labels or values)
    leakage: Sequence[str]  # leakage warning messages
    split: str  # as resolved: "random", "time:COLUMN", ...
    date_columns: Sequence[str]
    embargo: int
    truncation: tuple[float, int, int] | None  # share longer, tokens allowed, rows measured
    epochs: Epochs | None
    epochs_allowed: int | str  # "auto" only in a run stopped before its model was built
    max_steps: int | None
    patience: int | str
    shifted: Sequence[tuple[str, float]]  # inputs whose PSI level is "shift": name, PSI
    failed_checks: dict[str, str]  # check ("stability", "baselines") -> its error
    equal_costs: bool  # a cost-chosen threshold with a false positive costing as a false negative
    notes: Sequence[str] = ()  # found while reading the folder


def limitations(e: Evidence) -> list[str]:
    """Every limitation the rules find in ``e``, in the order the report lists them."""
    return [
        *e.notes,
        *interval_limits(
            metric=e.metric, value=e.value, interval=e.interval, n_test=e.n_test, task=e.task
        ),
        *class_limits(e),
        *leakage_limits(e.leakage),
        *split_limits(split=e.split, date_columns=e.date_columns, embargo=e.embargo),
        *truncation_limits(e.truncation),
        *training_limits(
            e.epochs, epochs_allowed=e.epochs_allowed, max_steps=e.max_steps, patience=e.patience
        ),
        *baseline_limits(
            metric=e.metric, value=e.value, interval=e.interval, baselines=e.baselines
        ),
        *shift_limits(e.shifted),
        *failed_check_limits(e.failed_checks),
        *cost_limits(e.equal_costs),
    ]


def class_limits(e: Evidence) -> list[str]:
    """The rules on the target and the predictions: imbalance, events, calibration, one label."""
    if e.task == "regression":
        return constant_prediction_limits(e.predictions, task=e.task)
    return [
        *imbalance_limits(e.class_shares, class_weights=e.class_weights),
        *(few_event_limits(e.events, positive=e.positive) if e.task == "binary" else []),
        *calibration_limits(e.ece),
        *constant_prediction_limits(e.predictions, task=e.task),
    ]


def interval_limits(
    *, metric: str, value: float | None, interval: Interval | None, n_test: int, task: str
) -> list[str]:
    """A missing, wide (or, on a small test set, any) interval of the headline test metric."""
    label = metric_label(metric)
    if not interval:
        return [
            f"No bootstrap interval was recorded for the test {label} ({n_test:,} test rows): "
            "its uncertainty is unknown."
        ]
    if value is None or not all(math.isfinite(v) for v in interval):
        return []
    width = interval[1] - interval[0]
    wide = (
        width / abs(value) > RELATIVE_WIDE_INTERVAL
        if task == "regression" and value
        else width > WIDE_INTERVAL
    )
    if not wide and n_test >= SMALL_TEST_ROWS:
        return []
    return [
        ("Small test set" if n_test < SMALL_TEST_ROWS else "Wide interval")
        + f": {n_test:,} test rows. The 95% interval of the test {label} is "
        f"[{interval[0]:.4f}, {interval[1]:.4f}], {width:.4f} wide: differences smaller than "
        "that (between models, or against a target) are not established by this test."
    ]


def imbalance_limits(class_shares: dict[str, float], *, class_weights) -> list[str]:
    """A class under MINORITY_SHARE of the labelled rows."""
    if not class_shares:
        return []
    label = min(class_shares, key=class_shares.get)
    share = class_shares[label]
    if share >= MINORITY_SHARE:
        return []
    return [
        f"Class imbalance: {label!r} is {100 * share:.1f}% of the labelled rows. Accuracy "
        "is then a poor guide (the majority class alone scores high); read ROC AUC, PR AUC and "
        f"the results at the decision threshold. Class weights: {class_weights}."
    ]


def few_event_limits(events: int | None, *, positive: str | None) -> list[str]:
    """Fewer than FEW_EVENTS positive test rows (binary)."""
    if events is None or events >= FEW_EVENTS:
        return []
    return [
        f"Few events: the test rows hold {events} of class {positive!r}, so each one moves "
        f"recall by {100 / max(events, 1):.0f} points."
    ]


def calibration_limits(ece: float | None) -> list[str]:
    """An expected calibration error above POOR_CALIBRATION_ECE."""
    if ece is None or not math.isfinite(ece) or ece <= POOR_CALIBRATION_ECE:
        return []
    return [
        f"Calibration: the expected calibration error is {ece:.3f}; read the outputs as scores "
        "that rank rows, not as probabilities, unless they are recalibrated."
    ]


def constant_prediction_limits(predictions: Sequence, *, task: str) -> list[str]:
    """The same prediction for every test row."""
    if len(set(predictions)) != 1:
        return []
    if task == "regression":
        return ["Constant predictions: the model predicts the same value for every test row."]
    at = " at the decision threshold" if task == "binary" else ""
    return [
        f"One label for every row: the model predicts {str(predictions[0])!r} for all "
        f"{len(predictions):,} test rows{at}, so it does not separate the classes in practice."
    ]


def leakage_limits(warnings: Sequence[str]) -> list[str]:
    """Leakage warnings raised at training."""
    if not warnings:
        return []
    return [
        f"Leakage checks raised {len(warnings)} warning(s): "
        + " ".join(warnings)
        + " Test metrics may overstate performance until this is ruled out."
    ]


def split_limits(*, split: str, date_columns: Sequence[str], embargo: int) -> list[str]:
    """A random split of a table with dates, or a time split without an embargo."""
    if split == "random" and date_columns:
        return [
            f"Random split on a table with dates ({', '.join(map(repr, date_columns))}): test "
            "rows come from the same periods as training rows, so the metrics do not show how "
            "the model does on later periods. Use a time split to measure that."
        ]
    if split.startswith("time:") and not embargo:
        return [
            f"Time split by {split[5:]!r} without an embargo: right when the target is known "
            "at the row's date; if it looks ahead (next-period returns, default within 12 "
            "months), rows next to a split boundary share outcomes and flatter the test "
            "metrics: set an embargo of at least the horizon."
        ]
    return []


def truncation_limits(truncation: tuple[float, int, int] | None) -> list[str]:
    """Texts longer than the model's max length."""
    if truncation is None or truncation[0] <= 0:
        return []
    share, allowed, measured = truncation
    return [
        f"Truncated texts: {100 * share:.1f}% of {measured:,} rows serialise to more than "
        f"{allowed} tokens; the model never reads the part beyond that."
    ]


def training_limits(
    epochs: Epochs | None,
    *,
    epochs_allowed: int | str,
    max_steps: int | None,
    patience: int | str,
) -> list[str]:
    """How training ended: capped, stopped early, still improving, best not last, single epoch."""
    if epochs is None or not epochs.run:
        return []
    found = []
    if max_steps is not None and epochs.last_step >= max_steps:
        found.append(
            f"Training was capped at max_steps = {max_steps} after {epochs.run} epoch(s): "
            "a quick trial, probably not a fully trained model."
        )
    elif isinstance(epochs_allowed, int) and epochs.run < epochs_allowed:  # "auto": unresolved
        found.append(
            f"Early stopping: training stopped after epoch {epochs.last} of "
            f"{epochs_allowed}, the validation score having not improved for {patience} "
            f"epoch(s); the saved weights are those of epoch {epochs.best}."
        )
    elif epochs.best == epochs.last and epochs.run > 1:
        found.append(
            "The validation score was still improving at the last epoch "
            f"({epochs.last}): more epochs might give a better model."
        )
    elif epochs.best is not None and epochs.best != epochs.last:
        found.append(
            f"The saved weights are those of epoch {epochs.best}, the best on validation "
            f"rows, not of the last epoch ({epochs.last})."
        )
    if epochs.run == 1 and max_steps is None:
        found.append(
            "The model was trained for a single epoch: one validation score cannot show "
            "whether it was still improving."
        )
    return found


def baseline_limits(
    *,
    metric: str,
    value: float | None,
    interval: Interval | None,
    baselines: dict[str, tuple[float | None, Interval | None]],
) -> list[str]:
    """Each baseline whose test headline metric is better than the fine-tuned model's."""
    higher, found = HIGHER_IS_BETTER.get(metric, True), []
    for name, (base, base_interval) in baselines.items():
        if base is None or value is None or not math.isfinite(base) or not math.isfinite(value):
            continue
        if not ((base > value) if higher else (base < value)):
            continue
        apart = bool(
            interval
            and base_interval
            and (base_interval[0] > interval[1] if higher else base_interval[1] < interval[0])
        )
        found.append(
            f"The {name} baseline beats the fine-tuned model on test "
            f"{metric_label(metric)}: {base:.4f} against {value:.4f}"
            + (", and their intervals do not overlap." if apart else " (their intervals overlap).")
            + " The simpler model may be the better choice."
        )
    return found


def shift_limits(shifted: Sequence[tuple[str, float]]) -> list[str]:
    """Inputs whose population shifted between training and test rows."""
    if not shifted:
        return []
    return [
        "Population shift between training and test rows (PSI ≥ 0.25): "
        + ", ".join(f"{name!r} ({psi:.2f})" for name, psi in shifted)
        + ". Performance may drift as such shifts continue."
    ]


def failed_check_limits(failed: dict[str, str]) -> list[str]:
    """Checks that failed at training, so their evidence is missing."""
    return [
        f"The {check} check failed ({error}): its evidence is missing from this report."
        for check, error in failed.items()
    ]


def cost_limits(equal_costs: bool) -> list[str]:
    """A cost-chosen threshold still on the default equal costs."""
    if not equal_costs:
        return []
    return [
        "The decision threshold weighs a false positive and a false negative equally (the "
        "default): set the business costs (fintune threshold RUN --cost-fp X --cost-fn Y) "
        "before relying on it."
    ]
