"""How sure are we? Bootstrap intervals for any metric, and DeLong's test for two ROC AUCs.

Intervals are percentile bootstrap over the test rows (1,000 resamples by default, fixed seed so
a run's numbers are reproducible). Resamples in which a metric is undefined (one class only) are
left out of that metric's interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

N_BOOTSTRAP = 1000
LEVEL = 0.95


def resample_indices(
    n: int, n_boot: int = N_BOOTSTRAP, seed: int = 0, strata: np.ndarray | None = None
):
    """Yield ``n_boot`` bootstrap index arrays; with ``strata``, each stratum is resampled on its
    own so rare classes never vanish from a resample."""
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if strata is None
        else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    )
    for _ in range(n_boot):
        yield np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])


def _interval(samples: list[float], level: float) -> list[float] | None:
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 10:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(
    metric_fn: Callable[[np.ndarray], dict[str, float]],
    n: int,
    *,
    n_boot: int = N_BOOTSTRAP,
    level: float = LEVEL,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> dict[str, list[float] | None]:
    """``{metric: [low, high]}`` from ``metric_fn(indices)`` over bootstrap resamples of ``n``
    rows."""
    samples: dict[str, list[float]] = {}
    for index in resample_indices(n, n_boot, seed, strata):
        for name, value in metric_fn(index).items():
            samples.setdefault(name, []).append(value)
    return {name: _interval(values, level) for name, values in samples.items()}


def paired_differences(
    metrics_fn: Callable[[np.ndarray, int], dict[str, float]],
    n: int,
    n_models: int,
    *,
    n_boot: int = N_BOOTSTRAP,
    level: float = LEVEL,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> list[dict[str, dict]]:
    """Metric differences of model k minus model 0 on the same resampled rows.

    ``metrics_fn(indices, k)`` scores model ``k`` on rows ``indices``. Returns, per model k >= 1,
    ``{metric: {"difference", "interval", "p_value"}}``; the two-sided bootstrap p is twice the
    share of resampled differences on the far side of zero.
    """
    everything = np.arange(n)
    base = metrics_fn(everything, 0)
    observed = [
        {m: v - base[m] for m, v in metrics_fn(everything, k).items() if m in base}
        for k in range(1, n_models)
    ]
    samples: list[dict[str, list[float]]] = [{} for _ in range(1, n_models)]
    for index in resample_indices(n, n_boot, seed, strata):
        reference = metrics_fn(index, 0)
        for k in range(1, n_models):
            for m, v in metrics_fn(index, k).items():
                if m in reference:
                    samples[k - 1].setdefault(m, []).append(v - reference[m])
    results = []
    for differences, drawn in zip(observed, samples, strict=True):
        entry = {}
        for m, difference in differences.items():
            arr = np.asarray(drawn.get(m, []), dtype=float)
            arr = arr[np.isfinite(arr)]
            p = (
                float(min(1.0, 2 * min(np.mean(arr <= 0), np.mean(arr >= 0))))
                if len(arr)
                else math.nan
            )
            entry[m] = {
                "difference": float(difference),
                "interval": _interval(list(arr), level),
                "p_value": p,
            }
        results.append(entry)
    return results


# --------------------------------------------------------------------------- DeLong


def _structural_components(is_positive: np.ndarray, score: np.ndarray):
    """AUC and DeLong's placement values (V10 for positives, V01 for negatives), via mid-ranks."""
    from scipy.stats import rankdata

    positives, negatives = score[is_positive], score[~is_positive]
    m, n = len(positives), len(negatives)
    combined = rankdata(np.r_[positives, negatives])
    auc = (combined[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (combined[:m] - rankdata(positives)) / n  # share of negatives below each positive
    v01 = 1.0 - (combined[m:] - rankdata(negatives)) / m  # share of positives above each negative
    return auc, v10, v01


def delong_test(is_positive: Sequence[bool], scores: Sequence[Sequence[float]]) -> dict:
    """DeLong et al. (1988) test of AUC(scores[1]) − AUC(scores[0]) on the same rows.

    Uses the mid-rank formulation of Sun & Xu (2014). Returns ``{"auc": [a0, a1], "difference",
    "std_error", "z", "p_value", "interval"}``; p is 1 for identical scores and NaN when a class is
    missing.
    """
    from scipy.stats import norm

    is_positive = np.asarray(is_positive, dtype=bool)
    m, n = int(is_positive.sum()), int((~is_positive).sum())
    if m < 2 or n < 2 or len(scores) != 2:
        return {
            "auc": [math.nan, math.nan],
            "difference": math.nan,
            "std_error": math.nan,
            "z": math.nan,
            "p_value": math.nan,
            "interval": None,
        }
    parts = [_structural_components(is_positive, np.asarray(s, dtype=float)) for s in scores]
    aucs = np.array([p[0] for p in parts])
    v10 = np.stack([p[1] for p in parts])  # (2, m)
    v01 = np.stack([p[2] for p in parts])  # (2, n)
    covariance = np.cov(v10) / m + np.cov(v01) / n
    contrast = np.array([-1.0, 1.0])
    variance = float(contrast @ covariance @ contrast)
    difference = float(aucs[1] - aucs[0])
    if variance <= 1e-18:
        z, p = 0.0, 1.0 if abs(difference) < 1e-12 else 0.0
        se = 0.0
    else:
        se = math.sqrt(variance)
        z = difference / se
        p = float(2 * norm.sf(abs(z)))
    half = norm.ppf(0.5 + LEVEL / 2) * se
    return {
        "auc": [float(a) for a in aucs],
        "difference": difference,
        "std_error": se,
        "z": float(z),
        "p_value": p,
        "interval": [difference - half, difference + half],
    }
