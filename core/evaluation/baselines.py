"""Reference models on the same split, so a user sees whether fine-tuning paid off.

LightGBM for tables (numeric + categorical + TF-IDF of any text columns); TF-IDF + logistic
regression for tables whose only features are text; and always the majority-class (or mean)
predictor, the floor any model must clear. Each returns its outputs on the val and test rows:
class probabilities (N, C) or predicted values (N,).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.schema import TableSpec, target_labels, to_number
from ..stats.metrics import classification_metrics, regression_metrics


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
    """TF-IDF (word 1-2 grams) + logistic regression (ridge for regression) over the text columns."""
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


def lightgbm_table(spec: TableSpec, parts: dict[str, pd.DataFrame]) -> Outputs:
    """LightGBM over numeric, categorical (native handling) and TF-IDF text features."""
    import lightgbm as lgb
    import scipy.sparse as sp

    numeric = spec.columns("numeric")
    categorical = spec.columns("categorical")
    texts = spec.columns("text")
    train_categories = {
        c: pd.Categorical(parts["train"][c].astype(str)).categories for c in categorical
    }

    def codes(frame: pd.DataFrame, column: str) -> np.ndarray:
        values = pd.Categorical(
            frame[column].astype(str), categories=train_categories[column]
        ).codes
        return np.where(values < 0, np.nan, values).astype(float)  # unseen category -> missing

    def dense(frame: pd.DataFrame) -> np.ndarray:
        columns = [to_number(frame[c]) for c in numeric] + [codes(frame, c) for c in categorical]
        return np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))

    blocks = {name: sp.csr_matrix(dense(frame)) for name, frame in parts.items()}
    if texts:
        text = _text_matrix(parts, texts)
        blocks = {name: sp.hstack([blocks[name], text[name]]).tocsr() for name in parts}
    x = {name: block.astype(np.float32) for name, block in blocks.items()}
    y = {name: _targets(spec, frame) for name, frame in parts.items()}
    cat_index = list(range(len(numeric), len(numeric) + len(categorical)))
    params = dict(
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=10,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        verbose=-1,
        random_state=0,
    )
    if spec.task == "regression":
        model = lgb.LGBMRegressor(**params)
        model.fit(x["train"], y["train"], categorical_feature=cat_index or "auto")
        return {name: model.predict(x[name]) for name in ("val", "test")}
    model = lgb.LGBMClassifier(**params, class_weight="balanced")
    model.fit(x["train"], y["train"], categorical_feature=cat_index or "auto")
    return {name: _full_proba(model, x[name], len(spec.classes)) for name in ("val", "test")}


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


def run_baseline(
    spec: TableSpec, parts: dict[str, pd.DataFrame]
) -> tuple[str, dict[str, dict[str, float]]]:
    """The strong reference's plain metrics: (name, {"val": metrics, "test": metrics})."""
    fit = tfidf_logistic if reference_name(spec).startswith("TF-IDF") else lightgbm_table
    outputs = fit(spec, parts)
    return reference_name(spec), {
        n: _score(spec, _targets(spec, parts[n]), outputs[n]) for n in ("val", "test")
    }
