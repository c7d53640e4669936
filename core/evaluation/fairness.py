"""Fairness by group: how a binary run's decision treats each group of a column, with intervals.

Groups come from any column: numbers are banded (quantiles of the whole table, so bands hold
about as many rows each), other values are taken as they are, and groups with too few rows are
pooled into "other" (and a note says which). Per group: rows, positives, ROC AUC, the approval
rate at the run's threshold (approved = not flagged), the true and false positive rates of the
flag, and calibration (mean predicted P(positive) against the observed share), each with a
bootstrap interval (resampled within each group, so group sizes stay as they are).

Between groups: each group's approval rate as a ratio to the most-approved group's (the
four-fifths rule flags a ratio under 0.8), and per column the gaps of demographic parity, equal
opportunity and equalized odds, with intervals and a p value from shuffled group labels, so a
small group is not called unfair on noise. Point estimates come from fairlearn's MetricFrame;
the resamples are drawn here, vectorised (a thousand MetricFrames would take seconds).

Equal opportunity is read on the favourable outcome: among rows that are not the positive class
(the loans repaid), the largest gap in approval rates, which is the gap in false positive rates
of the flag. Equalized odds is the larger of that and the gap in true positive rates.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.schema import infer_roles, to_number
from ..errors import DataError
from ..stats.intervals import LEVEL, N_BOOTSTRAP

logger = logging.getLogger(__name__)

FOUR_FIFTHS = 0.8  # the four-fifths rule: an approval-rate ratio under this is adverse impact
DEFAULT_BANDS = 4  # numbers are cut in this many quantile bands
MIN_GROUP_ROWS = 20  # groups with fewer evaluated rows are pooled into "other"
MAX_LEVELS = 10  # numbers with at most this many distinct values are groups as they are
MISSING = "missing"
OTHER = "other"
FAIRNESS_METRICS = {  # what is measured per group, and its name for people
    "roc_auc": "ROC AUC",
    "approval_rate": "approval rate",
    "tpr": "true positive rate",
    "fpr": "false positive rate",
    "mean_predicted": "mean predicted",
    "observed_rate": "observed rate",
}
METRICS = tuple(FAIRNESS_METRICS)
GAPS = ("demographic_parity", "equal_opportunity", "equalized_odds")
GAP_NAMES = {
    "demographic_parity": "approval-rate gap (demographic parity)",
    "equal_opportunity": "equal-opportunity gap (approval among non-positives)",
    "equalized_odds": "equalized-odds gap (max of TPR and FPR gaps)",
}
_CHUNK = 2_000_000  # resampled counts held at once (rows x resamples), to bound memory

# Names that suggest a legally protected attribute (or a close proxy), matched on the words of a
# column name: "age_years" and "applicantAge" match, "mortgage" and "agent" do not.
_PROTECTED_WORDS = {"age", "ages", "aged", "race", "races", "racial", "dob"}
_PROTECTED_STEMS = (
    "sex",
    "gender",
    "ethnic",
    "religio",
    "marital",
    "foreign",
    "nationalit",
    "citizen",
    "disab",
    "pregnan",
    "colour",
    "color",
    "birth",
)


def likely_protected(columns: Iterable) -> list[str]:
    """The columns whose names suggest a protected attribute (sex, age, race, nationality, ...).

    A name is split into words ("personal_status_sex", "applicantAge"); a word that is one of
    age/race or starts with a stem such as sex, gender, ethnic, religio, marital, foreign,
    nationalit, citizen, disab, pregnan, colo(u)r, birth marks the column, and so does
    "personal status". The rule has one home: the Data page, the Results page, the report and the
    CLI all ask here.
    """
    found = []
    for column in columns:
        name = re.sub(r"([a-z])([A-Z])", r"\1_\2", str(column)).lower()
        words = [w for w in re.split(r"[^a-z]+", name) if w]
        if any(
            w in _PROTECTED_WORDS or w.startswith(_PROTECTED_STEMS) for w in words
        ) or "personal_status" in "_".join(words):
            found.append(str(column))
    return found


# --------------------------------------------------------------------------- groups


def group_labels(
    values: pd.Series,
    *,
    bands: int = DEFAULT_BANDS,
    reference: pd.Series | None = None,
) -> tuple[pd.Series, str | None]:
    """Each row's group in ``values``, and a note on how numbers were banded (None otherwise).

    Numbers with more than MAX_LEVELS distinct values are cut in ``bands`` quantile bands of
    ``reference`` (the whole table; default ``values``), labelled by the smallest and largest
    value in each ("19–26"); other values are their text. Missing values are the group "missing".
    Free text, dates and identifiers raise DataError: they do not make groups.
    """
    name = str(values.name)
    reference = values if reference is None else reference
    if not isinstance(bands, int) or isinstance(bands, bool) or not 2 <= bands <= 20:
        raise DataError(f"bands={bands!r}: cut numbers in 2 to 20 bands, e.g. 4.")
    role = infer_roles(reference.to_frame(name))[name]
    if role in ("text", "datetime", "id"):
        kind = {"text": "free text", "datetime": "dates", "id": "row identifiers"}[role]
        raise DataError(
            f"Column {name!r} holds {kind}, which do not make groups: choose a column of "
            "categories or numbers (for dates, derive a year or age column first)."
        )
    if role != "numeric":
        return values.astype(str).where(values.notna(), MISSING), None
    numbers = to_number(reference)
    finite = numbers[np.isfinite(numbers)]
    x = to_number(values)
    if len(np.unique(finite)) <= MAX_LEVELS:  # a few distinct numbers: groups as they are
        return pd.Series([_number(v) if np.isfinite(v) else MISSING for v in x], values.index), None
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bands + 1)))
    inner = edges[1:-1]
    band_of_reference = np.searchsorted(inner, finite, side="left")  # bands are (a, b]
    names = {
        b: f"{_number(finite[band_of_reference == b].min())}–"
        f"{_number(finite[band_of_reference == b].max())}"
        for b in np.unique(band_of_reference)
    }
    band = np.searchsorted(inner, np.nan_to_num(x), side="left")
    found = [
        names.get(b, MISSING) if np.isfinite(v) else MISSING for b, v in zip(band, x, strict=True)
    ]
    labels = pd.Series(found, index=values.index)
    order = [names[b] for b in sorted(names)]
    labels = pd.Series(pd.Categorical(labels, categories=[*order, MISSING]), index=values.index)
    among = "these rows" if reference is values else "the whole table"
    note = (
        f"{name} is cut in {len(order)} bands of about equal size (quantiles of {among}): "
        f"{', '.join(order)}."
    )
    return labels, note


def _number(value: float) -> str:
    value = float(value)
    if value.is_integer():
        return f"{value:,.0f}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def pool_rare(labels: pd.Series, min_rows: int = MIN_GROUP_ROWS) -> tuple[pd.Series, str | None]:
    """``labels`` with groups of fewer than ``min_rows`` rows pooled into "other", and a note
    naming them (None when nothing was pooled). A lone small group keeps its name."""
    counts = pd.Series(np.asarray(labels, dtype=object)).value_counts()
    rare = [str(g) for g, n in counts.items() if n < min_rows]
    if len(rare) < 2:
        return labels, None
    text = labels.astype(str)
    pooled = text.where(~text.isin(rare), OTHER)
    if isinstance(labels.dtype, pd.CategoricalDtype):  # bands keep their order
        kept = [str(c) for c in labels.cat.categories if str(c) not in rare]
        pooled = pd.Series(pd.Categorical(pooled, categories=[*kept, OTHER]), index=labels.index)
    shown = ", ".join(repr(g) for g in rare[:8]) + (", ..." if len(rare) > 8 else "")
    note = (
        f"{labels.name}: {len(rare)} groups with fewer than {min_rows} rows each are pooled as "
        f"{OTHER!r} ({shown})."
    )
    return pooled, note


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Fairness:
    """How a binary decision treats groups: per-group outcomes, ratios and gaps with intervals.

    ``groups``: one row per (column, group): rows, positives, then each of METRICS with
    ``<metric>_low`` / ``<metric>_high`` (95% bootstrap). ``disparities``: one row per (column,
    group): the most-approved group (``reference``), ``approval_ratio`` with its interval, and
    ``finding`` (see :func:`ratio_finding`). ``gaps``: one row per (column, measure of GAPS):
    ``value``, ``low``, ``high``, ``p_value`` (shuffled group labels). ``notes``: banding,
    pooling and groups too small to read.
    """

    positive_class: str
    threshold: float
    rows: int
    groups: pd.DataFrame
    disparities: pd.DataFrame
    gaps: pd.DataFrame
    notes: tuple[str, ...] = ()
    columns: tuple[str, ...] = field(default=())
    rows_used: str = "test"  # which of the run's rows: "test" or "held_out" (test + validation)

    def flagged(self) -> pd.DataFrame:
        """The disparities whose approval ratio is below 0.8 (clearly or not)."""
        return self.disparities[self.disparities["approval_ratio"] < FOUR_FIFTHS]


def ratio_finding(ratio: float, interval: list[float] | None) -> str:
    """What an approval-rate ratio says under the four-fifths rule, worded for a reviewer.

    "clearly below 0.8 (four-fifths rule)" when the whole interval is; "below 0.8 (four-fifths
    rule), but the interval reaches 0.8: it may be noise" when only the estimate is; "" else.
    """
    if ratio is None or not math.isfinite(ratio) or ratio >= FOUR_FIFTHS:
        return ""
    if interval is not None and math.isfinite(interval[1]) and interval[1] < FOUR_FIFTHS:
        return "clearly below 0.8 (four-fifths rule)"
    return "below 0.8 (four-fifths rule), but the interval reaches 0.8: it may be noise"


def group_fairness(
    groups: pd.DataFrame,
    is_positive,
    score,
    threshold: float,
    *,
    positive_class: str = "positive",
    reference: pd.DataFrame | None = None,
    bands: int = DEFAULT_BANDS,
    min_rows: int = MIN_GROUP_ROWS,
    n_boot: int = N_BOOTSTRAP,
    level: float = LEVEL,
    seed: int = 0,
) -> Fairness:
    """Outcomes of the decision ``score >= threshold`` (flag) per group of each column of
    ``groups``, and the disparities between groups.

    ``groups`` holds the group columns of the scored rows, aligned with ``is_positive`` (the
    true labels as booleans) and ``score`` (P(positive)); ``reference`` the same columns over all
    rows, for the bands' edges. Each column is read on its own.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    if len(is_positive) != len(groups) or len(score) != len(groups):
        raise DataError(
            f"{len(groups)} rows of groups but {len(is_positive)} labels and {len(score)} scores: "
            "give one label and one score per row."
        )
    flagged = score >= threshold
    rng = np.random.default_rng(seed)
    tables, ratios, gaps, notes = [], [], [], []
    for column in groups.columns:
        values = groups[column].reset_index(drop=True)
        ref = None if reference is None else reference[column]
        labels, band_note = group_labels(values, bands=bands, reference=ref)
        labels, pool_note = pool_rare(labels.rename(column), min_rows)
        notes += [n for n in (band_note, pool_note) if n]
        order = _order(labels)
        if len(order) < 2:
            notes.append(
                f"{column}: only one group ({order[0]!r}) among these rows: nothing to compare."
            )
            continue
        table, samples = _by_group(labels, order, is_positive, flagged, score, rng, n_boot, level)
        table.insert(0, "column", str(column))
        tables.append(table)
        ratios.append(_ratios(table, samples, level))
        shuffled = _shuffled_gaps(labels, order, is_positive, flagged, rng, n_boot)
        gaps.append(_gaps(table, samples, shuffled, level))
        small = [g for g, n in zip(table["group"], table["rows"], strict=True) if n < min_rows]
        if small:
            notes.append(
                f"{column}: group {small[0]!r} has fewer than {min_rows} rows: its intervals "
                "are wide; read them before its point estimates."
            )
    return Fairness(
        positive_class=str(positive_class),
        threshold=float(threshold),
        rows=len(groups),
        groups=pd.concat(tables, ignore_index=True) if tables else _empty_groups(),
        disparities=pd.concat(ratios, ignore_index=True) if ratios else _empty_ratios(),
        gaps=pd.concat(gaps, ignore_index=True) if gaps else _empty_gaps(),
        notes=tuple(notes),
        columns=tuple(map(str, groups.columns)),
    )


