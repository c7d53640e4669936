"""Explanations: SHAP values per input column and per token of a text, for a finished run.

Built on shap's Explainer -> Explanation flow, with the model wrapped as a prediction function over
rows. What makes it fast enough to use live: the backbone, the only expensive part, runs once per
distinct serialised text (and once per session for a frozen model's cell vocabulary). The rows and
background are turned into model inputs once; a masked row is assembled from them by indexing,
every masked row of a chunk of rows goes through the fusion head (and the trees) in one pass, and
only a new combination of free texts reaches the backbone.

The output explained is the probability of one class (classification) or the predicted value in
the target's units (regression), the same scale for :func:`explain_rows` and
:func:`explain_tokens`, so a dashboard can draw both in one picture.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, RunError
from .cached_model import CachedModel
from .masking import CodedTable, FastModel, InputLayout, Recorder

logger = logging.getLogger(__name__)

MAX_BACKGROUND_ROWS = 200  # every background row multiplies the number of model rows
# The default reference of explain_rows on tables read by cells. Measured on credit_risk (a
# MiniLM run, backbone frozen, blended with trees; 200 validation and test rows), against 200
# random training rows with 2 permutations as the reference (which agrees with itself at
# Spearman 0.997 across seeds): one summary row ranks the columns' mean |SHAP| at Spearman
# 0.959 and gets 4 of the top 5 (credit_history falls from 2nd to 5th, credit_amount rises from
# 8th to 4th), and a single row's ranking agrees at only 0.53 on average. 16 random rows (5
# seeds): 0.987 (worst 0.979), the top 5 right every time, single rows 0.90; 8 rows 0.974 and
# 4.6 of 5; 32 rows no better globally (0.989). k-means medoids (16) did worse than random
# (0.982, single rows 0.86). On 2 CPU cores, 200 rows take 0.9 s with 16 rows, 0.5 s with one.
DEFAULT_BACKGROUND_ROWS = 16
SUMMARY_DESCRIPTION = (
    "one summary row of the training rows (medians, most frequent categories, empty text)"
)
DEFAULT_TOKEN_EVALS = 300
# Masked rows per model pass of explain_rows: big enough that per-call overhead vanishes, small
# enough for memory and for progress and cancellation to come often.
EVAL_BATCH_ROWS = 20_000
# Rows per chunk at most: where a masked row costs a backbone pass (text), 20,000 masked rows
# would be one chunk for thousands of rows, and progress and cancel would wait for its end.
MAX_CHUNK_ROWS = 32


class ExplanationCancelled(Exception):
    """Raised inside :func:`explain_rows` when ``should_stop()`` turns true; not an error."""


@dataclass(frozen=True)
class ExplainBackground:
    """The reference an explanation compared each row with (``explanation.background``)."""

    kind: str  # "sample" (random training rows), "summary" (one summary row), "rows" (given)
    n_rows: int
    seed: int | None  # the sample's random_state; None unless kind is "sample"
    description: str  # a phrase for a page or report: "16 random training rows (seed 0)"


# --------------------------------------------------------------------------- inputs


def _resolve(source) -> tuple[object, Path | None]:
    """The fitted FineTuner, and the run folder when given one."""
    from ..runs.fitted import load_model
    from ..training.estimator import FineTuner

    if isinstance(source, FineTuner):
        if not hasattr(source, "model_"):
            raise RunError("This FineTuner is not fitted: call fit() or load a finished run first.")
        return source, None
    return load_model(source), Path(source)


def _training_rows(run_dir: Path | None, tuner) -> pd.DataFrame:
    from ..runs import folder as runs
    from ..runs.split_file import run_split

    if run_dir is None:
        raise ConfigError(
            "Explaining a FineTuner object needs reference rows: pass background= a DataFrame of "
            "training rows (or explain a run folder, whose training rows are known)."
        )
    if not (run_dir / "data.parquet").is_file():
        raise RunError(
            f"Run {run_dir} has no data.parquet: its training rows are needed as background."
        )
    frame = runs.load_data(run_dir)
    config = runs.load_config(run_dir)
    return frame.iloc[run_split(run_dir, frame, tuner.spec_, config)["train"]]  # as stored


def _check_rows(tuner, rows, what: str = "rows") -> None:
    if not isinstance(rows, pd.DataFrame):
        raise DataError(
            f"{what} must be a pandas DataFrame with the run's columns, not {type(rows).__name__}."
        )
    if rows.empty:
        raise DataError(f"{what} is empty: pass at least one row to explain.")
    tuner.preprocessor_.check_columns(rows)  # raises on missing columns


def _output(spec, class_index) -> tuple[int, str]:
    """The explained output's position and name; binary defaults to the positive class (the event
    the run's metrics and threshold are about), multiclass to the last class."""
    if spec.task == "regression":
        if class_index is not None:
            raise ConfigError(
                f"This is a regression run: the predicted {spec.target!r} is explained; "
                "leave the class unset."
            )
        return 0, spec.target
    classes = list(spec.classes)
    if class_index is None and spec.task == "binary" and spec.positive_class in classes:
        return classes.index(spec.positive_class), spec.positive_class
    if class_index is None:
        return len(classes) - 1, classes[-1]
    if isinstance(class_index, str):
        if class_index not in classes:
            raise ConfigError(
                f"Class {class_index!r} is not one of this run's classes {classes}: "
                "pick one of them."
            )
        return classes.index(class_index), class_index
    if isinstance(class_index, numbers.Integral) and 0 <= class_index < len(classes):
        return int(class_index), classes[int(class_index)]
    raise ConfigError(
        f"Class index {class_index!r} is out of range: use 0-{len(classes) - 1} "
        f"or a label of {classes}."
    )


