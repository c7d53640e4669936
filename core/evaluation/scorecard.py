"""The analyst's report card for one model's outputs on labelled rows.

:func:`evaluate` gives every metric with a bootstrap 95% interval; :func:`diagnostics` the tables
behind the reliability diagram and the gain / lift chart. The fine-tuned model and every baseline
go through the same functions, so they are compared like for like.
"""

from __future__ import annotations

import numpy as np

from ..data.schema import TableSpec
from ..stats.intervals import N_BOOTSTRAP, bootstrap_intervals
from ..stats.metrics import (
    classification_metrics,
    gain_lift_table,
    regression_metrics,
    reliability_table,
)


def metrics_of(
    spec: TableSpec, y: np.ndarray, outputs: np.ndarray, *, directional: bool | None = None
) -> dict[str, float]:
    """Point metrics: ``y`` encoded labels (or values), ``outputs`` probabilities (N, C) (or
    values)."""
    if spec.task == "regression":
        return regression_metrics(y, outputs, directional=directional)
    return classification_metrics(y, outputs, spec.positive_index)


def evaluate(
    spec: TableSpec, y: np.ndarray, outputs: np.ndarray, *, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> dict:
    """``{"metrics": {name: value}, "intervals": {name: [low, high] | None}}`` on these rows.

    Classification resamples within each class (the class mix stays that of the test split).
    """
    y, outputs = np.asarray(y), np.asarray(outputs)
    metrics = metrics_of(spec, y, outputs)
    directional = "directional_accuracy" in metrics  # decided on all rows, not per resample
    strata = None if spec.task == "regression" else y
    if strata is not None and len(y) and (outputs == outputs[:1]).all():
        # One answer for every row (the majority-class baseline), resampled within each class:
        # every resample holds the same class counts, so every metric is the same. Exact, and
        # a thousand resamples fewer at the end of every run.
        same = {k: [v, v] if np.isfinite(v) else None for k, v in metrics.items()}
        return {"metrics": metrics, "intervals": same}
    intervals = (
        bootstrap_intervals(
            lambda index: metrics_of(spec, y[index], outputs[index], directional=directional),
            len(y),
            n_boot=n_boot,
            seed=seed,
            strata=strata,
        )
        if len(y) >= 10 and n_boot
        else {}
    )
    return {"metrics": metrics, "intervals": intervals}


def positive_scores(
    spec: TableSpec, y: np.ndarray, proba: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(is_positive, score) of the positive class: binary runs only."""
    k = spec.positive_index
    return np.asarray(y) == k, np.asarray(proba)[:, k]


def diagnostics(spec: TableSpec, y: np.ndarray, outputs: np.ndarray) -> dict[str, list[dict]]:
    """Reliability bins and gain / lift deciles of the positive class (binary); empty otherwise."""
    if spec.task != "binary":
        return {}
    is_positive, score = positive_scores(spec, y, outputs)
    return {
        "reliability": reliability_table(is_positive, score).to_dict("records"),
        "gain_lift": gain_lift_table(is_positive, score).to_dict("records"),
    }
