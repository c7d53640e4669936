"""Warnings before training when the table gives the answer away.

Four checks, each cheap enough to run on every table (a thousand rows in a few milliseconds):
a column that alone predicts the target (it probably records the outcome), an identifier left
as a feature, a date recorded after the prediction time, and rows repeated across the splits.
They warn rather than raise: a user may know a suspicious column is fine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from ..stats.metrics import binary_ranking_metrics
from .schema import _ID_NAME, TableSpec, parse_datetime, target_labels, to_number

logger = logging.getLogger(__name__)

PROXY_THRESHOLD = 0.98  # AUC (classification) or |Spearman| (regression) of one column alone
ID_UNIQUE_SHARE = 0.98
FUTURE_SHARE = 0.5
N_FOLDS = 5
N_BINS = 50  # numeric columns are also scored as binned categories, to catch non-monotone proxies
KINDS = ("target_proxy", "identifier", "future_date", "duplicates")


@dataclass(frozen=True)
class LeakageWarning:
    """One suspicion: its kind, the column (None for whole rows), a plain-English message, the
    evidence."""

    kind: str
    column: str | None
    message: str
    value: float


def find_leakage(
    frame: pd.DataFrame,
    spec: TableSpec,
    splits: dict[str, np.ndarray] | None = None,
    *,
    time_column: str | None = None,
    max_rows: int = 20_000,
) -> list[LeakageWarning]:
    """Target proxies, identifiers, dates after ``time_column`` and rows repeated across ``splits``.

    ``splits`` maps split names to row positions (as from ``split_rows``); with it the proxy check
    uses only the training rows and the duplicate check runs. At most ``max_rows`` rows, sampled
    with a fixed seed, are scored for proxies.
    """
    found = _target_proxies(frame, spec, splits, max_rows)
    found += _identifiers(frame, spec)
    if time_column is not None:
        found += _future_dates(frame, spec, time_column)
    if splits is not None:
        found += _duplicates(frame, spec, splits)
    logger.info(
        "Leakage check: %d warnings (%s)", len(found), ", ".join(w.kind for w in found) or "none"
    )
    return found


# --------------------------------------------------------------------------- target proxies


def _target_proxies(frame, spec, splits, max_rows) -> list[LeakageWarning]:
    rows = np.flatnonzero(frame[spec.target].notna().to_numpy())
    which = "labelled"
    if splits is not None and "train" in splits:
        rows = np.intersect1d(rows, np.asarray(splits["train"]))
        which = "training"
    where = f"the {which} rows"
    rng = np.random.default_rng(0)
    if len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
        where = f"{max_rows:,} sampled {which} rows"
    sample = frame.iloc[rows]
    prepared = _target_matrix(sample[spec.target], spec)
    if prepared is None:
        return []
    keep, targets = prepared
    sample = sample.iloc[np.flatnonzero(keep)]
    folds = rng.permutation(len(sample)) % N_FOLDS

    found = []
    for column, role in spec.roles.items():
        if role not in ("numeric", "categorical", "datetime") or column not in sample.columns:
            continue
        if role == "categorical":
            codes = pd.factorize(target_labels(sample[column]).fillna("\0missing"))[0]
            score = _power(_out_of_fold_rates(codes, targets, folds), targets, spec.task)
        else:
            x = _as_number(sample[column], role)
            present = x[np.isfinite(x)]
            if len(present) == 0 or present.min() == present.max():
                continue
            filled = np.where(np.isfinite(x), x, np.median(present))
            binned = _out_of_fold_rates(_bin_codes(x), targets, folds)
            score = max(_power(filled, targets, spec.task), _power(binned, targets, spec.task))
        if score >= PROXY_THRESHOLD:
            found.append(_proxy_warning(column, spec, score, where))
    return sorted(found, key=lambda w: -w.value)


def _target_matrix(y: pd.Series, spec: TableSpec):
    """(rows kept, targets (N, K)): one-hot classes, or the value as one column for regression."""
    if spec.task == "regression":
        values = pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
        keep = np.isfinite(values)
        if keep.sum() < N_FOLDS or np.ptp(values[keep]) == 0:
            return None
        return keep, values[keep, None]
    index = {label: i for i, label in enumerate(spec.classes)}
    codes = target_labels(y).map(index).to_numpy(dtype=float)
    keep = np.isfinite(codes)
    codes = codes[keep].astype(int)
    if keep.sum() < N_FOLDS or len(np.unique(codes)) < 2:
        return None
    return keep, np.eye(len(spec.classes))[codes]


def _as_number(series: pd.Series, role: str) -> np.ndarray:
    if role == "datetime":
        days = (parse_datetime(series) - pd.Timestamp(0)) / pd.Timedelta(days=1)
        return days.to_numpy(dtype=float, na_value=np.nan)
    return to_number(series)


def _bin_codes(x: np.ndarray) -> np.ndarray:
    """Quantile bins (or the distinct values, when few) as category codes; missing is its own
    bin."""
    present = np.isfinite(x)
    distinct = np.unique(x[present])
    if len(distinct) > N_BINS:
        distinct = np.unique(np.quantile(x[present], np.linspace(0, 1, N_BINS + 1)[1:-1]))
    codes = np.full(len(x), len(distinct) + 1)
    codes[present] = np.searchsorted(distinct, x[present], side="left")
    return codes


def _out_of_fold_rates(codes: np.ndarray, targets: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each row's category mean of the targets, from the other folds only.

    Out of fold, a category seen once (an id, a free-text value) gets the prior instead of its own
    label, so high cardinality cannot fake predictive power.
    """
    n_codes = int(codes.max()) + 1
    rates = np.empty_like(targets, dtype=float)
    for fold in range(N_FOLDS):
        held, fit = folds == fold, folds != fold
        counts = np.bincount(codes[fit], minlength=n_codes)
        prior = targets[fit].mean(axis=0)
        for k in range(targets.shape[1]):
            sums = np.bincount(codes[fit], weights=targets[fit, k], minlength=n_codes)
            rate = np.where(counts > 0, sums / np.maximum(counts, 1), prior[k])
            rates[held, k] = rate[codes[held]]
    return rates


