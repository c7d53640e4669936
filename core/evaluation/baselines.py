"""Reference models on the same split, so a user sees whether fine-tuning paid off.

LightGBM for tables (numeric + categorical + date parts + TF-IDF of any text columns, early-stopped
on the validation rows, through the same code as the run's tree model); TF-IDF + logistic
regression for tables whose only features are text; and always the majority-class (or mean)
predictor, the floor any model must clear. Each returns its outputs on the val and test rows:
class probabilities (N, C) or predicted values (N,).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.schema import TableSpec, target_labels
from ..model import trees as _trees
from ..stats.metrics import classification_metrics, regression_metrics

# The reference's fixed LightGBM settings (the objective follows the task; TEXT overrides them
# when TF-IDF columns are part of the features); early stopping picks the number of trees.
LIGHTGBM_PARAMS = {
    **_trees.BASE_PARAMS,
    "max_rounds": _trees.MAX_ROUNDS,
    "early_stopping_rounds": _trees.EARLY_STOPPING_ROUNDS,
}
LIGHTGBM_TEXT_PARAMS = dict(_trees.TEXT_PARAMS)


def _text_matrix(parts: dict[str, pd.DataFrame], columns: list[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    def joined(frame):
        return frame[columns].fillna("").astype(str).agg(" ".join, axis=1)

    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, max_features=20_000, sublinear_tf=True
    )
    vectorizer.fit(joined(parts["train"]))
    return {name: vectorizer.transform(joined(frame)) for name, frame in parts.items()}


def _targets(spec: TableSpec, frame: pd.DataFrame) -> np.ndarray:
    if spec.task == "regression":
        return pd.to_numeric(frame[spec.target], errors="coerce").to_numpy(dtype=float)
    index = {label: i for i, label in enumerate(spec.classes)}
    return target_labels(frame[spec.target]).map(index).to_numpy(dtype=int)


def _score(spec: TableSpec, y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    if spec.task == "regression":
        return regression_metrics(y, predictions)
    return classification_metrics(y, predictions, spec.positive_index)


Outputs = dict[str, np.ndarray]  # split name ("val", "test") -> probabilities or values


def _full_proba(model, x, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class, including ones absent from training."""
    proba = model.predict_proba(x)
    full = np.zeros((proba.shape[0], n_classes))
    full[:, model.classes_.astype(int)] = proba
    return full


def tfidf_logistic(spec: TableSpec, parts: dict[str, pd.DataFrame]) -> Outputs:
    """TF-IDF (word 1-2 grams) + logistic regression (ridge for regression) over text columns."""
    from sklearn.linear_model import LogisticRegression, Ridge

    columns = spec.columns("text") + spec.columns("categorical")
    x = _text_matrix(parts, columns)
    y = {name: _targets(spec, frame) for name, frame in parts.items()}
    if spec.task == "regression":
        model = Ridge(alpha=1.0).fit(x["train"], y["train"])
        return {name: model.predict(x[name]) for name in ("val", "test")}
    model = LogisticRegression(max_iter=2000, C=4.0, class_weight="balanced").fit(
        x["train"], y["train"]
    )
    return {name: _full_proba(model, x[name], len(spec.classes)) for name in ("val", "test")}


def lightgbm_reference(spec: TableSpec, parts: dict[str, pd.DataFrame]) -> tuple[Outputs, dict]:
    """LightGBM's val and test outputs, and its settings (parameters, trees kept by early stopping).

    The same features and fitting as the tree model a run ships (:mod:`core.model.trees`), plus
    TF-IDF of any text columns: numeric, categorical (native), date parts; early-stopped on the
    validation rows, so the reference is at its best.
    """
    model = _trees.TreeModel(spec, text=True).fit(parts["train"], parts["val"])
    return {name: model.predict(parts[name]) for name in ("val", "test")}, model.settings()


def lightgbm_table(spec: TableSpec, parts: dict[str, pd.DataFrame]) -> Outputs:
    """LightGBM over numeric, categorical (native handling), date and TF-IDF text features."""
    return lightgbm_reference(spec, parts)[0]


def lightgbm_settings(spec: TableSpec | None = None) -> dict:
    """The reference's default LightGBM parameters (for ``spec``'s task), before early stopping."""
    task = spec.task if spec is not None else "binary"
    n_classes = len(spec.classes) if spec is not None else 2
    text = spec is not None and bool(spec.columns("text"))
    return {
        "params": _trees.default_params(task, n_classes, text=text),
        "max_rounds": _trees.MAX_ROUNDS,
        "early_stopping_rounds": _trees.EARLY_STOPPING_ROUNDS,
    }


def majority(spec: TableSpec, parts: dict[str, pd.DataFrame]) -> Outputs:
    """The training class shares as every row's probabilities (or the training mean): no skill."""
    y = _targets(spec, parts["train"])
    if spec.task == "regression":
        return {name: np.full(len(parts[name]), float(np.nanmean(y))) for name in ("val", "test")}
    prior = np.bincount(y, minlength=len(spec.classes)) / len(y)
    return {name: np.tile(prior, (len(parts[name]), 1)) for name in ("val", "test")}


def reference_name(spec: TableSpec) -> str:
    """The strong reference for this table's kind of features."""
    only_text = (
        not spec.columns("numeric") and not spec.columns("datetime") and bool(spec.columns("text"))
    )
    return "TF-IDF + logistic regression" if only_text else "LightGBM"


def majority_name(spec: TableSpec) -> str:
    """The name of the trivial baseline for this task."""
    return "Mean predictor" if spec.task == "regression" else "Majority class"


def fit_baselines(spec: TableSpec, parts: dict[str, pd.DataFrame]) -> dict[str, Outputs]:
    """Every baseline's val and test outputs, strong reference first."""
    fit = tfidf_logistic if reference_name(spec).startswith("TF-IDF") else lightgbm_table
    return {reference_name(spec): fit(spec, parts), majority_name(spec): majority(spec, parts)}


def run_baseline(spec: TableSpec, parts: dict[str, pd.DataFrame]) -> tuple[str, dict[str, dict]]:
    """The strong reference's plain metrics: (name, {"val": metrics, "test": metrics}).

    LightGBM adds ``"settings"``: its parameters and the trees early stopping kept
    (``best_iteration``), for a benchmark to print.
    """
    settings = None
    if reference_name(spec).startswith("TF-IDF"):
        outputs = tfidf_logistic(spec, parts)
    else:
        outputs, settings = lightgbm_reference(spec, parts)
    result: dict[str, dict] = {
        n: _score(spec, _targets(spec, parts[n]), outputs[n]) for n in ("val", "test")
    }
    if settings is not None:
        result["settings"] = settings
    return reference_name(spec), result
