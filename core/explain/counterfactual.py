"""The smallest changes to the columns a user marks as actionable that flip a binary run's decision.

The search is a plain vectorised one over the training data's own values: a grid of training
quantiles for a numeric column, the categories seen in training for a categorical one. Every
single change is scored first, then pairs (and triples when asked), in large batches through the
explanations' :class:`CachedModel` (the backbone reads each text and the cell vocabulary once), and
the changes returned are scored again with ``predict_proba``, the way the run serves, so each one
really flips the decision. dice-ml was not used: it pins an old pandas, and this exhaustive search
over a few hundred to a few thousand candidate rows is deterministic, needs no tuning and finds
the smallest flips on its grid.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .attributions import _resolve, _training_rows
from .cached_model import CachedModel
from .whatif import _check_row, _decision, _format, _input_role, _labels, _listing, _plain_number

logger = logging.getLogger(__name__)

ACTIONABLE_ROLES = ("numeric", "categorical")
MAX_CHANGES = 3  # each more change multiplies the candidates
N_GRID = 20  # numeric candidates per column: training quantiles 2.5% .. 97.5%
GRID_QUANTILES = np.linspace(0.025, 0.975, N_GRID)
MAX_CATEGORIES = 30  # categorical candidates per column: the most frequent in training
# Candidate rows per level (pairs, triples) at most: 5 actionable columns have 10 pairs of 20 x 20
# values (4,000 rows, all kept); with more columns or triples, each column keeps its values that
# moved the probability furthest towards the flip on their own. 4,000 rows score in 0.3 s on
# 2 CPU cores (credit_risk, MiniLM read by cells, blended with trees).
MAX_ROWS_PER_LEVEL = 12_000
SCORE_BATCH_ROWS = 20_000  # candidate rows per model pass


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Counterfactual:
    """One set of changes that flips the decision, scored the way the run serves."""

    changes: dict[str, tuple[object, object]]  # column -> (old value, new value)
    phrase: str  # "credit_amount 15,000 → 4,500; duration_months 48 → 24"
    probability: float  # of the positive class, after the changes
    decision: str  # after the changes, e.g. "good (approved)"
    distance: float  # size of the change: training-percentile units, 1 per category changed
    margin: float  # how far past the threshold the probability lands

    @property
    def n_changes(self) -> int:
        return len(self.changes)


@dataclass(frozen=True)
class Counterfactuals:
    """The answer of :func:`counterfactuals`: the row's decision and the changes that flip it."""

    probability: float  # the row's probability of the positive class
    decision: str  # the row's decision, e.g. "bad (flagged)"
    target_decision: str  # what a flip gives, e.g. "good (approved)"
    positive_class: str
    threshold: float
    actionable: tuple[str, ...]
    max_changes: int
    results: tuple[Counterfactual, ...]  # fewer changes first, then smaller, then wider margin
    n_scored: int  # candidate rows scored
    seconds: float
    message: str  # why the list is empty, else ""

    def frame(self) -> pd.DataFrame:
        """The results as a table: ``changes`` (the phrase), ``n_changes``, ``probability``,
        ``decision``, ``distance``."""
        return pd.DataFrame(
            {
                "changes": [r.phrase for r in self.results],
                "n_changes": [r.n_changes for r in self.results],
                "probability": [r.probability for r in self.results],
                "decision": [r.decision for r in self.results],
                "distance": [r.distance for r in self.results],
            }
        )


# --------------------------------------------------------------------------- candidate values


@dataclass(frozen=True)
class _Grid:
    """One actionable column's candidate values and the size of moving to each."""

    column: str
    old: object
    values: np.ndarray  # (n,) object: the new values
    distances: np.ndarray  # (n,) float


def _numeric_grid(column: str, old, train: pd.Series) -> _Grid:
    """Training values at 20 quantiles (2.5% to 97.5%), rounded to the decade of the grid's
    typical step (4,523 -> 4,500 where steps are hundreds), integers kept integer; the distance
    of each is the move in training percentiles."""
    from ..data.schema import to_number

    seen = np.sort(to_number(train))
    seen = seen[np.isfinite(seen)]
    if not seen.size:
        return _Grid(column, old, np.array([], dtype=object), np.array([]))
    integral = bool(np.all(np.mod(seen, 1) == 0))
    grid = np.unique(np.quantile(seen, GRID_QUANTILES, method="nearest"))  # values seen
    gaps = np.diff(grid)
    if gaps.size and gaps.max() > 0:
        step = float(np.median(gaps[gaps > 0]))
        grid = np.unique(np.round(grid, -math.floor(math.log10(step))))
    if integral:
        grid = np.unique(np.round(grid))
    grid = np.clip(grid, seen[0], seen[-1])
    old_number = to_number(pd.Series([old], dtype=object))[0]
    keep = ~np.isclose(grid, old_number) if np.isfinite(old_number) else np.ones(len(grid), bool)
    grid = np.unique(grid[keep])

    def percentile(values: np.ndarray) -> np.ndarray:  # mid-rank: ties sit in their middle
        left = np.searchsorted(seen, values, side="left")
        right = np.searchsorted(seen, values, side="right")
        return (left + right) / (2 * len(seen))

    # From a missing value any number is a whole step, like a category.
    distances = (
        np.abs(percentile(grid) - percentile(np.array([old_number])))
        if np.isfinite(old_number)
        else np.ones(len(grid))
    )
    values = np.array([_plain_number(v, integral=integral) for v in grid], dtype=object)
    return _Grid(column, old, values, distances)


