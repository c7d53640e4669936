"""Explanations: SHAP values per input column and per token of a text, for a finished run.

Built on shap's Explainer -> Explanation flow, with the model wrapped as a prediction function over
rows. What makes it fast enough to use live: the backbone, the only expensive part, runs once per
distinct serialised text. Masking a numeric column, or meeting a combination of categorical values
seen before, only reruns the small fusion head on a cached pooled vector.

The output explained is the probability of one class (classification) or the predicted value in
the target's units (regression), the same scale for :func:`explain_rows` and
:func:`explain_tokens`, so a dashboard can draw both in one picture.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, RunError

logger = logging.getLogger(__name__)

MAX_BACKGROUND_ROWS = 200  # every background row multiplies the number of model rows
DEFAULT_CACHE_SIZE = 50_000  # pooled vectors (~1.5 KB each for a 384-wide backbone)
DEFAULT_TOKEN_EVALS = 300


class ExplanationCancelled(Exception):
    """Raised inside :func:`explain_rows` when ``should_stop()`` turns true; not an error."""


@dataclass(frozen=True)
class ExplainStats:
    """What an explanation cost. Backbone passes are the expensive part; model rows are cheap."""

    model_rows: int  # rows the prediction function evaluated (masked samples x background rows)
    backbone_passes: int  # distinct texts actually sent through the backbone
    seconds: float
    precision: str  # "bf16" or "fp32": the backbone's compute type


# --------------------------------------------------------------------------- the cached model


def _backbone_dtype(device, precision: str):
    from ..training.devices import autocast_dtype

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"Precision {precision!r} is unknown: use auto, fp32, bf16 or fp16.")
    return autocast_dtype(device, precision)


class CachedModel:
    """The run's model as a function of table rows, with backbone outputs cached by text.

    ``model(frame) -> (N,)`` returns the explained output per row. The pooled backbone vector of
    each serialised text is kept in an LRU dict, so only texts never seen in this session reach
    the backbone; those are deduplicated and run in length-sorted batches.
    """

    def __init__(
        self,
        tuner,
        *,
        output_index: int,
        precision: str = "auto",
        batch_size: int = 32,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ):
        import torch

        from ..training.devices import resolve_device

        self.tuner = tuner
        self.output_index = output_index
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.device = resolve_device(tuner.config.train.device)
        self.dtype = _backbone_dtype(self.device, precision)
        self.precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        self.model_rows = 0
        self.backbone_passes = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._started = time.perf_counter()

    @contextlib.contextmanager
    def serving(self) -> Iterator[CachedModel]:
        """Put the model on the device in eval mode for the session, and back afterwards."""
        model = self.tuner.model_
        was_training = model.training
        model.to(self.device).eval()
        try:
            yield self
        finally:
            model.train(was_training)
            model.to("cpu")

    def stats(self) -> ExplainStats:
        return ExplainStats(
            model_rows=self.model_rows,
            backbone_passes=self.backbone_passes,
            seconds=time.perf_counter() - self._started,
            precision=self.precision,
        )

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        import torch

        pre, model = self.tuner.preprocessor_, self.tuner.model_
        pooled = (
            torch.from_numpy(self.embed(pre.texts(frame))).to(self.device)  # (N, d)
            if pre.reads_row_text
            else None
        )
        numeric = torch.from_numpy(pre.numeric(frame)).to(self.device)  # (N, d_numeric_in)
        cells = pre.cells(frame)
        cells = None if cells is None else torch.from_numpy(cells).to(self.device)
        with torch.no_grad():
            # Cached pooled vectors instead of a backbone pass; only the fusion head runs (cells
            # are looked up in the model's own table, encoded once per session).
            outputs = model.fuse(pooled, numeric, cells).float().cpu().numpy()  # (N, n_outputs)
        outputs = self.tuner.blend_outputs(frame, outputs)  # the trees' part, when the run has it
        self.model_rows += len(frame)
        predictions = self.tuner.outputs_to_predictions(outputs).astype(np.float64)
        return predictions if predictions.ndim == 1 else predictions[:, self.output_index]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Pooled backbone vectors (N, d) for texts, running the backbone only on unseen ones."""
        found: dict[str, np.ndarray] = {}
        missing = []
        for text in dict.fromkeys(texts):  # dedupe, keep order
            vector = self._cache.get(text)
            if vector is None:
                missing.append(text)
            else:
                self._cache.move_to_end(text)
                found[text] = vector
        if missing:
            found.update(self._run_backbone(missing))
        return np.stack([found[text] for text in texts]).astype(np.float32, copy=False)

    def _run_backbone(self, texts: list[str]) -> dict[str, np.ndarray]:
        import torch

        from ..training.loop import EncodedRows, iterate_batches

        tuner = self.tuner
        ids = tuner.tokenizer_(texts, truncation=True, max_length=tuner.max_length_)["input_ids"]
        rows = EncodedRows(
            input_ids=ids, numeric=np.zeros((len(ids), 0), dtype=np.float32), targets=None
        )
        autocast = (
            contextlib.nullcontext()
            if self.dtype is None
            else torch.autocast(device_type=self.device.type, dtype=self.dtype)
        )
        vectors: dict[str, np.ndarray] = {}
        # shuffle=False sorts by length: batches carry little padding.
        for index, batch in iterate_batches(
            rows, self.batch_size, pad_id=tuner.pad_id_, shuffle=False
        ):
            with torch.no_grad(), autocast:
                pooled = tuner.model_.embed_text(
                    batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
                )  # (B, d)
            pooled = pooled.float().cpu().numpy()
            for row, i in enumerate(index):
                vectors[texts[i]] = pooled[row]
        self.backbone_passes += len(texts)
        for text, vector in vectors.items():
            self._cache[text] = vector
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vectors


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