def _order(labels: pd.Series) -> list[str]:
    """Groups in reading order: bands or sorted values, then "other" and "missing"."""
    present = set(labels.astype(str))
    if isinstance(labels.dtype, pd.CategoricalDtype):
        ordered = [str(c) for c in labels.cat.categories if str(c) in present]
    else:
        ordered = sorted(present, key=_natural)
    last = [g for g in (OTHER, MISSING) if g in ordered]
    return [g for g in ordered if g not in last] + last


def _natural(label: str):
    try:
        return (0, float(label.replace(",", "")), "")
    except ValueError:
        return (1, 0.0, label)


def _by_group(
    labels, order, is_positive, flagged, score, rng, n_boot, level
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per group: fairlearn's MetricFrame for the estimates, bootstrap within the group for the
    intervals; and the resampled values, (n_boot, groups) per metric, for the disparities."""
    from fairlearn.metrics import MetricFrame, count

    codes = pd.Categorical(labels.astype(str), categories=order)
    frame = MetricFrame(
        metrics={
            "rows": count,
            "positives": _positives,
            "roc_auc": _roc_auc,
            "approval_rate": _approval_rate,
            "tpr": _true_positive_rate,
            "fpr": _false_positive_rate,
            "mean_predicted": _mean_score,
            "observed_rate": _positives_share,
        },
        y_true=is_positive.astype(int),
        y_pred=flagged.astype(int),
        sensitive_features=pd.Series(codes, name="group"),
        sample_params={"roc_auc": {"score": score}, "mean_predicted": {"score": score}},
    )
    table = frame.by_group.reindex(order).reset_index()
    table["rows"] = table["rows"].astype(int)
    table["positives"] = table["positives"].astype(int)
    table["group"] = table["group"].astype(str)
    samples = {m: np.empty((n_boot, len(order))) for m in METRICS}
    for k, group in enumerate(order):
        rows = np.flatnonzero(codes == group)
        drawn = _resample_group(is_positive[rows], flagged[rows], score[rows], rng, n_boot)
        for m in METRICS:
            samples[m][:, k] = drawn[m]
    out = table[["group", "rows", "positives"]].copy()
    for m in METRICS:
        bounds = [_interval(samples[m][:, k], level) for k in range(len(order))]
        out[m] = table[m].astype(float)
        out[f"{m}_low"] = [b[0] for b in bounds]
        out[f"{m}_high"] = [b[1] for b in bounds]
    return out, samples


# fairlearn metric functions take (y_true, y_pred, **sample_params); a rate with no rows to
# divide by is NaN here, where sklearn would say 0 with a warning.
def _positives(y_true, y_pred) -> float:
    return float(np.sum(y_true))


def _positives_share(y_true, y_pred) -> float:
    return float(np.mean(y_true)) if len(y_true) else math.nan


def _approval_rate(y_true, y_pred) -> float:
    from fairlearn.metrics import selection_rate

    return 1.0 - selection_rate(y_true, y_pred) if len(y_pred) else math.nan


def _true_positive_rate(y_true, y_pred) -> float:
    from fairlearn.metrics import true_positive_rate

    return true_positive_rate(y_true, y_pred) if np.any(y_true == 1) else math.nan


def _false_positive_rate(y_true, y_pred) -> float:
    from fairlearn.metrics import false_positive_rate

    return false_positive_rate(y_true, y_pred) if np.any(y_true == 0) else math.nan


def _mean_score(y_true, y_pred, score) -> float:
    return float(np.mean(score)) if len(score) else math.nan


def _roc_auc(y_true, y_pred, score) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y_true)) < 2:
        return math.nan
    return float(roc_auc_score(y_true, score))


def _resample_group(is_positive, flagged, score, rng, n_boot) -> dict[str, np.ndarray]:
    """Each metric on ``n_boot`` bootstrap resamples of one group's rows, as (n_boot,) arrays.

    A resample is a multinomial count per row, so every metric is a weighted sum; ROC AUC is
    read from the counts of positives and negatives in each distinct score, sorted.
    """
    n = len(score)
    order = np.argsort(score, kind="stable")
    is_positive, flagged, score = is_positive[order], flagged[order], score[order]
    starts = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])  # one bin per distinct score
    out = {m: [] for m in METRICS}
    per_chunk = max(1, _CHUNK // max(n, 1))
    for first in range(0, n_boot, per_chunk):
        counts = rng.multinomial(n, np.full(n, 1 / n), size=min(per_chunk, n_boot - first))
        pos = counts @ is_positive
        neg = n - pos
        with np.errstate(invalid="ignore", divide="ignore"):
            out["approval_rate"].append(1 - counts @ flagged / n)
            out["tpr"].append((counts @ (flagged & is_positive)) / pos)
            out["fpr"].append((counts @ (flagged & ~is_positive)) / neg)
            out["mean_predicted"].append(counts @ score / n)
            out["observed_rate"].append(pos / n)
            pos_bins = np.add.reduceat(counts * is_positive, starts, axis=1)  # (B, k)
            neg_bins = np.add.reduceat(counts * ~is_positive, starts, axis=1)
            below = np.cumsum(neg_bins, axis=1) - neg_bins
            out["roc_auc"].append((pos_bins * (below + 0.5 * neg_bins)).sum(axis=1) / (pos * neg))
    return {m: np.concatenate(v).astype(float) for m, v in out.items()}


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) < 10:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _ratios(table: pd.DataFrame, samples: dict, level: float) -> pd.DataFrame:
    """Each group's approval rate over the most-approved group's, resampled group by group."""
    column = str(table["column"].iloc[0])
    drawn_rates = samples["approval_rate"]
    rates = table["approval_rate"].to_numpy(dtype=float)
    best = int(np.nanargmax(rates))
    rows = []
    for k, group in enumerate(table["group"]):
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = rates[k] / rates[best] if rates[best] > 0 else math.nan
            drawn = drawn_rates[:, k] / drawn_rates[:, best]
        interval = (1.0, 1.0) if k == best else _interval(drawn, level)
        rows.append(
            {
                "column": column,
                "group": group,
                "reference": table["group"].iloc[best],
                "approval_rate": rates[k],
                "approval_ratio": float(ratio),
                "approval_ratio_low": interval[0],
                "approval_ratio_high": interval[1],
                "finding": ratio_finding(ratio, list(interval)),
            }
        )
    return pd.DataFrame(rows)


def _gaps(table: pd.DataFrame, samples: dict, shuffled: dict, level: float) -> pd.DataFrame:
    """The three gaps of one column: estimate (from fairlearn's by-group rates), bootstrap
    interval, and a p value from shuffling the group labels (how often chance alone is as
    large)."""
    column = str(table["column"].iloc[0])
    observed = _gap_values(
        table["approval_rate"].to_numpy(float)[None, :],
        table["tpr"].to_numpy(float)[None, :],
        table["fpr"].to_numpy(float)[None, :],
    )
    resampled = _gap_values(samples["approval_rate"], samples["tpr"], samples["fpr"])
    rows = []
    for name in GAPS:
        value = float(observed[name][0])
        low, high = _interval(resampled[name], level)
        chance = shuffled[name][np.isfinite(shuffled[name])]
        p = (1 + np.sum(chance >= value - 1e-12)) / (1 + len(chance)) if len(chance) else math.nan
        rows.append(
            {
                "column": column,
                "measure": name,
                "value": value,
                "low": low,
                "high": high,
                "p_value": float(p) if math.isfinite(value) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _gap_values(approval, tpr, fpr) -> dict[str, np.ndarray]:
    """Largest minus smallest rate across groups (axis 1), NaN groups left out."""

    def spread(rates):
        with warnings.catch_warnings():  # a resample with no defined rate: "All-NaN slice"
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmax(rates, axis=1) - np.nanmin(rates, axis=1)

    eo = spread(fpr)  # approval among non-positives is 1 - FPR: the same gap
    return {
        "demographic_parity": spread(approval),
        "equal_opportunity": eo,
        "equalized_odds": np.fmax(spread(tpr), eo),
    }


def _shuffled_gaps(labels, order, is_positive, flagged, rng, n_perm) -> dict[str, np.ndarray]:
    """The gaps after shuffling which row belongs to which group, ``n_perm`` times."""
    codes = pd.Categorical(labels.astype(str), categories=order).codes
    n, k = len(codes), len(order)
    sizes = np.bincount(codes, minlength=k).astype(float)
    found = {name: [] for name in GAPS}
    per_chunk = max(1, _CHUNK // max(n, 1))
    for first in range(0, n_perm, per_chunk):
        m = min(per_chunk, n_perm - first)
        shuffled = rng.permuted(np.tile(codes, (m, 1)), axis=1)
        flat = (shuffled + k * np.arange(m)[:, None]).ravel()

        def per_group(weights, flat=flat, m=m):
            return np.bincount(flat, weights=np.tile(weights, m), minlength=m * k).reshape(m, k)

        pos = per_group(is_positive.astype(float))
        with np.errstate(invalid="ignore", divide="ignore"):
            approval = 1 - per_group(flagged.astype(float)) / sizes
            tpr = per_group((flagged & is_positive).astype(float)) / pos
            fpr = per_group((flagged & ~is_positive).astype(float)) / (sizes - pos)
        for name, values in _gap_values(approval, tpr, fpr).items():
            found[name].append(values)
    return {name: np.concatenate(v) for name, v in found.items()}


def _empty_groups() -> pd.DataFrame:
    names = [c for m in METRICS for c in (m, f"{m}_low", f"{m}_high")]
    return pd.DataFrame(columns=["column", "group", "rows", "positives", *names])


def _empty_ratios() -> pd.DataFrame:
    return pd.DataFrame(
        columns=[
            "column",
            "group",
            "reference",
            "approval_rate",
            "approval_ratio",
            "approval_ratio_low",
            "approval_ratio_high",
            "finding",
        ]
    )


def _empty_gaps() -> pd.DataFrame:
    return pd.DataFrame(columns=["column", "measure", "value", "low", "high", "p_value"])