def _categorical_grid(column: str, old, train: pd.Series) -> _Grid:
    """The categories seen in training, most frequent first, each a change of 1."""
    seen = [v for v in train.value_counts(dropna=True).index if str(v) != str(old)]
    values = np.empty(len(seen[:MAX_CATEGORIES]), dtype=object)
    values[:] = [v.item() if isinstance(v, np.generic) else v for v in seen[:MAX_CATEGORIES]]
    return _Grid(column, old, values, np.ones(len(values)))


def _check_actionable(spec, actionable) -> list[str]:
    if isinstance(actionable, str):
        actionable = [actionable]
    columns = list(dict.fromkeys(actionable or []))
    if not columns:
        raise ConfigError(
            "Mark at least one column as actionable (one a person can change, such as an amount "
            "or a duration): the search changes only those."
        )
    for column in columns:
        role = _input_role(spec, column, "mark as actionable columns from")
        if role not in ACTIONABLE_ROLES:
            kind = "free text" if role == "text" else "a date"
            raise ConfigError(
                f"{column!r} is {kind}: only numeric and categorical columns are actionable (the "
                "search tries the training data's values, which free text and dates do not have "
                "in a useful grid). Edit it by hand instead."
            )
    return columns


# --------------------------------------------------------------------------- the search


def counterfactuals(
    source,
    row: pd.DataFrame,
    actionable: list[str],
    *,
    max_changes: int = 2,
    n_results: int = 5,
    decision=None,
    training: pd.DataFrame | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Counterfactuals:
    """The smallest changes to the ``actionable`` columns of ``row`` that flip a binary run's
    decision (flagged -> approved, or approved -> flagged): a :class:`Counterfactuals`.

    ``source`` is a run folder or a fitted FineTuner; ``row`` a one-row DataFrame. New values come
    from the training rows (``training``; default: the run's own): ~20 rounded quantiles of a
    numeric column, the categories of a categorical one. Every single change is scored first,
    then pairs, up to ``max_changes`` (1-3) columns at once. A set of changes that contains a
    smaller set which already flips is left out; of the sets changing the same columns only the
    smallest is kept (then the one furthest past the threshold). Results come fewer changes
    first, then the smaller change (training-percentile units; a category counts 1), then the
    wider margin, at most ``n_results``; each was scored again with ``predict_proba``. When none
    flips, ``results`` is empty and ``message`` says what to try. ``decision`` defaults to the
    run's saved one (else 0.5); ``on_progress(fraction)`` is called after each level (1.0 last).
    """
    started = time.perf_counter()
    tuner, run_dir = _resolve(source)
    spec = tuner.spec_
    if spec.task != "binary":
        raise ConfigError(
            f"This run is {spec.task}: counterfactuals flip a yes/no decision, so they need a "
            "binary run. Use the what-if edit to see how the prediction moves."
        )
    _check_row(tuner, row)
    columns = _check_actionable(spec, actionable)
    if not isinstance(max_changes, numbers.Integral) or not 1 <= max_changes <= MAX_CHANGES:
        raise ConfigError(
            f"max_changes={max_changes!r}: use 1, 2 or 3 (each more change multiplies the "
            "candidates)."
        )
    if not isinstance(n_results, numbers.Integral) or n_results < 1:
        raise ConfigError(f"n_results={n_results!r}: ask for 1 or more results.")
    decision = _decision(tuner, run_dir, decision)
    flagged_label, approved_label = _labels(spec, decision)
    if training is None:
        if run_dir is None:
            raise ConfigError(
                "Counterfactuals for a FineTuner object need the training rows to draw values "
                "from: pass training= a DataFrame (or give a run folder, whose rows are known)."
            )
        training = _training_rows(run_dir, tuner)
    missing = [c for c in columns if c not in training.columns]
    if missing:
        raise DataError(f"training lacks the actionable column(s) {_listing(missing)}.")

    base = row[spec.feature_columns].reset_index(drop=True)
    grids = [
        (_numeric_grid if spec.roles[c] == "numeric" else _categorical_grid)(
            c, _plain(base[c].iloc[0]), training[c]
        )
        for c in columns
    ]
    threshold = float(decision.threshold)
    positive = list(map(str, spec.classes)).index(str(decision.positive_class))
    model = CachedModel(tuner, output_index=positive, precision=tuner.config.train.precision)
    with model.serving():
        probability = float(model(base)[0])
        was_flagged = probability >= threshold
        search = _Search(grids, base, model, threshold, was_flagged)
        for k in range(1, max_changes + 1):
            search.level(k)
            # Enough found: every set of more changes would rank after these.
            done = k == max_changes or len(search.best) >= n_results
            if on_progress is not None:
                on_progress(1.0 if done else k / max_changes)
            if done:
                break
    # Scored again the way the run serves (predict_proba), the row with them, so the row's
    # probability agrees with score_rows and every result flips there.
    probability, results = _confirm(tuner, base, grids, search, threshold, positive)
    was_flagged = probability >= threshold
    target = approved_label if was_flagged else flagged_label
    results = tuple(
        Counterfactual(
            changes=changes,
            phrase=_phrase(changes),
            probability=p,
            decision=target,
            distance=distance,
            margin=abs(p - threshold),
        )
        for changes, p, distance in results[:n_results]
    )
    message = ""
    if not results:
        more = "" if max_changes >= MAX_CHANGES else f", or allow up to {max_changes + 1} changes"
        message = (
            f"No change to at most {max_changes} of {_listing(columns)} turns "
            f"{flagged_label if was_flagged else approved_label} (probability {probability:.3f}, "
            f"threshold {threshold:.3f}) into {target}: mark more columns as actionable{more}."
        )
    answer = Counterfactuals(
        probability=probability,
        decision=flagged_label if was_flagged else approved_label,
        target_decision=target,
        positive_class=str(decision.positive_class),
        threshold=threshold,
        actionable=tuple(columns),
        max_changes=int(max_changes),
        results=results,
        n_scored=search.n_scored,
        seconds=time.perf_counter() - started,
        message=message,
    )
    logger.info(
        "counterfactuals: %d found, %d candidates scored in %.2f s",
        len(results),
        answer.n_scored,
        answer.seconds,
    )
    return answer


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


class _Search:
    """Candidate change sets by level, scored in batches; the best flip per set of columns.

    A candidate is a row of value indices, one per actionable column (-1: unchanged). A set of
    changes is dominated, and never scored, when a smaller set among its columns already flips
    with no larger a change of each of those columns: with "purpose" flipping alone, no pair
    changes "purpose" (every category change is 1); with "amount 4,870 -> 1,500" flipping alone,
    pairs keep only smaller moves of the amount.
    """

    def __init__(self, grids: list[_Grid], base: pd.DataFrame, model, threshold, was_flagged):
        self.grids, self.base, self.model = grids, base, model
        self.threshold, self.was_flagged = threshold, was_flagged
        self.n_scored = 0
        # columns changed -> the per-column distances (n, k) of every flip found on them
        self.flip_sizes: dict[tuple[int, ...], np.ndarray] = {}
        # columns changed -> (distance, -margin, candidate, probability) of the best flip
        self.best: dict[tuple[int, ...], tuple[float, float, np.ndarray, float]] = {}
        self.single_scores: list[np.ndarray] = [np.array([]) for _ in grids]

    def level(self, k: int) -> None:
        candidates = self._singles() if k == 1 else self._combinations(k)
        if not len(candidates):
            return
        probabilities = self._score(candidates)
        if k == 1:
            for j in range(len(self.grids)):
                self.single_scores[j] = probabilities[candidates[:, j] >= 0]
        flips = (probabilities >= self.threshold) != self.was_flagged
        sizes = self._sizes(candidates)  # (N, m)
        distances, margins = sizes.sum(axis=1), np.abs(probabilities - self.threshold)
        found: dict[tuple[int, ...], list[np.ndarray]] = {}
        for i in np.flatnonzero(flips):
            changed = tuple(int(j) for j in np.flatnonzero(candidates[i] >= 0))
            found.setdefault(changed, []).append(sizes[i, list(changed)])
            key = (float(distances[i]), -float(margins[i]))
            if changed not in self.best or key < self.best[changed][:2]:
                self.best[changed] = (*key, candidates[i], float(probabilities[i]))
        self.flip_sizes.update({cols: np.stack(rows) for cols, rows in found.items()})

    def _sizes(self, candidates: np.ndarray) -> np.ndarray:
        """Each candidate's change of each column (N, m): 0 where unchanged."""
        sizes = np.zeros(candidates.shape, dtype=np.float64)
        for j, grid in enumerate(self.grids):
            changed = candidates[:, j] >= 0
            sizes[changed, j] = grid.distances[candidates[changed, j]]
        return sizes

    def _singles(self) -> np.ndarray:
        rows = [np.zeros((0, len(self.grids)), dtype=np.int64)]
        for j, grid in enumerate(self.grids):
            block = np.full((len(grid.values), len(self.grids)), -1, dtype=np.int64)
            block[:, j] = np.arange(len(grid.values))
            rows.append(block)
        return np.concatenate(rows)

    def _combinations(self, k: int) -> np.ndarray:
        """Every k-column combination of values that no smaller flip dominates; with many
        columns, each column keeps the values that moved the probability furthest towards the
        flip on their own."""
        combos = list(itertools.combinations(range(len(self.grids)), k))
        cap = max(2, int((MAX_ROWS_PER_LEVEL / max(len(combos), 1)) ** (1 / k)))
        allowed = []
        for j, grid in enumerate(self.grids):
            # Only moves smaller than the smallest one that flips alone.
            smallest = self.flip_sizes.get((j,), np.array([[np.inf]])).min()
            keep = np.flatnonzero(grid.distances < smallest)
            # Towards the flip: down for a flagged row, up for an approved one.
            scores = self.single_scores[j][keep]
            order = np.argsort(scores if self.was_flagged else -scores, kind="stable")
            allowed.append(keep[order[:cap]])
        blocks = [np.zeros((0, len(self.grids)), dtype=np.int64)]
        for combo in combos:
            values = np.meshgrid(*[allowed[j] for j in combo], indexing="ij")
            block = np.full((values[0].size, len(self.grids)), -1, dtype=np.int64)
            for j, chosen in zip(combo, values, strict=True):
                block[:, j] = chosen.reshape(-1)
            blocks.append(block[~self._dominated(block, combo)])
        return np.concatenate(blocks)

    def _dominated(self, block: np.ndarray, combo: tuple[int, ...]) -> np.ndarray:
        """Which candidates of one column combination hold a smaller flipping set of 2 or more
        columns, with each of its columns changed no more."""
        dominated = np.zeros(len(block), dtype=bool)
        sizes = self._sizes(block)
        for r in range(2, len(combo)):
            for subset in itertools.combinations(combo, r):
                flips = self.flip_sizes.get(subset)
                if flips is None or not len(block):
                    continue
                own = sizes[:, list(subset)]  # (N, r)
                dominated |= (flips[None, :, :] <= own[:, None, :] + 1e-12).all(axis=2).any(axis=1)
        return dominated

    def _score(self, candidates: np.ndarray) -> np.ndarray:
        out = np.empty(len(candidates), dtype=np.float64)
        for start in range(0, len(candidates), SCORE_BATCH_ROWS):
            chunk = candidates[start : start + SCORE_BATCH_ROWS]
            out[start : start + len(chunk)] = self.model(_apply(self.base, self.grids, chunk))
        self.n_scored += len(candidates)
        return out


def _apply(base: pd.DataFrame, grids: list[_Grid], candidates: np.ndarray) -> pd.DataFrame:
    """One row per candidate: the base row with each candidate's changes. (N, M)"""
    frame = base.iloc[np.zeros(len(candidates), dtype=np.int64)].reset_index(drop=True)
    for j, grid in enumerate(grids):
        changed = candidates[:, j] >= 0
        if not changed.any():
            continue
        column = np.empty(len(candidates), dtype=object)
        column[:] = [grid.old] * len(candidates)
        column[changed] = grid.values[candidates[changed, j]]
        frame[grid.column] = column
    return frame


def _confirm(tuner, base, grids, search: _Search, threshold: float, positive: int):
    """The row's served probability, and the best flip of each set of columns, ranked and scored
    again with ``predict_proba``; those that do not flip there (a hair from the threshold, at
    another precision) are left out."""
    ranked = sorted(search.best.items(), key=lambda item: (len(item[0]), *item[1][:2]))
    candidates = np.stack(
        [np.full(len(grids), -1, dtype=np.int64)] + [best[2] for _, best in ranked]
    )  # the row itself first
    served = tuner.predict_proba(_apply(base, grids, candidates))[:, positive]
    row_probability, served = float(served[0]), served[1:]
    was_flagged = row_probability >= threshold
    results = []
    for (changed, (distance, _, candidate, _)), p in zip(ranked, served, strict=True):
        if (p >= threshold) == was_flagged:
            logger.info("a counterfactual did not flip when served (p=%.4f): left out", p)
            continue
        changes = {grids[j].column: (grids[j].old, grids[j].values[candidate[j]]) for j in changed}
        results.append((changes, float(p), distance))
    # The served probabilities may reorder equal-size changes by margin.
    results.sort(key=lambda r: (len(r[0]), r[2], -abs(r[1] - threshold)))
    return row_probability, results


def _phrase(changes: dict[str, tuple[object, object]]) -> str:
    return "; ".join(f"{c} {_format(old)} → {_format(new)}" for c, (old, new) in changes.items())
