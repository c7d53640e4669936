"""The tree model: LightGBM on a table's features, and its blend with the fine-tuned network.

One home for how trees read a table (:class:`TreeFeatures`): numbers as numbers, categories as
integer codes of the training categories (LightGBM splits them natively; an unseen or missing
value is missing), dates through the same month/weekday parts the network reads, and, for the
reference model only, free text as TF-IDF (the shipped tree model leaves text to the network).

:class:`TreeModel` fits LightGBM on the training rows with early stopping on the validation rows
and answers in the network's output space: one log-probability per class for classification
(softmax of them gives the probabilities, so they are valid logits) and the *scaled* target
(``(y - mean) / std``, as the Preprocessor scales it) for regression. :func:`fit_blend` picks
the one weight that mixes the two on validation rows; :func:`apply_blend` applies it.

Nothing is pickled: the booster is saved in LightGBM's own text format (``trees.txt``) and
everything else as JSON (``trees.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.preprocess import DATE_PART_NAMES, date_parts
from ..data.schema import TableSpec, target_labels, to_number
from ..errors import DataError, RunError

TREE_FILE = "trees.txt"
STATE_FILE = "trees.json"
STATE_FORMAT = 1

MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 100
NO_VAL_ROUNDS = 300  # rounds when there are no validation rows to stop on
BLEND_STEPS = 21  # blend weights 0, 0.05, ..., 1

# Chosen by stratified 5-fold CV (x2 repeats) on the sample tables credit_risk, card_fraud and
# market_daily, each fold's training part split again for early stopping: small trees (7 leaves)
# and categories allowed to split on 20 rows (LightGBM's 100 silences them on small tables) beat
# 15-31 leaves by 0.007-0.02 AUC and 0.002-0.02 log loss. Unweighted classes keep probabilities
# calibrated (the blend scores log loss) and ranked better: balanced weights cost card_fraud 0.02
# AUC. LightGBM's defaults otherwise. A fit on 30,000 rows takes seconds on two cores.
BASE_PARAMS: dict = {
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 10,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "min_data_per_group": 20,
    "seed": 0,
    "deterministic": True,
    "force_col_wise": True,
    "verbosity": -1,
}
# With thousands of sparse TF-IDF columns a smaller column sample per tree does better (market
# headlines: +0.006 AUC, -0.003 log loss); without text 0.8 does (card_fraud: +0.003 AUC).
TEXT_PARAMS: dict = {"feature_fraction": 0.5}

TEXT_TFIDF = {"ngram_range": (1, 2), "min_df": 2, "max_features": 20_000}


def default_params(task: str, n_classes: int = 0, *, text: bool = False) -> dict:
    """LightGBM's parameters for a task (and TF-IDF text or not): the defaults and the objective."""
    if task == "regression":
        objective = {"objective": "regression", "metric": "l2"}
    elif task == "binary":
        objective = {"objective": "binary", "metric": "binary_logloss"}
    else:
        objective = {"objective": "multiclass", "metric": "multi_logloss", "num_class": n_classes}
    return {**BASE_PARAMS, **(TEXT_PARAMS if text else {}), **objective}


def has_tree_features(spec: TableSpec, *, text: bool = False) -> bool:
    """Whether trees have anything to read: a numeric, categorical or date column (or text)."""
    roles = ("numeric", "categorical", "datetime") + (("text",) if text else ())
    return any(spec.columns(role) for role in roles)


# --------------------------------------------------------------------------- features


