"""Population stability index (PSI): has an input's distribution moved since training?

A :class:`Reference` freezes one input's bins and their shares on the training rows; :func:`psi`
compares a new sample against it. References serialise to plain JSON so a run folder can keep them
next to the model and score later files without the training data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.schema import TableSpec, target_labels, to_number
from ..errors import DataError

logger = logging.getLogger(__name__)

PSI_WARN = 0.1
PSI_ALERT = 0.25
DEFAULT_BINS = 10
MAX_CATEGORIES = 20
EPSILON = 1e-4  # floor on each bin's share, so an empty bin gives a large but finite PSI
LENGTH_SUFFIX = " (length)"  # text inputs are tracked through their length in characters


CHANCE_95 = 1.9  # PSI/chance level is ~ chi-square(9)/9 with no shift; its 95th percentile is 1.88


def psi_level(value: float, chance_level: float = 0.0) -> str:
    """ "stable" below PSI_WARN, "watch" below PSI_ALERT, else "shift"; a PSI that chance alone
    reaches one time in twenty at these sample sizes (``chance_level``) is "stable" too."""
    if value < PSI_WARN or value < CHANCE_95 * chance_level:
        return "stable"
    if value < PSI_ALERT:
        return "watch"
    return "shift"


def psi_chance_level(n_reference: int, n_values: int, bins: int = DEFAULT_BINS) -> float:
    """The PSI two samples of these sizes show on average with no shift at all:
    (bins − 1)(1/n₁ + 1/n₂).

    PSI is close to a chi-square statistic over the bins, so small samples read as drift: 150 test
    rows against 700 training rows give about 0.07 by chance, near the 0.1 "watch" level.
    """
    return (bins - 1) * (1 / max(n_reference, 1) + 1 / max(n_values, 1))


@dataclass(frozen=True)
class Reference:
    """One input's bins and their shares on the reference sample.

    Numeric: ``edges`` run from -inf to +inf and bins are right-closed, ``(edges[i], edges[i+1]]``.
    Categorical: ``categories`` are the most frequent values. ``proportions`` has one share per
    bin or category, then for categorical one for "other" (values not in ``categories``), and
    last, for both kinds, one for missing values.
    """

    kind: str
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    proportions: tuple[float, ...] = ()

    def __post_init__(self):
        if self.kind not in ("numeric", "categorical"):
            raise DataError(
                f"Reference kind {self.kind!r} is unknown: use 'numeric' or 'categorical'."
            )
        if self.kind == "numeric" and len(self.edges) < 2:
            raise DataError("A numeric reference needs at least the edges -inf and inf: refit it.")
        if len(self.proportions) != self._n_bins():
            raise DataError(
                f"A {self.kind} reference with these edges/categories needs {self._n_bins()} "
                f"proportions, not {len(self.proportions)}: the stored reference is damaged; refit "
                "it."
            )

    def _n_bins(self) -> int:
        # numeric: len(edges) - 1 bins + missing; categorical: categories + other + missing
        return len(self.edges) if self.kind == "numeric" else len(self.categories) + 2

    @classmethod
    def fit(cls, values, *, kind: str | None = None, bins: int = DEFAULT_BINS) -> Reference:
        """Bins from a reference sample: quantile bins for numbers, top categories otherwise."""
        series = _series(values)
        if kind is None:
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(
                series
            )
            kind = "numeric" if numeric else "categorical"
        if kind == "numeric":
            numbers = to_number(series)
            finite = numbers[np.isfinite(numbers)]
            inner = (
                np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
                if len(finite)
                else []
            )
            shape = cls(
                kind=kind,
                edges=(-math.inf, *map(float, inner), math.inf),
                proportions=(0.0,) * (len(inner) + 2),
            )
        elif kind == "categorical":
            counts = target_labels(series).value_counts()
            # Ties broken by name so the same sample always gives the same categories.
            counts = counts.sort_index(kind="mergesort").sort_values(
                ascending=False, kind="mergesort"
            )
            categories = tuple(map(str, counts.index[:MAX_CATEGORIES]))
            shape = cls(
                kind=kind, categories=categories, proportions=(0.0,) * (len(categories) + 2)
            )
        else:
            raise DataError(f"Reference kind {kind!r} is unknown: use 'numeric' or 'categorical'.")
        return dataclasses.replace(shape, proportions=tuple(map(float, shape.shares(series))))

    def shares(self, values) -> np.ndarray:
        """The share of ``values`` in each of this reference's bins (missing last)."""
        series = _series(values)
        if self.kind == "numeric":
            numbers = to_number(series)
            present = np.isfinite(numbers)
            # side="left" puts a value equal to an edge in the bin that edge closes: (a, b].
            index = np.searchsorted(np.asarray(self.edges[1:-1]), numbers[present], side="left")
        else:
            # target_labels reads 1.0 as "1", so a code column keeps its categories when NaNs
            # turn it to float.
            labels = target_labels(series)
            present = labels.notna().to_numpy()
            lookup = {category: i for i, category in enumerate(self.categories)}
            other = len(self.categories)
            index = np.array([lookup.get(label, other) for label in labels[present]], dtype=int)
        counts = np.bincount(index, minlength=self._n_bins()).astype(float)
        counts[-1] += (~present).sum()
        return counts / max(len(series), 1)

    def to_dict(self) -> dict:
        """Plain JSON types; infinite edges become the strings "-inf" and "inf"."""
        return {
            "kind": self.kind,
            "edges": [edge if math.isfinite(edge) else str(edge) for edge in self.edges],
            "categories": list(self.categories),
            "proportions": list(self.proportions),
        }

    @classmethod
    def from_dict(cls, raw: dict) -> Reference:
        return cls(
            kind=raw["kind"],
            edges=tuple(
                float(edge) for edge in raw.get("edges", ())
            ),  # float("inf") reads the strings
            categories=tuple(map(str, raw.get("categories", ()))),
            proportions=tuple(float(p) for p in raw["proportions"]),
        )


