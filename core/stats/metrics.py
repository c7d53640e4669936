"""Evaluation metrics written to ``metrics.json``, and the curves and tables behind the charts.

Binary metrics score the *positive* class (the event: default, fraud, down move). The ranking
metrics share one sort of the scores (:func:`_ranked`), so a 1,000-resample bootstrap of every
metric costs well under a second on a few thousand rows.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

ECE_BINS = 10
DIRECTION_MIN_SHARE = 0.1  # a target is "return-like" when each sign holds at least this share


# --------------------------------------------------------------------------- binary ranking


def _ranked(is_positive: np.ndarray, score: np.ndarray):
    """Cumulative true/false positive counts at each distinct score, highest score first."""
    order = np.argsort(-score, kind="mergesort")
    score, is_positive = score[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(is_positive)[last_of_tie].astype(float)
    fps = (last_of_tie + 1) - tps
    return tps, fps


def binary_ranking_metrics(is_positive: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """roc_auc, gini (2·AUC − 1), ks (max TPR − FPR) and pr_auc (average precision)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return {"roc_auc": math.nan, "gini": math.nan, "ks": math.nan, "pr_auc": math.nan}
    tps, fps = _ranked(is_positive, score)
    tpr, fpr = np.r_[0.0, tps / n_pos], np.r_[0.0, fps / n_neg]
    auc = float(np.trapezoid(tpr, fpr))
    precision = tps / (tps + fps)
    recall_steps = np.diff(np.r_[0.0, tps / n_pos])
    return {
        "roc_auc": auc,
        "gini": 2 * auc - 1,
        "ks": float(np.max(tpr - fpr)),
        "pr_auc": float(np.sum(recall_steps * precision)),
    }