@dataclass
class TreeFeatures:
    """How trees read a table, fitted on the training rows; JSON in, JSON out."""

    numeric: list[str]
    categorical: list[str]
    datetime: list[str]
    text: list[str] = field(default_factory=list)  # empty unless fitted with text=True
    categories: dict[str, list[str]] = field(default_factory=dict)  # column -> training values
    vocabulary: list[str] = field(default_factory=list)  # TF-IDF terms, in column order
    idf: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, spec: TableSpec, train: pd.DataFrame, *, text: bool = False) -> TreeFeatures:
        features = cls(
            numeric=spec.columns("numeric"),
            categorical=spec.columns("categorical"),
            datetime=spec.columns("datetime"),
            text=spec.columns("text") if text else [],
        )
        _check_columns(train, features.columns)
        for column in features.categorical:
            values = _category_strings(train[column]).dropna()
            features.categories[column] = sorted(values.unique().tolist())
        if features.text:
            features._fit_text(_joined_text(train, features.text))
        return features

    @property
    def columns(self) -> list[str]:
        """The table columns read, in feature order."""
        return self.numeric + self.categorical + self.datetime + self.text

    @property
    def names(self) -> list[str]:
        """One readable name per feature column of :meth:`transform`'s matrix."""
        names = list(self.numeric) + list(self.categorical)
        for column in self.datetime:
            names += [f"{column} ({part})" for part in DATE_PART_NAMES]
        return names + [f"text: {term}" for term in self.vocabulary]

    @property
    def categorical_index(self) -> list[int]:
        """Positions of the categorical codes in the feature matrix (for LightGBM)."""
        start = len(self.numeric)
        return list(range(start, start + len(self.categorical)))

    def transform(self, frame: pd.DataFrame):
        """The feature matrix: dense float64 (N, F), or CSR when TF-IDF text is part of it."""
        _check_columns(frame, self.columns)
        blocks = [to_number(frame[c]) for c in self.numeric]
        blocks += [self._codes(frame[c]) for c in self.categorical]
        dense = np.stack(blocks, axis=1) if blocks else np.zeros((len(frame), 0))
        if self.datetime:
            dense = np.hstack([dense] + [date_parts(frame[c]) for c in self.datetime])
        dense = dense.astype(np.float64)
        if not self.vocabulary:
            return dense
        import scipy.sparse as sp

        text = self._tfidf(_joined_text(frame, self.text))
        return sp.hstack([sp.csr_matrix(dense), text]).tocsr()

    def _codes(self, series: pd.Series) -> np.ndarray:
        codes = pd.Categorical(
            _category_strings(series), categories=self.categories[series.name]
        ).codes
        return np.where(codes < 0, np.nan, codes).astype(np.float64)  # unseen or missing -> NaN

    def _fit_text(self, documents: pd.Series) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(sublinear_tf=True, **TEXT_TFIDF)
        try:
            vectorizer.fit(documents)
        except ValueError:  # no term in two training rows: the text adds nothing to trees
            return
        self.vocabulary = vectorizer.get_feature_names_out().tolist()
        self.idf = vectorizer.idf_.tolist()

    def _tfidf(self, documents: pd.Series):
        """sklearn's TfidfVectorizer transform (sublinear tf, l2 rows) from the saved state."""
        import scipy.sparse as sp
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        counts = CountVectorizer(
            vocabulary=self.vocabulary, ngram_range=TEXT_TFIDF["ngram_range"]
        ).transform(documents)
        counts = counts.astype(np.float64)
        counts.data = np.log(counts.data) + 1.0
        weighted = counts @ sp.diags(np.asarray(self.idf))
        return normalize(sp.csr_matrix(weighted), norm="l2", copy=False)

    def to_dict(self) -> dict:
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "datetime": list(self.datetime),
            "text": list(self.text),
            "categories": {c: list(v) for c, v in self.categories.items()},
            "vocabulary": list(self.vocabulary),
            "idf": list(self.idf),
            "names": self.names,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> TreeFeatures:
        return cls(
            numeric=list(raw["numeric"]),
            categorical=list(raw["categorical"]),
            datetime=list(raw["datetime"]),
            text=list(raw.get("text", [])),
            categories={c: list(v) for c, v in raw.get("categories", {}).items()},
            vocabulary=list(raw.get("vocabulary", [])),
            idf=[float(v) for v in raw.get("idf", [])],
        )


def _category_strings(series: pd.Series) -> pd.Series:
    """Category values as strings (1.0 reads as 1); missing stays missing."""
    return target_labels(series)


