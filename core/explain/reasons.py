"""Reason codes: for each row a binary run's decision declines, the inputs that pushed it most
toward decline, in words a credit officer can read out ("credit_amount 15,000: higher than 92% of
applicants", "checking_account_status: less than 0 DM").

As is usual for adverse-action reasons, a declined row is compared with applicants the model
approves: its column SHAP values (:func:`~core.explain.attributions.explain_rows`) are taken
against a reference of training rows scored below the decision threshold, so each value says how
much that input moved the row from "approved" toward "declined", and the values plus the base value
add up to the model's probability of the positive class for the row. The reasons are the columns
with positive values, strongest first; a number is placed among the training rows' values, a
category or date is given as written, and a text column names its words that push toward decline
(each left out in turn, only for the declined rows whose text is among their reasons, so the cost
stays bounded).

Speed (``python -m bench.reasons``, 2 CPU cores, MiniLM frozen, cells): 1,000 credit rows, 197 of
them declined, in 3.1 s once the run is loaded.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.schema import is_missing
from ..errors import ConfigError, RunError
from .attributions import (
    ExplainBackground,
    ExplanationCancelled,
    _check_rows,
    _resolve,
    _training_rows,
    explain_rows,
)
from .cached_model import CachedModel

logger = logging.getLogger(__name__)

DEFAULT_REASONS = 4
REFERENCE_SAMPLE_ROWS = 200  # training rows scored to find approved ones
REFERENCE_ROWS = 16  # approved rows kept: what explain_rows' default found enough (see there)
MAX_WORDS = 3  # words named per text reason
MAX_TEXT_WORDS = 32  # words of a text tried one by one (its first ones); the rest stay in place
WORD_BATCH_ROWS = 2048  # texts with one word left out, per pass of the cached model
MAX_QUOTE_CHARS = 40
NO_REFERENCE = "none: no row is declined"  # ReasonCodes.reference when nothing needed one
POPULATION = "applicants"
_CACHE_SIZE = 8


@dataclass(frozen=True)
class ReasonCodes:
    """What :func:`reason_codes` found.

    ``frame``: index = the rows' index; ``probability`` (of the positive class), ``declined``
    (bool) and ``reason_1`` .. ``reason_n`` (strongest first; "" for approved rows and where fewer
    inputs push toward decline). ``explanation``: the shap.Explanation of the declined rows only
    (``instance_names`` = their index) against the approved reference. ``reference``: what that
    reference is, as a phrase (:data:`NO_REFERENCE` when no row is declined: approved rows are not
    explained). ``decision``: the Decision applied.
    """

    frame: pd.DataFrame
    explanation: object
    reference: str
    decision: object


# --------------------------------------------------------------------------- wording


def reason_column(reason: str, columns) -> str | None:
    """The input column a worded reason is about: the longest of ``columns`` it starts with
    (reasons read "<column>: ..." or "<column> <number>: ..."); None when none matches."""
    found = [c for c in columns if reason.startswith(f"{c}:") or reason.startswith(f"{c} ")]
    return max(found, key=len) if found else None


def _format_number(x: float) -> str:
    """15000 -> "15,000"; 2.5 -> "2.5"; 1234.56 -> "1,235"; 0.01234 -> "0.0123"."""
    if float(x).is_integer():
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _percent(share: float) -> str:
    pct = math.floor(share * 100 + 1e-9)  # rounded down: "higher than 92%" stays true
    return "fewer than 1%" if pct < 1 else f"{pct}%"


class ReasonWording:
    """How a reason reads, from the run's training rows: a number placed among the training rows'
    values, a category or date as written, a text by its words. Column names as in the data."""

    def __init__(self, train: pd.DataFrame, spec, *, population: str = POPULATION):
        from ..data.schema import to_number

        self.roles = dict(spec.roles)
        self.population = population
        self._sorted = {}
        for column in spec.columns("numeric"):
            values = to_number(train[column])
            self._sorted[column] = np.sort(values[np.isfinite(values)])

    def standing(self, column: str, number: float) -> str | None:
        """How ``number`` stands among the training rows' values of ``column``: "higher than 92%
        of applicants" (the share strictly below), or "lower than 85% of applicants" when more of
        them are above; None when every value equals it."""
        values = self._sorted[column]
        n = len(values)
        if n == 0:
            return None
        below = np.searchsorted(values, number, side="left") / n
        above = (n - np.searchsorted(values, number, side="right")) / n
        if max(below, above) == 0:
            return None
        side, share = ("higher", below) if below >= above else ("lower", above)
        if share == 1:
            return f"{side} than all {self.population}"
        return f"{side} than {_percent(share)} of {self.population}"

    def phrase(self, column: str, value, words: list[str] | None = None) -> str:
        """The reason for ``column`` holding ``value``; ``words``: a text's words toward decline."""
        from ..data.schema import to_number

        role = self.roles[column]
        if is_missing(value):
            return f"{column}: missing"
        if role == "numeric":
            number = float(to_number(pd.Series([value]))[0])
            if not math.isfinite(number):
                return f"{column}: missing"
            standing = self.standing(column, number)
            shown = f"{column} {_format_number(number)}"
            return f"{shown}: {standing}" if standing else shown
        if role == "text":
            if words:
                return f"{column}: the word{'s' if len(words) > 1 else ''} " + ", ".join(
                    f"'{word}'" for word in words
                )
            text = " ".join(str(value).split())
            short = text if len(text) <= MAX_QUOTE_CHARS else text[: MAX_QUOTE_CHARS - 1] + "…"
            return f"{column}: '{short}'"
        if isinstance(value, pd.Timestamp):
            value = value.date() if value == value.normalize() else value
        return f"{column}: {value}"


