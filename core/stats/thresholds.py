"""Turn a probability into a decision: the cut-off that minimises cost or meets an approval rate.

A row is *flagged* (predicted the positive class: default, fraud) when its positive-class
probability is at or above the threshold; *approved* rows are the ones not flagged. Thresholds are
chosen on the validation split and judged on the test split, so the reported cost is honest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError

METHODS = ("cost", "approval_rate", "manual")


@dataclass(frozen=True)
class Decision:
    """How a binary run turns probabilities into labels; saved as ``decision.json`` in the run."""

    positive_class: str
    threshold: float
    method: str = "cost"  # cost | approval_rate | manual
    cost_fp: float = 1.0  # cost of flagging a row that is not positive
    cost_fn: float = 1.0  # cost of missing a positive row
    approval_rate: float | None = None  # the target share of rows approved (method approval_rate)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(
                f"Decision method {self.method!r} is unknown: use {', '.join(METHODS)}."
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(
                f"Threshold {self.threshold} is not a probability: choose between 0 and 1."
            )
        if self.cost_fp < 0 or self.cost_fn < 0 or self.cost_fp + self.cost_fn == 0:
            raise ConfigError(
                f"Costs FP={self.cost_fp}, FN={self.cost_fn}: use non-negative costs, at least one "
                "above 0."
            )
        if self.approval_rate is not None and not 0.0 <= self.approval_rate <= 1.0:
            raise ConfigError(
                f"Approval rate {self.approval_rate} must be a share between 0 and 1."
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Decision:
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(
                f"The saved decision is malformed ({exc}): choose the threshold again."
            ) from exc


def _candidates(score: np.ndarray) -> np.ndarray:
    """Every threshold that changes a decision: midpoints between distinct scores, plus both
    ends."""
    distinct = np.unique(score)
    return np.r_[0.0, (distinct[:-1] + distinct[1:]) / 2, np.nextafter(1.0, 2.0)].clip(0.0, 1.0)


def cost_curve(
    is_positive: np.ndarray, score: np.ndarray, cost_fp: float = 1.0, cost_fn: float = 1.0
) -> pd.DataFrame:
    """Per candidate threshold: tp, fp, fn, tn, approval_rate and expected cost per row."""
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    thresholds = _candidates(score)
    order = np.sort(score)
    positives_sorted = np.sort(score[is_positive])
    flagged = len(score) - np.searchsorted(order, thresholds, side="left")
    tp = len(positives_sorted) - np.searchsorted(positives_sorted, thresholds, side="left")
    fp = flagged - tp
    fn = is_positive.sum() - tp
    tn = len(score) - flagged - fn
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "approval_rate": 1 - flagged / len(score),
            "cost_per_row": (cost_fp * fp + cost_fn * fn) / len(score),
        }
    )


def best_cost_threshold(
    is_positive: np.ndarray, score: np.ndarray, cost_fp: float = 1.0, cost_fn: float = 1.0
) -> float:
    """The threshold with the lowest expected cost; among ties, the middle one (the most robust)."""
    curve = cost_curve(is_positive, score, cost_fp, cost_fn)
    best = np.flatnonzero(np.isclose(curve["cost_per_row"], curve["cost_per_row"].min()))
    return float(curve["threshold"].iloc[best[len(best) // 2]])


def approval_rate_threshold(score: np.ndarray, approval_rate: float) -> float:
    """The threshold that approves (does not flag) ``approval_rate`` of rows: the lowest scores."""
    if not 0.0 <= approval_rate <= 1.0:
        raise ConfigError(f"Approval rate {approval_rate} must be a share between 0 and 1.")
    ordered = np.sort(np.asarray(score, dtype=float))
    k = int(round(approval_rate * len(ordered)))
    if k <= 0:
        return 0.0
    if k >= len(ordered):
        return 1.0
    return float((ordered[k - 1] + ordered[k]) / 2)


def choose_threshold(
    is_positive: np.ndarray,
    score: np.ndarray,
    positive_class: str,
    *,
    cost_fp: float = 1.0,
    cost_fn: float = 1.0,
    approval_rate: float | None = None,
    threshold: float | None = None,
) -> Decision:
    """A Decision: a given ``threshold`` wins, then a target ``approval_rate``, else least cost."""
    if threshold is not None:
        return Decision(positive_class, float(threshold), "manual", cost_fp, cost_fn)
    if approval_rate is not None:
        return Decision(
            positive_class,
            approval_rate_threshold(score, approval_rate),
            "approval_rate",
            cost_fp,
            cost_fn,
            approval_rate,
        )
    return Decision(
        positive_class,
        best_cost_threshold(is_positive, score, cost_fp, cost_fn),
        "cost",
        cost_fp,
        cost_fn,
    )


def table_scores(
    table: pd.DataFrame, target: str, positive_class: str
) -> tuple[np.ndarray, np.ndarray]:
    """(is_positive, P(positive)) from a prediction table (``predictions.csv`` and the like)."""
    return table[target].astype(str).to_numpy() == positive_class, table[
        f"prob_{positive_class}"
    ].to_numpy()


def outcome_at(is_positive: np.ndarray, score: np.ndarray, decision: Decision) -> dict[str, float]:
    """Counts, rates and expected cost of ``decision`` on labelled rows."""
    is_positive = np.asarray(is_positive, dtype=bool)
    flagged = np.asarray(score, dtype=float) >= decision.threshold
    tp = int(np.sum(flagged & is_positive))
    fp = int(np.sum(flagged & ~is_positive))
    fn = int(np.sum(~flagged & is_positive))
    tn = int(np.sum(~flagged & ~is_positive))
    n = max(len(flagged), 1)
    return {
        "threshold": decision.threshold,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "accuracy": (tp + tn) / n,
        "approval_rate": 1 - flagged.mean() if len(flagged) else float("nan"),
        "cost_per_row": (decision.cost_fp * fp + decision.cost_fn * fn) / n,
        "total_cost": decision.cost_fp * fp + decision.cost_fn * fn,
    }


def apply_decision(
    probabilities: np.ndarray, classes: list[str] | tuple[str, ...], decision: Decision
) -> np.ndarray:
    """Binary labels from class probabilities (N, 2) under ``decision``."""
    classes = [str(c) for c in classes]
    if decision.positive_class not in classes or len(classes) != 2:
        raise ConfigError(
            f"The decision is for class {decision.positive_class!r}, but this model's classes are "
            f"{classes}: choose the threshold again for this run."
        )
    k = classes.index(decision.positive_class)
    other = classes[1 - k]
    return np.where(
        probabilities[:, k] >= decision.threshold, decision.positive_class, other
    ).astype(object)