def _background(tuner, run_dir: Path | None, background, seed: int) -> pd.DataFrame:
    spec = tuner.spec_
    if background is None:
        return summary_row(_training_rows(run_dir, tuner), spec)
    if isinstance(background, numbers.Integral) and not isinstance(background, bool):
        if not 1 <= background <= MAX_BACKGROUND_ROWS:
            raise ConfigError(
                f"background={background} rows: use 1-{MAX_BACKGROUND_ROWS} "
                "(cost grows with each row)."
            )
        train = _training_rows(run_dir, tuner)
        return train.sample(min(int(background), len(train)), random_state=seed)
    _check_rows(tuner, background, "background")
    if len(background) > MAX_BACKGROUND_ROWS:
        raise ConfigError(
            f"background has {len(background)} rows: every row multiplies the cost, so pass at "
            f"most {MAX_BACKGROUND_ROWS} (e.g. frame.sample(50)), or none for one summary row."
        )
    return background


class _CodedTable:
    """Columns as integer codes, so shap's numeric maskers can mix a row with background rows."""

    def __init__(self, frame: pd.DataFrame):
        self.columns = list(frame.columns)
        self.uniques = []
        codes = []
        for column in self.columns:
            column_codes, uniques = pd.factorize(frame[column], use_na_sentinel=False)
            codes.append(column_codes)
            self.uniques.append(uniques)
        self.codes = np.stack(codes, axis=1).astype(np.float64)  # (N, M)

    def decode(self, codes: np.ndarray) -> pd.DataFrame:
        codes = codes.astype(np.int64)  # (N, M)
        return pd.DataFrame(
            {
                c: u.take(codes[:, j])
                for j, (c, u) in enumerate(zip(self.columns, self.uniques, strict=True))
            }
        )


# --------------------------------------------------------------------------- public API


def explain_rows(
    source,
    rows: pd.DataFrame,
    *,
    background: pd.DataFrame | int | None = None,
    class_index: int | str | None = None,
    n_permutations: int = 1,
    precision: str = "auto",
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """SHAP values per input column (each text column one feature) for ``rows``: a shap.Explanation.

    ``source`` is a run folder or a fitted FineTuner. The explained output is the probability of
    ``class_index`` (an index into the run's classes or a label; default: a binary run's positive
    class, a multiclass run's last class) or, for regression, the predicted value.

    ``background`` is the reference: None for one summary row of the training rows (medians, most
    frequent categories, empty text); an int for that many random training rows; or a DataFrame.
    Each background row multiplies the cost. Values come from shap's permutation algorithm with
    ``n_permutations`` antithetic permutations per row, so ``base_values + values.sum(1)`` equals
    the model output exactly. ``feature_names`` are the columns, ``data`` the rows' values,
    ``output_names`` the class label (or target), and ``.stats`` an :class:`ExplainStats`.

    ``on_progress(fraction)`` is called after each row; ``should_stop()`` is polled before each
    row and raises :class:`ExplanationCancelled` when true.
    """
    import shap

    tuner, run_dir = _resolve(source)
    _check_rows(tuner, rows)
    if not isinstance(n_permutations, numbers.Integral) or n_permutations < 1:
        raise ConfigError(f"n_permutations={n_permutations!r}: use 1 or more.")
    output_index, output_name = _output(tuner.spec_, class_index)
    columns = tuner.spec_.feature_columns
    reference = _background(tuner, run_dir, background, seed)
    table = _CodedTable(pd.concat([rows[columns], reference[columns]], ignore_index=True))
    x, reference_codes = table.codes[: len(rows)], table.codes[len(rows) :]  # (N, M), (B, M)

    model = CachedModel(tuner, output_index=output_index, precision=precision)
    explainer = shap.PermutationExplainer(
        lambda codes: model(table.decode(codes)),
        shap.maskers.Independent(reference_codes, max_samples=len(reference_codes)),
        feature_names=columns,
        seed=seed,
    )
    values = np.zeros(x.shape, dtype=np.float64)  # (N, M)
    base_values = np.zeros(len(rows), dtype=np.float64)
    with model.serving():
        for i in range(len(rows)):
            if should_stop is not None and should_stop():
                raise ExplanationCancelled()
            # shap runs max_evals // (2k + 1) permutations over the k columns that differ from the
            # background; asking for exactly that keeps every row at n_permutations.
            n_varying = int((reference_codes != x[i]).any(axis=0).sum())
            result = explainer(
                x[i : i + 1], max_evals=n_permutations * (2 * n_varying + 1), silent=True
            )
            values[i] = result.values[0]
            base_values[i] = np.asarray(result.base_values).reshape(-1)[0]
            if on_progress is not None:
                on_progress((i + 1) / len(rows))
    explanation = shap.Explanation(
        values,
        base_values=base_values,
        data=rows[columns].to_numpy(dtype=object),
        feature_names=columns,
        output_names=output_name,
        instance_names=list(rows.index),
    )
    explanation.stats = model.stats()
    logger.info("explained %d rows: %s", len(rows), explanation.stats)
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