# --------------------------------------------------------------------------- the reference


_cache: OrderedDict[tuple, object] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple | None, build: Callable[[], object]):
    """``build()``, kept per ``key`` (None: not kept) so one-row-at-a-time callers reuse it."""
    if key is None:
        return build()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = build()
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def _run_key(run_dir: Path | None) -> tuple | None:
    if run_dir is None:
        return None
    from ..runs import folder as runs

    weights = runs.model_dir(run_dir) / "model.safetensors"
    stamp = weights.stat().st_mtime if weights.is_file() else None
    return (str(run_dir.resolve()), stamp)


def approved_reference(
    tuner, train: pd.DataFrame, decision, *, seed: int = 0
) -> tuple[pd.DataFrame, str]:
    """Training rows the model approves at ``decision``: of :data:`REFERENCE_SAMPLE_ROWS` rows
    sampled with ``seed``, the first :data:`REFERENCE_ROWS` scored below the threshold; and a
    phrase saying so. Raises :class:`RunError` when none is approved."""
    sample = train.sample(min(REFERENCE_SAMPLE_ROWS, len(train)), random_state=seed)
    k = list(tuner.spec_.classes).index(decision.positive_class)
    probability = tuner.predict_proba(sample)[:, k]
    approved = sample[probability < decision.threshold]
    if approved.empty:
        raise RunError(
            f"None of {len(sample)} training rows is approved at threshold "
            f"{decision.threshold:.3g} (all have P({decision.positive_class}) at or above it): "
            "reasons compare a declined row with approved applicants, so choose a higher "
            "threshold (fintune threshold RUN_DIR, or --threshold) and try again."
        )
    reference = approved.head(REFERENCE_ROWS)
    n = len(reference)
    return reference, f"{n} training row{'s' if n != 1 else ''} the model approves (seed {seed})"


def _decision(tuner, run_dir: Path | None, decision):
    from ..runs import folder as runs
    from ..stats.thresholds import Decision

    spec = tuner.spec_
    if spec.task != "binary":
        raise ConfigError(
            f"Reason codes are for binary runs with a decision (a positive class and a "
            f"threshold); this run is {spec.task}: use explain_rows for its SHAP values."
        )
    if decision is None and run_dir is not None:
        decision = runs.read_decision(run_dir)
    positive = spec.positive_class if spec.positive_class in spec.classes else spec.classes[-1]
    if decision is None:
        return Decision(positive, 0.5)  # no saved decision: labels are the most probable class
    if isinstance(decision, (int, float)) and not isinstance(decision, bool):
        return Decision(positive, float(decision), "manual")
    if decision.positive_class not in spec.classes:
        raise ConfigError(
            f"The decision is for class {decision.positive_class!r}, but this run's classes are "
            f"{list(spec.classes)}: choose the threshold again for this run."
        )
    return decision


