"""Splits: auto picks time or random, embargo gaps, describe_split, and the positive class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.schema import describe_table
from core.data.split import describe_split, resolve_split, split_rows
from core.errors import ConfigError, DataError
from tests.conftest import credit_table, regression_table

TARGET = "credit_risk"


def _split(frame: pd.DataFrame, **data) -> tuple[dict[str, np.ndarray], dict[str, pd.Series]]:
    config = DataConfig(target=TARGET, **data)
    spec = describe_table(frame, config)
    parts = split_rows(frame, spec, config, seed=0)
    dates = {
        name: pd.to_datetime(frame["application_date"].iloc[rows]) for name, rows in parts.items()
    }
    return parts, dates


def _shuffled_credit() -> pd.DataFrame:
    frame = credit_table()
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


# --------------------------------------------------------------------------- auto / time / random


def test_auto_is_chronological_with_date_column():
    frame = _shuffled_credit()
    config = DataConfig(target=TARGET)
    spec = describe_table(frame, config)
    assert resolve_split(spec, config) == "time:application_date"
    parts, dates = _split(frame)
    assert dates["train"].max() < dates["val"].min()
    assert dates["val"].max() < dates["test"].min()
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(frame)))
    assert [len(parts[k]) for k in ("train", "val", "test")] == [140, 30, 30]


def test_auto_is_random_without_date_column():
    frame = credit_table().drop(columns="application_date")
    config = DataConfig(target=TARGET)
    spec = describe_table(frame, config)
    assert resolve_split(spec, config) == "random"
    parts = split_rows(frame, spec, config, seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(frame)))
    # stratified: each split keeps roughly the 40% share of "bad"
    for rows in parts.values():
        assert (frame[TARGET].iloc[rows] == "bad").mean() == pytest.approx(0.4, abs=0.05)


def test_explicit_random_ignores_date_column():
    frame = credit_table()
    config = DataConfig(target=TARGET, split="random")
    spec = describe_table(frame, config)
    assert resolve_split(spec, config) == "random"
    dates = pd.to_datetime(
        frame["application_date"].iloc[split_rows(frame, spec, config, 0)["train"]]
    )
    assert dates.max() > pd.to_datetime(frame["application_date"]).quantile(0.9)


def test_time_split_on_non_date_column_is_rejected():
    frame = credit_table()
    config = DataConfig(target=TARGET, split="time:purpose")
    spec = describe_table(frame, config)
    with pytest.raises(DataError, match="purpose"):
        split_rows(frame, spec, config, seed=0)


# --------------------------------------------------------------------------- embargo


def _gap(before: pd.Series, after: pd.Series, all_dates: pd.Series) -> int:
    """Distinct dates of the table strictly between two splits."""
    unique = pd.Series(all_dates.unique())
    return int(((unique > before.max()) & (unique < after.min())).sum())


def test_embargo_leaves_out_exact_number_of_dates():
    frame = _shuffled_credit()  # one row per day
    all_dates = pd.to_datetime(frame["application_date"])
    parts, dates = _split(frame, embargo=3)
    assert _gap(dates["train"], dates["val"], all_dates) == 3
    assert _gap(dates["val"], dates["test"], all_dates) == 3
    assert (dates["val"].min() - dates["train"].max()).days == 4
    assert (dates["test"].min() - dates["val"].max()).days == 4
    assert sum(len(p) for p in parts.values()) == len(frame) - 6


def test_embargo_counts_dates_not_rows():
    frame = pd.concat([credit_table(n=80)] * 3, ignore_index=True)  # 3 rows per date
    all_dates = pd.to_datetime(frame["application_date"])
    parts, dates = _split(frame, embargo=2)
    assert _gap(dates["train"], dates["val"], all_dates) == 2
    assert _gap(dates["val"], dates["test"], all_dates) == 2
    for rows in parts.values():  # whole dates only: each split holds all 3 rows of its dates
        assert frame["application_date"].iloc[rows].value_counts().eq(3).all()


def test_embargo_too_large_is_data_error():
    with pytest.raises(DataError, match="embargo"):
        _split(credit_table(), embargo=40)


def test_embargo_with_random_split_is_config_error():
    with pytest.raises(ConfigError, match="time split"):
        DataConfig(target=TARGET, split="random", embargo=2)


def test_negative_embargo_is_config_error():
    with pytest.raises(ConfigError):
        DataConfig(target=TARGET, embargo=-1)


# --------------------------------------------------------------------------- describe_split


def test_describe_split_strings():
    frame = credit_table()
    spec = describe_table(frame, DataConfig(target=TARGET))
    assert describe_split(spec, DataConfig(target=TARGET)) == "chronological by 'application_date'"
    assert (
        describe_split(spec, DataConfig(target=TARGET, embargo=3))
        == "chronological by 'application_date', embargo 3 dates"
    )
    assert describe_split(spec, DataConfig(target=TARGET, split="random")) == "stratified random"
    regression = regression_table()
    config = DataConfig(target="spread_bps")
    assert describe_split(describe_table(regression, config), config) == "random"


# --------------------------------------------------------------------------- positive class


def test_positive_class_defaults_to_rarer():
    spec = describe_table(credit_table(), DataConfig(target=TARGET))  # 80 bad, 120 good
    assert spec.classes == ("bad", "good")
    assert spec.positive_class == "bad" and spec.positive_index == 0


@pytest.mark.parametrize("share_of_ones, expected", [(0.7, "0"), (0.2, "1"), (0.5, "1")])
def test_positive_class_rarer_numeric_labels(share_of_ones, expected):
    n = 100
    frame = pd.DataFrame(
        {"x": np.arange(n) % 7, "y": (np.arange(n) < share_of_ones * n).astype(int)}
    )
    spec = describe_table(frame, DataConfig(target="y"))
    assert spec.classes == ("0", "1")
    assert spec.positive_class == expected


def test_positive_class_given():
    spec = describe_table(credit_table(), DataConfig(target=TARGET, positive_class="good"))
    assert spec.positive_class == "good" and spec.positive_index == 1


def test_unknown_positive_class_names_it():
    with pytest.raises(DataError, match="'x'"):
        describe_table(credit_table(), DataConfig(target=TARGET, positive_class="x"))


def test_positive_class_on_regression_is_rejected():
    with pytest.raises(DataError, match="binary"):
        describe_table(regression_table(), DataConfig(target="spread_bps", positive_class="1"))