def expected_calibration_error(
    is_positive: np.ndarray, score: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Row-weighted mean |observed rate − mean predicted probability| over equal-width bins."""
    if len(score) == 0:
        return math.nan
    score = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    bins = np.minimum((score * n_bins).astype(int), n_bins - 1)
    predicted = np.bincount(bins, weights=score, minlength=n_bins)
    observed = np.bincount(bins, weights=np.asarray(is_positive, dtype=float), minlength=n_bins)
    return float(
        np.sum(np.abs(observed - predicted)) / len(score)
    )  # = sum_b (n_b/N)|rate_b - mean_b|


# --------------------------------------------------------------------------- per task


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, positive: int | None = None
) -> dict[str, float]:
    """Metrics of class probabilities ``proba`` (N, C) against encoded labels ``y_true``.

    All tasks: accuracy, f1 (binary: of the positive class; else macro), log_loss, roc_auc, brier,
    ece. Binary adds gini, ks and pr_auc of class ``positive`` (default 1). Multiclass roc_auc is
    the macro one-vs-rest mean over the classes present, brier the multiclass Brier score and ece
    that of the top predicted class.
    """
    y_true = np.asarray(y_true, dtype=int)
    n_classes = proba.shape[1]
    predicted = proba.argmax(axis=1)
    clipped = np.clip(proba, 1e-7, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    result = {
        "accuracy": float(np.mean(predicted == y_true)),
        "f1": float(_f1_per_class(y_true, predicted, n_classes).mean()),
        "log_loss": float(-np.mean(np.log(clipped[np.arange(len(y_true)), y_true]))),
    }
    if n_classes == 2:
        positive = 1 if positive is None else positive
        is_positive = y_true == positive
        score = proba[:, positive]
        result["f1"] = float(_f1_per_class(y_true, predicted, 2)[positive])
        ranking = binary_ranking_metrics(is_positive, score)
        result.update(ranking)
        result["brier"] = float(np.mean((score - is_positive) ** 2))
        result["ece"] = expected_calibration_error(is_positive, score)
        return result
    present = np.unique(y_true)
    aucs = [binary_ranking_metrics(y_true == k, proba[:, k])["roc_auc"] for k in present]
    result["roc_auc"] = float(np.mean(aucs)) if len(present) >= 2 else math.nan
    onehot = np.eye(n_classes)[y_true]
    result["brier"] = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
    result["ece"] = expected_calibration_error(predicted == y_true, proba.max(axis=1))
    return result


def _f1_per_class(y_true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class against the rest (0 for a class neither present nor predicted)."""
    tp = np.bincount(y_true[predicted == y_true], minlength=n_classes).astype(float)
    support = np.bincount(y_true, minlength=n_classes)
    called = np.bincount(predicted, minlength=n_classes)
    denominator = support + called
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return f1


def is_return_like(y: np.ndarray) -> bool:
    """Targets that take both signs in fair shares (returns, P&L): direction is then meaningful."""
    y = np.asarray(y, dtype=float)
    return len(y) > 0 and min(np.mean(y > 0), np.mean(y < 0)) >= DIRECTION_MIN_SHARE


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, *, directional: bool | None = None
) -> dict[str, float]:
    """rmse, mae, r2, mape (over rows whose target is not ~0) and, for return-like targets,
    directional_accuracy (share of rows where the predicted sign matches the actual sign)."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    error = y_pred - y_true
    result = {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": math.nan,
        "mape": math.nan,
    }
    spread = np.sum((y_true - y_true.mean()) ** 2)
    if len(y_true) > 1 and spread > 0:
        result["r2"] = float(1 - np.sum(error**2) / spread)
    # MAPE explodes near zero targets; those rows are left out rather than dominating it.
    usable = np.abs(y_true) > 1e-8 * max(1.0, float(np.max(np.abs(y_true), initial=0.0)))
    if usable.any():
        result["mape"] = float(np.mean(np.abs(error[usable] / y_true[usable])))
    if directional if directional is not None else is_return_like(y_true):
        moved = y_true != 0
        result["directional_accuracy"] = float(
            np.mean(np.sign(y_pred[moved]) == np.sign(y_true[moved]))
        )
    return result


def selection_score(task: str, metrics: dict[str, float]) -> float:
    """One number to maximise for early stopping: ROC AUC (or -log loss) / -RMSE."""
    if task == "regression":
        return -metrics["rmse"]
    if not math.isnan(metrics.get("roc_auc", math.nan)):
        return metrics["roc_auc"]
    return -metrics["log_loss"]


def headline_metric(task: str | None) -> str:
    """The metric a run is read by first (runs list, sweep, verdicts): RMSE for regression, else
    ROC AUC."""
    return "rmse" if task == "regression" else "roc_auc"


HEADLINE_METRICS = {  # the metrics people read first, per task, in reading order
    "binary": ["roc_auc", "gini", "ks", "pr_auc", "brier", "ece", "log_loss", "accuracy", "f1"],
    "multiclass": ["roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"],
    "regression": ["rmse", "mae", "r2", "mape", "directional_accuracy"],
}
METRIC_LABELS = {
    "roc_auc": "ROC AUC",
    "gini": "Gini",
    "ks": "KS",
    "pr_auc": "PR AUC",
    "brier": "Brier score",
    "ece": "Calibration error (ECE)",
    "log_loss": "Log loss",
    "accuracy": "Accuracy",
    "f1": "F1",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
    "mape": "MAPE",
    "directional_accuracy": "Directional accuracy",
}


def metric_label(name: str) -> str:
    """The metric's name as people write it ("ROC AUC" for roc_auc)."""
    return METRIC_LABELS.get(name, name)