def decline_words(
    tuner,
    rows: pd.DataFrame,
    jobs: list[tuple[int, str]],
    output_index: int,
    *,
    n_words: int = MAX_WORDS,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> list[list[str]]:
    """For each job ``(row position, text column)``, the words of that row's text that push
    its output up the most, strongest first: each word is left out in turn and the output drop is
    its effect (words spelt alike add up); only words with a positive effect, at most
    ``n_words``, punctuation around them dropped.

    The jobs' texts go through the model together (about :data:`WORD_BATCH_ROWS` at a time),
    the backbone reading each distinct text once. Token SHAP per row (:func:`explain_tokens`,
    shap's partition explainer) cost 0.2-0.3 s a row even with the tests' tiny backbone at 64
    evaluations: 92 s for the 279 text reasons among 1,000 rows of a credit table with a notes
    column, where this took 0.8 s.
    """
    model = CachedModel(tuner, output_index=output_index)
    # Jobs a chunk at a time: a text has up to MAX_TEXT_WORDS + 1 variants.
    per_chunk = max(1, WORD_BATCH_ROWS // (MAX_TEXT_WORDS + 1))
    named: list[list[str]] = []
    with model.serving():
        for start in range(0, len(jobs), per_chunk):
            if should_stop is not None and should_stop():
                raise ExplanationCancelled()
            chunk = jobs[start : start + per_chunk]
            frame, spans = _without_each_word(rows, chunk)
            outputs = model(frame)  # (V,)
            for first, tried in spans:
                named.append(_ranked_words(tried, outputs[first] - outputs[first + 1 :], n_words))
            if on_progress is not None:
                on_progress((start + len(chunk)) / len(jobs))
    return named


def _without_each_word(
    rows: pd.DataFrame, jobs: list[tuple[int, str]]
) -> tuple[pd.DataFrame, list[tuple[int, list[str]]]]:
    """Each job's row with its text whole, then with each of its first words left out in turn;
    and per job its first line in that frame and the words tried."""
    positions: list[int] = []  # the row each variant comes from
    columns: list[str] = []
    texts: list[str] = []
    spans: list[tuple[int, list[str]]] = []
    for i, column in jobs:
        words = str(rows[column].iloc[i]).split()
        tried = words[:MAX_TEXT_WORDS]
        spans.append((len(texts), tried))
        variants = [" ".join(words)] + [
            " ".join(words[:w] + words[w + 1 :]) for w in range(len(tried))
        ]
        positions += [i] * len(variants)
        columns += [column] * len(variants)
        texts += variants
    frame = rows.iloc[positions].reset_index(drop=True)  # (V, M)
    columns_ = np.asarray(columns, dtype=object)
    texts_ = np.asarray(texts, dtype=object)
    for column in dict.fromkeys(columns):
        values = frame[column].to_numpy(dtype=object).copy()
        where = np.flatnonzero(columns_ == column)
        values[where] = texts_[where]
        frame[column] = values
    return frame, spans


def _ranked_words(tried: list[str], drops: np.ndarray, n_words: int) -> list[str]:
    """The words with the largest positive drop (``drops[w]``: the output less the output
    without word ``w``), words spelt alike added up, punctuation around them dropped."""
    effects: dict[str, float] = {}
    for w, word in enumerate(tried):
        cleaned = word.strip("\"'.,;:!?()[]{}<>")
        if any(c.isalnum() for c in cleaned):
            effects[cleaned] = effects.get(cleaned, 0.0) + float(drops[w])
    ranked = sorted((w for w in effects if effects[w] > 0), key=lambda w: -effects[w])
    return ranked[:n_words]  # sorted() is stable: equal effects keep the text's order


# --------------------------------------------------------------------------- public API


def reason_codes(
    source,
    rows: pd.DataFrame,
    *,
    decision=None,
    n_reasons: int = DEFAULT_REASONS,
    words: bool = True,
    probabilities=None,
    training_rows: pd.DataFrame | None = None,
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ReasonCodes:
    """The top reasons toward decline of every row the decision declines: a :class:`ReasonCodes`.

    ``source`` is a binary run's folder, or a fitted FineTuner with ``training_rows`` (the rows it
    was trained on: the reference and the wording come from them). ``decision``: a Decision or a
    threshold on the positive class's probability; default the run's saved decision (else 0.5).
    A row is declined when that probability is at or above the threshold. ``probabilities``: the
    rows' positive-class probabilities when the caller has them already (as ``fintune predict``
    does), so the declined rows are exactly those its labels decline; else they are scored here.

    Each declined row is explained (column SHAP, :func:`explain_rows`) against
    :data:`REFERENCE_ROWS` training rows the model approves (:func:`approved_reference`; kept in
    memory per run folder and threshold). Its reasons are the columns with positive SHAP values,
    strongest first, at most ``n_reasons``, worded by :class:`ReasonWording`. With ``words``, a
    text column among a row's reasons names its words that push toward decline
    (:func:`decline_words`); else it is quoted.

    ``explanation.base_values + explanation.values.sum(1)`` is the explained model's output for
    each declined row: its ``probability``, up to the run's inference precision (predictions made
    under bf16 autocast differ by about 1e-3).

    ``on_progress(fraction)`` is called as the work goes; ``should_stop()`` is polled between
    steps and raises :class:`ExplanationCancelled` when true. Raises :class:`ConfigError` for
    runs that are not binary, :class:`RunError` when no training row is approved (see
    :func:`approved_reference`).
    """
    tuner, run_dir = _resolve(source)
    decision = _decision(tuner, run_dir, decision)
    _check_rows(tuner, rows)
    if isinstance(n_reasons, bool) or not isinstance(n_reasons, numbers.Integral) or n_reasons < 1:
        raise ConfigError(f"n_reasons={n_reasons!r}: use a whole number, 1 or more.")
    n_reasons = int(n_reasons)
    if training_rows is not None:
        _check_rows(tuner, training_rows, "training_rows")
    elif run_dir is None:
        raise ConfigError(
            "Reason codes for a FineTuner object need the rows it was trained on: pass "
            "training_rows= (or give the run folder, whose training rows are known)."
        )
    spec = tuner.spec_
    columns = list(spec.feature_columns)
    positive = decision.positive_class
    k = list(spec.classes).index(positive)

    if probabilities is None:
        probabilities = tuner.predict_proba(rows[columns])[:, k]
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if len(probabilities) != len(rows):
        raise ConfigError(
            f"probabilities has {len(probabilities)} values for {len(rows)} rows: pass one per row."
        )
    declined = probabilities >= decision.threshold

    # The training rows are read once per run folder; the reference once per threshold too.
    key = None if training_rows is not None else _run_key(run_dir)

    read: list[pd.DataFrame] = []

    def train() -> pd.DataFrame:
        if not read:
            read.append(
                training_rows if training_rows is not None else _training_rows(run_dir, tuner)
            )
        return read[0]

    where = np.flatnonzero(declined)
    wording, reference, described = None, None, NO_REFERENCE
    if len(where):  # approved rows need neither
        wording = _cached(
            None if key is None else (*key, "wording"), lambda: ReasonWording(train(), spec)
        )
        reference, described = _cached(
            None if key is None else (*key, "reference", positive, decision.threshold, seed),
            lambda: approved_reference(tuner, train(), decision, seed=seed),
        )

    text_columns = set(spec.columns("text")) if words else set()
    share = 0.9 if text_columns else 1.0  # of the progress bar for the column SHAP
    explanation = _explain(
        tuner, rows.iloc[where], reference, positive, columns, seed, share, on_progress, should_stop
    )
    explanation.background = ExplainBackground(
        "approved", 0 if reference is None else len(reference), seed, described
    )

    reasons = [[""] * n_reasons for _ in range(len(rows))]
    word_jobs = []  # (row position, reason slot, column)
    for j, i in enumerate(where):
        values = explanation.values[j]
        order = np.argsort(-values, kind="stable")  # strongest push toward decline first
        top = [c for c in order if values[c] > 0][:n_reasons]
        for slot, c in enumerate(top):
            column = columns[c]
            if column in text_columns and not is_missing(rows[column].iloc[i]):
                word_jobs.append((i, slot, column))
            reasons[i][slot] = wording.phrase(column, rows[column].iloc[i])
    if word_jobs:
        found = decline_words(
            tuner,
            rows[columns],
            [(i, column) for i, _, column in word_jobs],
            k,
            should_stop=should_stop,
            on_progress=None
            if on_progress is None
            else (lambda f: on_progress(share + (1 - share) * f)),
        )
        for (i, slot, column), named in zip(word_jobs, found, strict=True):
            if named:
                reasons[i][slot] = wording.phrase(column, rows[column].iloc[i], words=named)
    elif on_progress is not None:
        on_progress(1.0)

    frame = pd.DataFrame(
        {"probability": probabilities, "declined": declined}, index=rows.index.copy()
    )
    for slot in range(n_reasons):
        frame[f"reason_{slot + 1}"] = [r[slot] for r in reasons]
    logger.info(
        "reasons for %d declined rows of %d, against %s (%d text reasons worded)",
        len(where),
        len(rows),
        described,
        len(word_jobs),
    )
    return ReasonCodes(frame=frame, explanation=explanation, reference=described, decision=decision)


def _explain(tuner, declined_rows, reference, positive, columns, seed, share, on_progress, stop):
    """Column SHAP of the declined rows against the reference (an empty Explanation for none)."""
    import shap

    if declined_rows.empty:
        explanation = shap.Explanation(
            np.zeros((0, len(columns))),
            base_values=np.zeros(0),
            data=np.empty((0, len(columns)), dtype=object),
            feature_names=columns,
            output_names=positive,
            instance_names=[],
        )
        explanation.stats = None  # nothing was computed
    else:
        explanation = explain_rows(
            tuner,
            declined_rows[columns],
            background=reference[columns],
            class_index=positive,
            seed=seed,
            on_progress=None if on_progress is None else (lambda f: on_progress(share * f)),
            should_stop=stop,
        )
    return explanation