def summary_row(train: pd.DataFrame, spec) -> pd.DataFrame:
    """One reference row for a table: medians, most frequent categories, the median date, no text.

    Empty text is the reference for free text: "no text" is what a missing text means to the
    model, while a "most frequent" sentence would be arbitrary.
    """
    from ..data.schema import parse_datetime, to_number

    values = {}
    for column in spec.feature_columns:
        series, role = train[column], spec.roles[column]
        if role == "numeric":
            numbers_ = to_number(series)
            finite = numbers_[np.isfinite(numbers_)]
            values[column] = float(np.median(finite)) if finite.size else np.nan
        elif role == "categorical":
            counts = series.value_counts(dropna=False)
            values[column] = counts.index[0] if len(counts) else np.nan
        elif role == "datetime":
            stamps = parse_datetime(series).to_numpy()
            valid = np.flatnonzero(~pd.isna(stamps))
            order = valid[np.argsort(stamps[valid], kind="stable")]
            values[column] = series.iloc[order[len(order) // 2]] if len(order) else np.nan
        else:  # text
            values[column] = ""
    return pd.DataFrame({column: [value] for column, value in values.items()})


def _background(tuner, run_dir: Path | None, background, seed: int):
    """The reference rows and what they are (:class:`ExplainBackground`)."""
    spec = tuner.spec_
    if background is None:
        # Cells: DEFAULT_BACKGROUND_ROWS random training rows (see there). Row text: each
        # background row multiplies the texts the backbone reads, so one summary row.
        background = (
            DEFAULT_BACKGROUND_ROWS if tuner.preprocessor_.encoding_ == "cells" else "summary"
        )
    if isinstance(background, str):
        if background != "summary":
            raise ConfigError(
                f"background={background!r}: use 'summary', a number of training rows or a "
                "DataFrame."
            )
        return summary_row(_training_rows(run_dir, tuner), spec), ExplainBackground(
            "summary", 1, None, SUMMARY_DESCRIPTION
        )
    if isinstance(background, numbers.Integral) and not isinstance(background, bool):
        if not 1 <= background <= MAX_BACKGROUND_ROWS:
            raise ConfigError(
                f"background={background} rows: use 1-{MAX_BACKGROUND_ROWS} "
                "(cost grows with each row)."
            )
        train = _training_rows(run_dir, tuner)
        sample = train.sample(min(int(background), len(train)), random_state=seed)
        return sample, ExplainBackground(
            "sample", len(sample), seed, f"{len(sample)} random training rows (seed {seed})"
        )
    _check_rows(tuner, background, "background")
    if len(background) > MAX_BACKGROUND_ROWS:
        raise ConfigError(
            f"background has {len(background)} rows: every row multiplies the cost, so pass at "
            f"most {MAX_BACKGROUND_ROWS} (e.g. frame.sample(50)), or none for the default."
        )
    n = len(background)
    return background, ExplainBackground("rows", n, None, f"{n} given row{'s' if n != 1 else ''}")


def _permutation_explainer(model_function, reference_codes: np.ndarray, columns, seed: int):
    import shap

    return shap.PermutationExplainer(
        model_function,
        shap.maskers.Independent(reference_codes, max_samples=len(reference_codes)),
        feature_names=columns,
        seed=seed,
    )


# --------------------------------------------------------------------------- public API


def explain_rows(
    source,
    rows: pd.DataFrame,
    *,
    background: pd.DataFrame | int | str | None = None,
    class_index: int | str | None = None,
    n_permutations: int = 1,
    precision: str = "auto",
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    fast: bool = True,
):
    """SHAP values per input column (each text column one feature) for ``rows``: a shap.Explanation.

    ``source`` is a run folder or a fitted FineTuner. The explained output is the probability of
    ``class_index`` (an index into the run's classes or a label; default: a binary run's positive
    class, a multiclass run's last class) or, for regression, the predicted value.

    ``background`` is the reference: an int for that many random training rows (``seed``);
    ``"summary"`` for one summary row of the training rows (medians, most frequent categories,
    empty text); or a DataFrame. None, the default, is :data:`DEFAULT_BACKGROUND_ROWS` (16)
    random training rows for a table read by cells (one summary row changed the columns'
    ranking; see there), and the summary row for a run reading rows as text, where every
    background row multiplies the backbone passes. ``explanation.background`` says which
    (:class:`ExplainBackground`). Values come from shap's permutation algorithm with
    ``n_permutations`` antithetic permutations per row, so ``base_values + values.sum(1)`` equals
    the model output exactly. ``feature_names`` are the columns, ``data`` the rows' values,
    ``output_names`` the class label (or target), and ``.stats`` an :class:`ExplainStats`.

    Masked rows are evaluated in batches of about :data:`EVAL_BATCH_ROWS`: shap runs over a chunk
    of rows against a recorder, the model evaluates every masked row of the chunk in one pass, and
    shap runs again from the same random state on those outputs. With ``fast`` (the default) the
    rows and background are also turned into model inputs once, and masked rows are assembled
    from them by indexing (:class:`InputLayout`); ``fast=False`` is the straightforward way, for
    checks: shap calls the model per row, on frames preprocessed per call. Both give the same
    values.

    ``on_progress(fraction)`` is called after each chunk of rows; ``should_stop()`` is polled
    before each chunk and raises :class:`ExplanationCancelled` when true.
    """
    import shap

    tuner, run_dir = _resolve(source)
    _check_rows(tuner, rows)
    if not isinstance(n_permutations, numbers.Integral) or n_permutations < 1:
        raise ConfigError(f"n_permutations={n_permutations!r}: use 1 or more.")
    output_index, output_name = _output(tuner.spec_, class_index)
    columns = tuner.spec_.feature_columns
    reference, used = _background(tuner, run_dir, background, seed)
    table = CodedTable(pd.concat([rows[columns], reference[columns]], ignore_index=True))
    x, reference_codes = table.codes[: len(rows)], table.codes[len(rows) :]  # (N, M), (B, M)

    model = CachedModel(tuner, output_index=output_index, precision=precision)
    layout = InputLayout(tuner, table) if fast else None
    if fast and not layout.ok:
        logger.warning("explaining through per-sample preprocessing: unknown input layout")
    # shap runs max_evals // (2k + 1) permutations over the k columns that differ from the
    # background; asking for exactly that keeps every row at n_permutations.
    max_evals = [
        n_permutations * (2 * int((reference_codes != row).any(axis=0).sum()) + 1) for row in x
    ]
    values = np.zeros(x.shape, dtype=np.float64)  # (N, M)
    base_values = np.zeros(len(rows), dtype=np.float64)

    def explain(model_function, i: int) -> None:
        result = model_function(x[i : i + 1], max_evals=max_evals[i], silent=True)
        values[i] = result.values[0]
        base_values[i] = np.asarray(result.base_values).reshape(-1)[0]

    def stop() -> None:
        if should_stop is not None and should_stop():
            raise ExplanationCancelled()

    with model.serving():
        predict = (
            FastModel(model, table, layout)
            if fast and layout.ok
            else (lambda codes: model(table.decode(codes)))
        )
        if not fast:  # the straightforward way: shap calls the model once per row
            explainer = _permutation_explainer(predict, reference_codes, columns, seed)
            for i in range(len(rows)):
                stop()
                explain(explainer, i)
                if on_progress is not None:
                    on_progress((i + 1) / len(rows))
        else:
            # Batched: shap first runs over a chunk of rows against a recorder, which notes the
            # masked rows it is asked for; the model then evaluates them all in one pass; shap runs
            # again from the same random state and gets those outputs back. The permutations do
            # not depend on the outputs, so the values equal the straightforward way's.
            recorder = Recorder()
            explainer = _permutation_explainer(recorder, reference_codes, columns, seed)
            per_row = len(reference_codes) * max(max_evals)
            chunk = max(1, min(MAX_CHUNK_ROWS, EVAL_BATCH_ROWS // max(per_row, 1)))
            for start in range(0, len(rows), chunk):
                stop()
                chunk_rows = range(start, min(start + chunk, len(rows)))
                state = np.random.get_state()  # shap draws its permutations from numpy's RNG
                recorder.record()
                for i in chunk_rows:
                    explain(explainer, i)
                recorder.evaluate(predict)
                np.random.set_state(state)
                for i in chunk_rows:
                    explain(explainer, i)
                if on_progress is not None:
                    on_progress((chunk_rows[-1] + 1) / len(rows))
    explanation = shap.Explanation(
        values,
        base_values=base_values,
        data=rows[columns].to_numpy(dtype=object),
        feature_names=columns,
        output_names=output_name,
        instance_names=list(rows.index),
    )
    explanation.stats = model.stats()
    explanation.background = used
    logger.info("explained %d rows against %s: %s", len(rows), used.description, explanation.stats)
    return explanation


def explain_tokens(
    source,
    row: pd.DataFrame,
    text_column: str,
    *,
    class_index: int | str | None = None,
    max_evals: int = DEFAULT_TOKEN_EVALS,
    precision: str = "auto",
):
    """SHAP values per token of one row's text column, the other columns held at the row's values.

    Same output scale as :func:`explain_rows` (probability of ``class_index`` or the predicted
    value). Tokens come from the backbone's tokenizer through ``shap.maskers.Text``; the base value
    is the output with the whole text masked, so ``base_values + values.sum()`` is the row's output.
    ``.data`` holds the tokens, ``.stats`` an :class:`ExplainStats`.
    """
    import shap

    tuner, _ = _resolve(source)
    _check_rows(tuner, row, "row")
    if len(row) != 1:
        raise DataError(f"row has {len(row)} rows: pass exactly one, e.g. frame.iloc[[i]].")
    text_columns = tuner.spec_.columns("text")
    if text_column not in text_columns:
        raise DataError(
            f"{text_column!r} is not a text column of this run; its text columns are "
            f"{text_columns or 'none'}: pick one of them."
        )
    text = row[text_column].iloc[0]
    if not isinstance(text, str) or not text.strip():
        raise DataError(
            f"Row {row.index[0]!r} has no text in {text_column!r}: pick a row with text."
        )
    output_index, output_name = _output(tuner.spec_, class_index)
    context = row[tuner.spec_.feature_columns].reset_index(drop=True)
    model = CachedModel(tuner, output_index=output_index, precision=precision)

    def predict(texts) -> np.ndarray:
        frame = context.iloc[np.zeros(len(texts), dtype=np.int64)].reset_index(drop=True)  # (N, M)
        frame[text_column] = list(texts)
        return model(frame)

    explainer = shap.Explainer(predict, shap.maskers.Text(tuner.tokenizer_), algorithm="partition")
    with model.serving():
        explanation = explainer([text], max_evals=max_evals, silent=True)
    explanation.output_names = output_name
    explanation.stats = model.stats()
    logger.info("explained the tokens of %r: %s", text_column, explanation.stats)
    return explanation


def warm_up_explanations() -> None:
    """Compile shap's numba kernels now so the first explanation is not slower.

    It takes seconds, once per process. A dashboard can call this in a background thread at
    start-up; it touches no model.
    """
    import shap

    explainer = shap.PermutationExplainer(
        lambda x: x.sum(axis=1), shap.maskers.Independent(np.zeros((1, 2))), seed=0
    )
    explainer(np.ones((1, 2)), max_evals=5, silent=True)
    text_explainer = shap.Explainer(
        lambda texts: np.array([len(t) for t in texts], dtype=float),
        shap.maskers.Text(),
        algorithm="partition",
    )
    text_explainer(["warm up the token kernels"], max_evals=20, silent=True)


def explanation_frame(explanation) -> pd.DataFrame:
    """SHAP values of :func:`explain_rows` as a table, for CSV export.

    One line per row: ``row`` (the input's index), one column per input column, ``base_value`` and
    ``prediction`` (= base_value + the row's SHAP values, the model's output).
    """
    names = explanation.feature_names
    # Token explanations carry one list of tokens per row instead of one name per column.
    if (
        names is None
        or not all(isinstance(name, str) for name in names)
        or np.ndim(explanation.values) != 2
    ):
        raise DataError(
            "explanation_frame needs a per-column explanation from explain_rows (rows x columns)."
        )
    values = np.asarray(explanation.values, dtype=np.float64)
    base_values = np.asarray(explanation.base_values, dtype=np.float64).reshape(-1)
    frame = pd.DataFrame(values, columns=list(names))
    rows = explanation.instance_names
    frame.insert(0, "row", list(rows) if rows is not None else range(len(frame)))
    frame["base_value"] = base_values
    frame["prediction"] = base_values + values.sum(axis=1)
    return frame