def _joined_text(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    text = frame[columns[0]].fillna("").astype(str)
    for column in columns[1:]:
        text = text + " " + frame[column].fillna("").astype(str)
    return text


def _check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"The table lacks column(s) {', '.join(map(repr, missing))} that the tree model reads: "
            "add them (empty values are allowed)."
        )


# --------------------------------------------------------------------------- the model


class TreeModel:
    """LightGBM on :class:`TreeFeatures`, early-stopped on validation rows.

    ``text``: read free-text columns as TF-IDF (the LightGBM reference does; the shipped tree
    model leaves text to the network). ``target_stats``: regression's ``{"mean", "std"}`` as the
    Preprocessor fitted them; by default computed from the training rows the same way.
    ``class_weight``: "none" (default: the probabilities stay calibrated, which the blend's log
    loss needs) or "balanced".
    """

    def __init__(
        self,
        spec: TableSpec,
        *,
        text: bool = False,
        params: dict | None = None,
        max_rounds: int = MAX_ROUNDS,
        early_stopping_rounds: int = EARLY_STOPPING_ROUNDS,
        class_weight: str = "none",
        target_stats: dict[str, float] | None = None,
    ):
        if class_weight not in ("none", "balanced"):
            raise ValueError(f"class_weight is {class_weight!r}: use none or balanced.")
        self.spec = spec
        self.text = text
        reads_text = text and bool(spec.columns("text"))
        defaults = default_params(spec.task, len(spec.classes), text=reads_text)
        self.params = {**defaults, **(params or {})}
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.class_weight = class_weight
        self.target_stats = dict(target_stats) if target_stats else None
        self.features_: TreeFeatures | None = None
        self.booster_ = None
        self.best_iteration: int = 0

    @property
    def n_outputs(self) -> int:
        return 1 if self.spec.task == "regression" else len(self.spec.classes)

    # ----------------------------------------------------------------- fit

    def fit(self, train: pd.DataFrame, val: pd.DataFrame | None = None) -> TreeModel:
        import lightgbm as lgb

        if self.spec.task == "regression" and self.target_stats is None:
            y = pd.to_numeric(train[self.spec.target], errors="coerce").to_numpy(dtype=float)
            self.target_stats = {"mean": float(np.nanmean(y)), "std": float(np.nanstd(y)) or 1.0}
        self.features_ = TreeFeatures.fit(self.spec, train, text=self.text)
        if not self.features_.names:
            raise DataError(
                "The tree model has no feature to read: the table has only text columns"
                + (" and no term repeats in the training rows." if self.text else ".")
            )
        x_train, y_train = self._labelled(train)
        if len(y_train) == 0:
            raise DataError(f"No training row has a usable {self.spec.target!r}: nothing to fit.")
        categorical = self.features_.categorical_index or "auto"
        train_set = lgb.Dataset(
            x_train,
            y_train,
            weight=self._weights(y_train),
            categorical_feature=categorical,
            free_raw_data=False,
        )
        x_val, y_val = self._labelled(val) if val is not None else (None, np.zeros(0))
        if len(y_val):
            val_set = lgb.Dataset(
                x_val, y_val, reference=train_set, categorical_feature=categorical
            )
            self.booster_ = lgb.train(
                self.params,
                train_set,
                num_boost_round=self.max_rounds,
                valid_sets=[val_set],
                valid_names=["val"],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
            self.best_iteration = int(self.booster_.best_iteration or self.max_rounds)
        else:
            rounds = min(NO_VAL_ROUNDS, self.max_rounds)
            self.booster_ = lgb.train(self.params, train_set, num_boost_round=rounds)
            self.best_iteration = rounds
        return self

    def _labelled(self, frame: pd.DataFrame):
        """The features and encoded targets of the rows whose target is usable."""
        y = encode_targets(self.spec, frame[self.spec.target])
        keep = np.isfinite(y) if self.spec.task == "regression" else y >= 0
        if self.spec.task == "regression":
            y = (y - self.target_stats["mean"]) / self.target_stats["std"]
        x = self.features_.transform(frame)
        if not keep.all():
            x = x[np.flatnonzero(keep)]
        return x, y[keep]

    def _weights(self, y: np.ndarray) -> np.ndarray | None:
        if self.spec.task == "regression" or self.class_weight == "none":
            return None
        counts = np.bincount(y.astype(int), minlength=len(self.spec.classes)).astype(float)
        per_class = len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1.0))
        return per_class[y.astype(int)]

    # ----------------------------------------------------------------- outputs

    def _check_fitted(self) -> None:
        if self.booster_ is None or self.features_ is None:
            raise RunError("The tree model is not fitted: call fit(train, val) or load(directory).")

    def raw_outputs(self, frame: pd.DataFrame) -> np.ndarray:
        """(N, n_outputs) in the network's space: log-probabilities per class, or the scaled target.

        Classification: ``softmax(raw_outputs) == probabilities`` (they are log-softmax logits).
        Regression: one column of ``(prediction - mean) / std`` with ``target_stats``.
        """
        self._check_fitted()
        return self.raw_outputs_of_features(self.features_.transform(frame))

    def raw_outputs_of_features(self, x) -> np.ndarray:
        """:meth:`raw_outputs` from inputs already built by ``features_`` (dense or CSR)."""
        margin = np.asarray(
            self.booster_.predict(x, num_iteration=self.best_iteration, raw_score=True),
            dtype=np.float64,
        )
        if self.spec.task == "regression":
            return margin.reshape(-1, 1)
        if self.spec.task == "binary":
            # log p(class 1) = -softplus(-m), log p(class 0) = -softplus(m)
            return np.stack([-np.logaddexp(0.0, margin), -np.logaddexp(0.0, -margin)], axis=1)
        return log_softmax(margin.reshape(x.shape[0], -1))

    def outputs_to_predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C), or predicted values (N,) in the target's units."""
        if self.spec.task == "regression":
            return outputs[:, 0] * self.target_stats["std"] + self.target_stats["mean"]
        return np.exp(log_softmax(outputs))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities (N, C), or values (N,): what the baselines return."""
        return self.outputs_to_predictions(self.raw_outputs(frame))

    def settings(self) -> dict:
        """What a benchmark or report prints: parameters, trees kept, features."""
        return {
            "params": dict(self.params),
            "best_iteration": int(self.best_iteration),
            "max_rounds": self.max_rounds,
            "early_stopping_rounds": self.early_stopping_rounds,
            "class_weight": self.class_weight,
            "n_features": len(self.features_.names) if self.features_ else 0,
            "text": self.text,
        }

    # ----------------------------------------------------------------- save / load

    def save(self, directory: str | Path) -> None:
        """``trees.txt`` (LightGBM's text format, best trees only) and ``trees.json``."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        text = self.booster_.model_to_string(num_iteration=self.best_iteration)
        (directory / TREE_FILE).write_text(text, encoding="utf-8")
        state = {
            "format": STATE_FORMAT,
            "spec": self.spec.to_dict(),
            "features": self.features_.to_dict(),
            "target_stats": self.target_stats,
            **self.settings(),
        }
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> TreeModel:
        import lightgbm as lgb

        directory = Path(directory)
        try:
            state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
            text = (directory / TREE_FILE).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise RunError(
                f"The tree model in {str(directory)!r} cannot be read ({exc}): retrain the run."
            ) from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise RunError(
                f"The tree model in {str(directory)!r} has an unknown format: retrain the run."
            )
        model = cls(
            TableSpec.from_dict(state["spec"]),
            text=bool(state["text"]),
            params=state["params"],
            max_rounds=int(state["max_rounds"]),
            early_stopping_rounds=int(state["early_stopping_rounds"]),
            class_weight=state["class_weight"],
            target_stats=state["target_stats"],
        )
        model.features_ = TreeFeatures.from_dict(state["features"])
        model.booster_ = lgb.Booster(model_str=text)
        model.best_iteration = int(state["best_iteration"])
        return model


def encode_targets(spec: TableSpec, y: pd.Series) -> np.ndarray:
    """Regression: floats (NaN where unusable). Classification: class index, -1 where unknown."""
    if spec.task == "regression":
        values = pd.to_numeric(y, errors="coerce").to_numpy(dtype=float, copy=True)
        values[~np.isfinite(values)] = np.nan
        return values
    index = {label: i for i, label in enumerate(spec.classes)}
    return target_labels(y).map(index).fillna(-1).to_numpy(dtype=int)


# --------------------------------------------------------------------------- the blend


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _blended(task: str, weight: float, network: np.ndarray, trees: np.ndarray) -> np.ndarray:
    if task == "regression":
        return weight * network + (1.0 - weight) * trees
    # A weighted geometric mean of the two distributions, renormalised.
    return log_softmax(weight * log_softmax(network) + (1.0 - weight) * log_softmax(trees))


def _loss(task: str, outputs: np.ndarray, y: np.ndarray) -> float:
    if task == "regression":
        return float(np.mean((outputs[:, 0] - y) ** 2))
    return float(-np.mean(outputs[np.arange(len(y)), y]))  # outputs are log-probabilities


def _as_outputs(task: str, values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if task == "regression" and values.ndim == 1:
        values = values.reshape(-1, 1)
    return values


def fit_blend(
    task: str,
    network: np.ndarray,
    trees: np.ndarray,
    y: np.ndarray,
    *,
    steps: int = BLEND_STEPS,
) -> dict:
    """The weight ``w`` of the network in the blend that scores best on validation rows.

    ``network`` and ``trees`` are validation outputs in the network's space: logits (N, C) for
    classification (blended as ``w * log_softmax(net) + (1 - w) * log_softmax(trees)``, scored by
    log loss) or the scaled target (N, 1) for regression (``w * net + (1 - w) * trees``, scored
    by mean squared error against ``y`` in the same scaled space). ``y``: class indices, or
    scaled targets. Rows whose target is unusable (-1, NaN) are left out.

    The validation rows also stopped the trees (and chose the network's best epoch), so the
    blend's validation loss is slightly optimistic; only one scalar is fitted here, on a grid
    that includes 0 and 1, so the blend is never worse on these rows than either part alone.
    Ties go to the larger weight (the network).
    """
    network, trees = _as_outputs(task, network), _as_outputs(task, trees)
    if network.shape != trees.shape:
        raise ValueError(f"Blend outputs differ in shape: {network.shape} vs {trees.shape}.")
    y = np.asarray(y)
    if task == "regression":
        y = y.astype(np.float64)
        keep = np.isfinite(y)
    else:
        keep = (y >= 0) & (y < network.shape[1])
        y = np.where(keep, y, 0).astype(int)
    network, trees, y = network[keep], trees[keep], y[keep]
    if len(y) == 0:
        raise ValueError("No validation row with a usable target: the blend cannot be fitted.")
    weights = np.linspace(1.0, 0.0, steps)  # network first, so ties keep the network
    losses = [_loss(task, _blended(task, w, network, trees), y) for w in weights]
    best = int(np.argmin(losses))
    return {
        "weight": round(float(weights[best]), 6),
        "task": task,
        "loss": "mse" if task == "regression" else "log_loss",
        "val_loss_network": losses[0],
        "val_loss_trees": losses[-1],
        "val_loss_blend": losses[best],
        "rows": int(len(y)),
    }


def apply_blend(blend: dict, network: np.ndarray, trees: np.ndarray) -> np.ndarray:
    """Blended outputs in the network's space (log-probabilities, or the scaled target (N, 1))."""
    task = blend["task"]
    weight = float(blend["weight"])
    if not (0.0 <= weight <= 1.0 and math.isfinite(weight)):
        raise ValueError(f"Blend weight {weight!r} is not in [0, 1].")
    return _blended(task, weight, _as_outputs(task, network), _as_outputs(task, trees))
