"""Evaluation metrics written to ``metrics.json``."""

from __future__ import annotations

import math

import numpy as np


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """roc_auc, accuracy, f1, log_loss (macro averages for multiclass); NaN where undefined."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    n_classes = proba.shape[1]
    labels = list(range(n_classes))
    predicted = proba.argmax(axis=1)
    clipped = np.clip(proba, 1e-7, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    result = {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "f1": float(
            f1_score(y_true, predicted, average="binary" if n_classes == 2 else "macro", labels=labels if n_classes > 2 else None, zero_division=0)
        ),
        "log_loss": float(log_loss(y_true, clipped, labels=labels)),
        "roc_auc": math.nan,
    }
    present = np.unique(y_true)
    if len(present) >= 2:
        if n_classes == 2:
            result["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            # Macro one-vs-rest over the classes present in this split.
            aucs = [roc_auc_score(y_true == k, proba[:, k]) for k in present]
            result["roc_auc"] = float(np.mean(aucs))
    return result


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """rmse, mae, r2."""
    from sklearn.metrics import mean_absolute_error, r2_score

    return {
        "rmse": float(np.sqrt(np.mean((y_true - y_pred) ** 2))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else math.nan,
    }


def selection_score(task: str, metrics: dict[str, float]) -> float:
    """One number to maximise for early stopping: ROC AUC (or -log loss) / -RMSE."""
    if task == "regression":
        return -metrics["rmse"]
    if not math.isnan(metrics.get("roc_auc", math.nan)):
        return metrics["roc_auc"]
    return -metrics["log_loss"]


def selection_metric_name(task: str) -> str:
    return "rmse" if task == "regression" else "roc_auc"


def roc_pr_curves(is_positive: np.ndarray, score: np.ndarray) -> dict:
    """ROC and precision-recall points of one class against the rest, for plotting.

    Returns ``{"roc": DataFrame(fpr, tpr), "pr": DataFrame(recall, precision)}``; empty frames
    when ``is_positive`` holds only one class (no curve is defined).
    """
    import pandas as pd
    from sklearn.metrics import precision_recall_curve, roc_curve

    is_positive = np.asarray(is_positive, dtype=bool)
    if is_positive.all() or not is_positive.any():
        return {"roc": pd.DataFrame(columns=["fpr", "tpr"]), "pr": pd.DataFrame(columns=["recall", "precision"])}
    fpr, tpr, _ = roc_curve(is_positive, score)
    precision, recall, _ = precision_recall_curve(is_positive, score)
    return {"roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}), "pr": pd.DataFrame({"recall": recall, "precision": precision})}


def confusion_table(y_true, y_pred, labels: list[str]):
    """Counts of (actual, predicted) label pairs as a DataFrame: rows actual, columns predicted."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(list(y_true), list(y_pred), labels=list(labels))
    return pd.DataFrame(counts, index=pd.Index(labels, name="actual"), columns=pd.Index(labels, name="predicted"))