def _power(score: np.ndarray, targets: np.ndarray, task: str) -> float:
    """One column's predictive power: max(AUC, 1 - AUC) (macro over classes) or |Spearman|.

    ``score`` is one value per row, or one per row and target column (the out-of-fold rates).
    """

    def column(k):
        return score if score.ndim == 1 else score[:, k]

    if task == "regression":
        rho = np.corrcoef(pd.Series(column(0)).rank(), pd.Series(targets[:, 0]).rank())[0, 1]
        return 0.0 if np.isnan(rho) else float(abs(rho))
    if task == "binary":
        classes = [1]
    else:  # a class absent from the sample (or the only one present) has no AUC
        classes = [k for k in range(targets.shape[1]) if 0 < targets[:, k].sum() < len(targets)]
    aucs = []
    for k in classes:
        auc = binary_ranking_metrics(targets[:, k].astype(bool), column(k))["roc_auc"]
        aucs.append(max(auc, 1 - auc))
    return float(np.mean(aucs)) if aucs else 0.0


def _proxy_warning(column: str, spec: TableSpec, score: float, where: str) -> LeakageWarning:
    if spec.task == "regression":
        evidence = f"alone tracks {spec.target!r} with rank correlation {score:.2f}"
    else:
        evidence = f"alone predicts {spec.target!r} with AUC {score:.2f}"
    return LeakageWarning(
        kind="target_proxy",
        column=column,
        message=(
            f"Column {column!r} {evidence} on {where}: it probably records the outcome. "
            "Drop it (role ignore) unless it is known at prediction time."
        ),
        value=score,
    )


# --------------------------------------------------------------------------- identifiers


def _identifiers(frame: pd.DataFrame, spec: TableSpec) -> list[LeakageWarning]:
    found = []
    for column in spec.feature_columns:
        if column not in frame.columns or len(frame) == 0:
            continue
        values = frame[column]
        unique_share = values.nunique() / len(frame)
        if unique_share >= ID_UNIQUE_SHARE and _ID_NAME.search(str(column)):
            evidence = f"unique in {unique_share:.0%} of rows and named like an id"
        elif spec.roles[column] in ("numeric", "categorical") and _is_row_counter(values):
            evidence = "a whole number that rises with every row"
        else:
            continue
        found.append(
            LeakageWarning(
                kind="identifier",
                column=column,
                message=(
                    f"Column {column!r} looks like an identifier ({evidence}): a model can "
                    "memorise it, but it says nothing about new rows. Give it role id (keep it "
                    "only if it is a real quantity, such as a year)."
                ),
                value=float(unique_share),
            )
        )
    return found


def _is_row_counter(values: pd.Series) -> bool:
    x = to_number(values)
    if len(x) < 3 or not np.isfinite(x).all() or np.any(np.mod(x, 1) != 0):
        return False
    return bool(np.all(np.diff(x) > 0))


# --------------------------------------------------------------------------- future dates


def _future_dates(frame: pd.DataFrame, spec: TableSpec, time_column: str) -> list[LeakageWarning]:
    if time_column not in frame.columns:
        raise DataError(
            f"Time column {time_column!r} is not in the table: name the prediction-time date "
            "column."
        )
    base = parse_datetime(frame[time_column])
    if base.notna().mean() < 0.5:
        raise DataError(
            f"Column {time_column!r} does not hold dates: name the prediction-time date column."
        )
    found = []
    for column in spec.columns("datetime"):
        if column == time_column or column not in frame.columns:
            continue
        other = parse_datetime(frame[column])
        both = (base.notna() & other.notna()).to_numpy()
        if not both.any():
            continue
        later = float((other[both] > base[both]).mean())
        if later > FUTURE_SHARE:
            found.append(
                LeakageWarning(
                    kind="future_date",
                    column=column,
                    message=(
                        f"Column {column!r} is later than {time_column!r} in {later:.0%} of rows: "
                        "it is recorded after the prediction time, so it is not known when "
                        "predicting. Drop it (role ignore), or use a date known at prediction "
                        "time."
                    ),
                    value=later,
                )
            )
    return found


# --------------------------------------------------------------------------- duplicates


def _duplicates(
    frame: pd.DataFrame, spec: TableSpec, splits: dict[str, np.ndarray]
) -> list[LeakageWarning]:
    columns = [c for c in spec.feature_columns if c in frame.columns]
    held_out = [name for name in splits if name != "train"]
    if not columns or "train" not in splits or not held_out:
        return []
    hashes = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    rows = np.concatenate([np.asarray(splits[name]) for name in held_out])
    if len(rows) == 0:
        return []
    count = int(np.isin(hashes[rows], hashes[np.asarray(splits["train"])]).sum())
    if count == 0:
        return []
    share = count / len(rows)
    return [
        LeakageWarning(
            kind="duplicates",
            column=None,
            message=(
                f"{count} of {len(rows)} {' and '.join(held_out)} rows ({share:.1%}) repeat a "
                "training row in every input column: their scores reward memory, not "
                "generalisation. Remove duplicate rows before splitting, or split by time or by "
                "group."
            ),
            value=share,
        )
    ]