def _series(values) -> pd.Series:
    return values if isinstance(values, pd.Series) else pd.Series(values)


def psi(reference: Reference, values) -> float:
    """Population stability index of ``values`` against ``reference``: sum (a - e) ln(a / e)."""
    if len(values) == 0:
        raise DataError("No values to compare with the reference: the new sample is empty.")
    expected = np.maximum(np.asarray(reference.proportions, dtype=float), EPSILON)
    actual = np.maximum(reference.shares(values), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def stability_reference(
    frame: pd.DataFrame, spec: TableSpec, columns: list[str] | None = None
) -> dict[str, Reference]:
    """References for the spec's numeric, categorical and text inputs (text as "<col> (length)")."""
    chosen = set(spec.feature_columns if columns is None else columns)
    references: dict[str, Reference] = {}
    for column, role in spec.roles.items():
        if column not in chosen or column not in frame.columns:
            continue
        if role in ("numeric", "categorical"):
            references[column] = Reference.fit(frame[column], kind=role)
        elif role == "text":
            references[column + LENGTH_SUFFIX] = Reference.fit(
                _text_length(frame[column]), kind="numeric"
            )
    return references


def _text_length(series: pd.Series) -> pd.Series:
    return series.astype("string").str.len().astype(float)


def stability_report(
    references: dict[str, Reference], frame: pd.DataFrame, *, n_reference: int = 0
) -> pd.DataFrame:
    """PSI of each input of ``frame`` against its reference: columns input, psi, level; worst first.

    Inputs whose column ``frame`` lacks are skipped, so a file with fewer columns still gets a
    report. With ``n_reference`` (the reference's row count), PSI within chance for these sizes is
    "stable".
    """
    chance = psi_chance_level(n_reference, len(frame)) if n_reference else 0.0
    rows = []
    for name, reference in references.items():
        if name in frame.columns:
            values = frame[name]
        elif name.endswith(LENGTH_SUFFIX) and name[: -len(LENGTH_SUFFIX)] in frame.columns:
            values = _text_length(frame[name[: -len(LENGTH_SUFFIX)]])
        else:
            logger.info("Stability: %r is not in the table, skipped", name)
            continue
        value = psi(reference, values)
        rows.append({"input": name, "psi": value, "level": psi_level(value, chance)})
    report = pd.DataFrame(rows, columns=["input", "psi", "level"])
    return report.sort_values("psi", ascending=False, kind="mergesort").reset_index(drop=True)


MODEL_SCORE = "model score"


def with_score(
    report: pd.DataFrame, reference: Reference, scores, *, n_reference: int = 0
) -> pd.DataFrame:
    """``report`` with the model score's PSI as its first row (the input people check first)."""
    value = psi(reference, scores)
    chance = psi_chance_level(n_reference, len(scores)) if n_reference else 0.0
    row = pd.DataFrame([{"input": MODEL_SCORE, "psi": value, "level": psi_level(value, chance)}])
    return pd.concat([row, report], ignore_index=True)
