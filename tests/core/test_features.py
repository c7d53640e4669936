"""Row serialisation and numeric encoding, fitted on train rows and saved as plain state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.preprocess import Preprocessor
from core.data.schema import describe_table
from core.errors import DataError


def _fit(frame: pd.DataFrame, target: str, **options) -> Preprocessor:
    spec = describe_table(frame, DataConfig(target=target))
    # These tests are about the row-text encoding; the cells encoding has its own below.
    options.setdefault("table_encoding", "row_text")
    return Preprocessor(spec, **options).fit(frame)


def test_text_serialisation_format(credit_df):
    pre = _fit(credit_df, "credit_risk")
    text = pre.texts(credit_df.head(1))[0]
    row = credit_df.iloc[0]
    assert text == f"notes: {row['notes']} | purpose: {row['purpose']} | housing: {row['housing']}"
    # identifiers, constants, dates and (with words present) numbers stay out of the text
    for absent in (
        "applicant",
        "branch",
        "application",
        "age years",
        "monthly income",
        "credit risk",
    ):
        assert absent not in text


def test_missing_values_are_omitted(credit_df):
    pre = _fit(credit_df, "credit_risk")
    frame = credit_df.head(3).copy()
    frame.loc[frame.index[0], "purpose"] = np.nan
    frame.loc[frame.index[1], ["notes", "purpose", "housing"]] = None
    texts = pre.texts(frame)
    assert "purpose" not in texts[0] and texts[0].startswith("notes: ")
    assert texts[1] == "(no text)"
    assert "nan" not in " ".join(texts).lower().split()


def test_whitespace_in_text_is_collapsed():
    frame = pd.DataFrame(
        {"memo": [f"line one\n\n  line   two {i}" for i in range(30)], "y": [0, 1] * 15}
    )
    pre = _fit(frame, "y")
    assert pre.texts(frame.head(1)) == ["memo: line one line two 0"]


def test_numbers_go_to_text_only_without_words(regression_df):
    numbers_only = regression_df[["momentum", "leverage", "spread_bps"]]
    pre = _fit(numbers_only, "spread_bps")
    assert pre.text_numeric_
    text = pre.texts(numbers_only.head(1))[0]
    assert text.startswith("momentum: ") and " | leverage: " in text
    words = {part.split(": ")[1] for part in pre.texts(numbers_only)[0].split(" | ")}
    assert words <= {"very low", "low", "medium", "high", "very high"}

    with_words = _fit(regression_df, "spread_bps")  # "sector" is categorical: numbers stay out
    assert not with_words.text_numeric_
    assert with_words.texts(regression_df.head(1)) == [f"sector: {regression_df['sector'].iloc[0]}"]

    always = _fit(regression_df, "spread_bps", numeric_in_text="always")
    assert "momentum: " in always.texts(regression_df.head(1))[0]
    never = _fit(numbers_only, "spread_bps", numeric_in_text="never")
    assert never.texts(numbers_only.head(1)) == ["(no text)"]


def test_bins_follow_train_quantiles(regression_df):
    frame = regression_df[["leverage", "spread_bps"]].copy()
    pre = _fit(frame, "spread_bps")
    probe = pd.DataFrame(
        {"leverage": [-1e6, frame["leverage"].median(), 1e6, np.nan], "spread_bps": 0.0}
    )
    assert pre.texts(probe) == [
        "leverage: very low",
        "leverage: medium",
        "leverage: very high",
        "(no text)",
    ]


def test_underscores_become_spaces():
    frame = pd.DataFrame(
        {"merchant_category_code": ["grocery", "travel", "fuel"] * 10, "is_fraud": [0, 1] * 15}
    )
    pre = _fit(frame, "is_fraud")
    assert pre.texts(frame.head(1)) == ["merchant category code: grocery"]


def test_numeric_standardisation_and_missing_indicators(credit_df):
    pre = _fit(credit_df, "credit_risk")
    assert pre.numeric_names == [
        "age_years",
        "monthly_income",
        "monthly_income (missing)",  # only columns with gaps in training get an indicator
        "application_date (month sin)",
        "application_date (month cos)",
        "application_date (weekday)",
    ]
    numeric = pre.numeric(credit_df)
    assert numeric.dtype == np.float32 and numeric.shape == (len(credit_df), 6)
    assert np.isfinite(numeric).all()
    assert abs(numeric[:, 0].mean()) < 0.05 and abs(numeric[:, 0].std() - 1) < 0.05
    missing = credit_df["monthly_income"].isna().to_numpy()
    assert np.array_equal(numeric[:, 2], missing.astype(np.float32))
    median = pre.numeric_stats_["monthly_income"]["median"]
    filled = (median - pre.numeric_stats_["monthly_income"]["mean"]) / pre.numeric_stats_[
        "monthly_income"
    ]["std"]
    assert np.allclose(numeric[missing, 1], filled)


def test_extreme_values_are_clipped_to_train_range(regression_df):
    pre = _fit(regression_df, "spread_bps")
    probe = regression_df.head(2).copy()
    probe["momentum"] = [1e12, -np.inf]
    values = pre.numeric(probe)[:, 0]
    stats = pre.numeric_stats_["momentum"]
    assert np.isfinite(values).all()
    assert values[0] == pytest.approx((stats["high"] - stats["mean"]) / stats["std"])


def test_state_round_trip_gives_identical_outputs(credit_df, regression_df):
    for frame, target in ((credit_df, "credit_risk"), (regression_df, "spread_bps")):
        pre = _fit(frame, target)
        state = json.loads(json.dumps(pre.state_dict()))  # it is saved as JSON
        again = Preprocessor.from_state(state)
        assert again.texts(frame) == pre.texts(frame)
        assert np.array_equal(again.numeric(frame), pre.numeric(frame))
        assert np.array_equal(again.encode_target(frame), pre.encode_target(frame))
        assert again.numeric_names == pre.numeric_names


def test_missing_column_is_named(credit_df):
    pre = _fit(credit_df, "credit_risk")
    with pytest.raises(DataError, match=r"lacks column\(s\) 'housing'"):
        pre.transform(credit_df.drop(columns=["housing"]))


def test_extra_column_warns(credit_df):
    pre = _fit(credit_df, "credit_risk")
    frame = credit_df.assign(branch_manager="Smith")
    warnings = pre.check_columns(frame)
    assert warnings == ["Column 'branch_manager' was not seen in training and is ignored."]
    assert pre.transform(frame).texts == pre.transform(credit_df).texts
    assert pre.check_columns(credit_df.drop(columns=["credit_risk"])) == []  # no target is fine


def test_target_encoding(sentiment_df, regression_df):
    pre = _fit(sentiment_df, "label")
    codes = pre.encode_target(sentiment_df)
    assert codes.dtype == np.int64
    assert [pre.spec.classes[c] for c in codes[:5]] == sentiment_df["label"].head(5).tolist()
    unseen = sentiment_df.head(2).assign(label="sideways")
    with pytest.raises(DataError, match="'sideways'"):
        pre.encode_target(unseen)

    reg = _fit(regression_df, "spread_bps")
    scaled = reg.encode_target(regression_df)
    assert abs(scaled.mean()) < 1e-4
    assert np.allclose(reg.decode_regression(scaled), regression_df["spread_bps"], atol=1e-4)


def test_cells_encode_each_categorical_value_once(credit_df):
    pre = _fit(credit_df, "credit_risk", table_encoding="cells")
    assert pre.encoding_ == "cells" and "purpose" in pre.cell_columns
    vocabulary = pre.cell_vocabulary
    assert len(vocabulary) == len(set(vocabulary))  # one string per distinct cell
    cells = pre.cells(credit_df)
    assert cells.shape == (len(credit_df), len(pre.cell_columns))
    column = pre.cell_columns.index("purpose")
    for row, value in zip(cells[:20, column], credit_df["purpose"].head(20), strict=True):
        assert vocabulary[row] == f"purpose: {value}"
    # An unseen value and a missing one get the column's own "(other)" and "(missing)" cells.
    odd = credit_df.head(2).copy()
    odd["purpose"] = ["time machine", None]
    other, missing = (vocabulary[i] for i in pre.cells(odd)[:, column])
    assert (other, missing) == ("purpose: (other)", "purpose: (missing)")
    # Texts carry only free text: the categorical columns are not serialised again.
    assert all("purpose:" not in text for text in pre.texts(credit_df.head(5)))
    # Numbers get bins for their embeddings, fitted on these rows; the state round-trips.
    assert len(pre.numeric_bins_) == len(pre.numeric_names)
    again = Preprocessor.from_state(pre.state_dict())
    assert (again.cells(credit_df) == cells).all() and again.numeric_bins_ == pre.numeric_bins_