def format_number(value, digits: int = 4, missing: str = "–") -> str:
    """A number as shown in tables and reports: ``missing`` for None or NaN, never "-0.0000"."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            return missing
        text = f"{float(value):.{digits}f}"
        return text[1:] if text.startswith("-") and not float(text) else text
    return str(value)


def format_interval(value, interval, digits: int = 4, missing: str = "–") -> str:
    """``0.8110 [0.7290, 0.8790]``: a value with its 95% interval, when the interval is finite."""
    text = format_number(value, digits, missing)
    if (
        interval
        and text != missing
        and all(isinstance(v, numbers.Real) and math.isfinite(v) for v in interval)
    ):
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


HIGHER_IS_BETTER = {
    "accuracy": True,
    "f1": True,
    "roc_auc": True,
    "gini": True,
    "ks": True,
    "pr_auc": True,
    "directional_accuracy": True,
    "r2": True,
    "log_loss": False,
    "brier": False,
    "ece": False,
    "rmse": False,
    "mae": False,
    "mape": False,
}


# --------------------------------------------------------------------------- curves and tables


def roc_pr_curves(is_positive: np.ndarray, score: np.ndarray) -> dict:
    """ROC and precision-recall points of one class against the rest, for plotting.

    Returns ``{"roc": DataFrame(fpr, tpr), "pr": DataFrame(recall, precision)}``; empty frames
    when ``is_positive`` holds only one class (no curve is defined).
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    is_positive = np.asarray(is_positive, dtype=bool)
    if is_positive.all() or not is_positive.any():
        return {
            "roc": pd.DataFrame(columns=["fpr", "tpr"]),
            "pr": pd.DataFrame(columns=["recall", "precision"]),
        }
    fpr, tpr, _ = roc_curve(is_positive, score)
    precision, recall, _ = precision_recall_curve(is_positive, score)
    return {
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
        "pr": pd.DataFrame({"recall": recall, "precision": precision}),
    }


def reliability_table(
    is_positive: np.ndarray, score: np.ndarray, n_bins: int = ECE_BINS
) -> pd.DataFrame:
    """Reliability diagram data: per equal-width probability bin, rows, mean predicted, observed
    rate."""
    is_positive = np.asarray(is_positive, dtype=float)
    score = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    bins = np.minimum((score * n_bins).astype(int), n_bins - 1)
    rows = np.bincount(bins, minlength=n_bins)
    used = rows > 0
    predicted = np.bincount(bins, weights=score, minlength=n_bins)
    observed = np.bincount(bins, weights=is_positive, minlength=n_bins)
    return pd.DataFrame(
        {
            "bin_low": np.arange(n_bins)[used] / n_bins,
            "bin_high": (np.arange(n_bins)[used] + 1) / n_bins,
            "rows": rows[used],
            "mean_predicted": predicted[used] / rows[used],
            "observed_rate": observed[used] / rows[used],
        }
    )


def gain_lift_table(is_positive: np.ndarray, score: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Cumulative gain and lift by score decile (decile 1 = highest scores), as analysts read them.

    ``gain`` is the share of all events caught in the top deciles so far; ``lift`` the event rate of
    a decile over the overall rate; ``cumulative_lift`` that of the top deciles so far.
    """
    is_positive = np.asarray(is_positive, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="mergesort")
    groups = np.array_split(is_positive[order], n_bins)
    groups = [g for g in groups if len(g)]
    rows = np.array([len(g) for g in groups])
    events = np.array([g.sum() for g in groups])
    total_events = max(float(is_positive.sum()), 1e-12)
    overall = total_events / len(is_positive)
    cumulative_rows, cumulative_events = np.cumsum(rows), np.cumsum(events)
    return pd.DataFrame(
        {
            "decile": np.arange(1, len(groups) + 1),
            "rows": rows,
            "events": events.astype(int),
            "event_rate": events / rows,
            "gain": cumulative_events / total_events,
            "lift": (events / rows) / overall,
            "cumulative_lift": (cumulative_events / cumulative_rows) / overall,
            "population": cumulative_rows / len(is_positive),
        }
    )


def confusion_table(y_true, y_pred, labels: list[str]):
    """Counts of (actual, predicted) label pairs as a DataFrame: rows actual, columns predicted."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(list(y_true), list(y_pred), labels=list(labels))
    return pd.DataFrame(
        counts, index=pd.Index(labels, name="actual"), columns=pd.Index(labels, name="predicted")
    )
