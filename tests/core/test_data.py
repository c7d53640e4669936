"""Data intake: reading, role and task inference, splits, and one typed error per bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data import describe_table, infer_roles, infer_task, read_table, split_rows
from core.errors import DataError

ROWS = [("Zürich", 1.5, "café crème"), ("Genève", 2.25, "déjà vu"), ("Köln", 3.0, "Straße")]


def _csv_text(delimiter: str) -> str:
    lines = [delimiter.join(["city", "price", "note"])]
    lines += [delimiter.join([city, str(price), note]) for city, price, note in ROWS]
    return "\n".join(lines) + "\n"


def _assert_rows(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == ["city", "price", "note"]
    assert frame["city"].tolist() == [r[0] for r in ROWS]
    assert frame["price"].tolist() == [r[1] for r in ROWS]
    assert frame["note"].tolist() == [r[2] for r in ROWS]


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_read_csv_detects_delimiter(tmp_path, delimiter):
    path = tmp_path / "table.csv"
    path.write_text(_csv_text(delimiter), encoding="utf-8")
    _assert_rows(read_table(path))


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: text.encode("utf-8"), id="utf-8"),
        pytest.param(lambda text: text.encode("utf-8-sig"), id="utf-8-bom"),
        pytest.param(lambda text: text.encode("latin-1"), id="latin-1"),
        pytest.param(lambda text: text.encode("utf-16"), id="utf-16-bom"),
    ],
)
def test_read_csv_detects_encoding(tmp_path, encode):
    path = tmp_path / "table.csv"
    path.write_bytes(encode(_csv_text(";")))
    frame = read_table(path)
    _assert_rows(frame)  # also: no BOM glued to the first column name


def test_read_bytes_and_file_objects(tmp_path):
    data = _csv_text(",").encode("latin-1")
    _assert_rows(read_table(data, filename="upload.csv"))
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    with open(path, "rb") as handle:
        _assert_rows(read_table(handle))


def test_read_parquet(tmp_path):
    frame = pd.DataFrame(ROWS, columns=["city", "price", "note"])
    path = tmp_path / "table.parquet"
    frame.to_parquet(path)
    _assert_rows(read_table(path))
    # Parquet is recognised by its magic bytes, whatever the name.
    _assert_rows(read_table(path.read_bytes(), filename="upload.bin"))


# --------------------------------------------------------------------------- roles and task


def test_infer_roles_on_credit_table(credit_df):
    roles = infer_roles(credit_df, target="credit_risk")
    assert roles == {
        "applicant_id": "id",
        "age_years": "numeric",
        "monthly_income": "numeric",
        "purpose": "categorical",
        "housing": "categorical",
        "notes": "text",
        "application_date": "datetime",
        "branch_country": "ignore",
    }


def test_string_identifiers_and_numbers_as_text():
    n = 60
    frame = pd.DataFrame(
        {
            "transaction_ref": [f"T{i:06d}" for i in range(n)],
            "amount": [f"{1000 + i * 37:,}" for i in range(n)],  # "1,037": thousands separators
            "flag": [True, False] * (n // 2),
        }
    )
    roles = infer_roles(frame)
    assert roles == {"transaction_ref": "id", "amount": "numeric", "flag": "categorical"}


def test_role_overrides_win(credit_df):
    config = DataConfig(target="credit_risk", roles={"age_years": "categorical", "notes": "ignore"})
    spec = describe_table(credit_df, config)
    assert spec.roles["age_years"] == "categorical"
    assert spec.roles["notes"] == "ignore"
    assert "notes" not in spec.feature_columns
    assert "applicant_id" not in spec.feature_columns  # identifiers are dropped
    assert "branch_country" not in spec.feature_columns  # constants are ignored


def test_role_override_for_unknown_column_names_it(credit_df):
    with pytest.raises(DataError, match="'nope'"):
        describe_table(credit_df, DataConfig(target="credit_risk", roles={"nope": "text"}))


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["yes", "no"] * 15, "binary"),
        ([0, 1] * 15, "binary"),
        ([0.0, 1.0] * 15, "binary"),
        (["low", "mid", "high"] * 10, "multiclass"),
        ([1, 2, 3, 4, 5] * 6, "multiclass"),  # small integer ratings
        (list(np.linspace(0, 1, 30)), "regression"),
        (list(range(30)), "regression"),  # many integers: a count, not classes
    ],
)
def test_infer_task(values, task):
    assert infer_task(pd.Series(values)) == task


def test_describe_table_settles_task_and_classes(credit_df, sentiment_df, regression_df):
    assert describe_table(credit_df, DataConfig(target="credit_risk")).classes == ("bad", "good")
    spec = describe_table(sentiment_df, DataConfig(target="label"))
    assert spec.task == "multiclass" and spec.classes == ("bearish", "bullish", "neutral")
    spec = describe_table(regression_df, DataConfig(target="spread_bps"))
    assert spec.task == "regression" and spec.classes == ()


# --------------------------------------------------------------------------- splits


def test_stratified_random_split(credit_df):
    config = DataConfig(target="credit_risk")
    spec = describe_table(credit_df, config)
    parts = split_rows(credit_df, spec, config, seed=0)
    rows = np.concatenate(list(parts.values()))
    assert len(rows) == len(set(rows)) == len(credit_df)  # disjoint, covering every row
    overall = (credit_df["credit_risk"] == "bad").mean()
    for name in ("train", "val", "test"):
        share = (credit_df["credit_risk"].iloc[parts[name]] == "bad").mean()
        assert abs(share - overall) < 0.05, name
    assert len(parts["test"]) == pytest.approx(0.15 * len(credit_df), abs=2)
    again = split_rows(credit_df, spec, config, seed=0)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)  # the seed fixes the split


def test_chronological_split_keeps_order_and_ties(credit_df):
    # Three rows per day: a cut through a day would put the same instant in train and val.
    frame = credit_df.copy()
    days = pd.date_range("2024-01-01", periods=len(frame) // 3 + 1, freq="D")
    frame["application_date"] = np.repeat(days, 3)[: len(frame)].strftime("%Y-%m-%d")
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)  # file order is not time order
    config = DataConfig(target="credit_risk", split="time:application_date")
    spec = describe_table(frame, config)
    parts = split_rows(frame, spec, config, seed=0)
    dates = pd.to_datetime(frame["application_date"])
    train, val, test = (dates.iloc[parts[k]] for k in ("train", "val", "test"))
    assert len(train) and len(val) and len(test)
    assert sum(map(len, (train, val, test))) == len(frame)
    assert val.min() > train.max() and test.min() > train.max()
    assert test.min() > val.max()  # ties never straddle a cut


def test_chronological_split_on_a_non_date_column(credit_df):
    config = DataConfig(target="credit_risk", split="time:purpose")
    spec = describe_table(credit_df, config)
    with pytest.raises(DataError, match="'purpose'"):
        split_rows(credit_df, spec, config, seed=0)


def test_missing_split_column_named(credit_df):
    with pytest.raises(DataError, match="'when'"):
        describe_table(credit_df, DataConfig(target="credit_risk", split="time:when"))


def test_preprocessing_fitted_on_train_rows_only(credit_df, tiny_config):
    from core.engine import FineTuner

    config = tiny_config("credit_risk", max_steps=1)
    first = FineTuner(config).fit(credit_df)
    test_rows = first.splits_["test"]
    train_rows = first.splits_["train"]

    changed = credit_df.copy()
    changed.loc[changed.index[test_rows], "monthly_income"] = 1e9  # wild values only in the test split
    changed.loc[changed.index[first.splits_["val"]], "age_years"] = -500
    second = FineTuner(config).fit(changed)

    assert np.array_equal(second.splits_["train"], train_rows)
    assert second.preprocessor_.numeric_stats_ == first.preprocessor_.numeric_stats_
    assert second.preprocessor_.bin_edges_ == first.preprocessor_.bin_edges_
    income = credit_df["monthly_income"].iloc[train_rows].dropna()
    stats = first.preprocessor_.numeric_stats_["monthly_income"]
    assert stats["median"] == pytest.approx(income.median())
    assert stats["low"] <= stats["mean"] <= stats["high"] <= income.max()


# --------------------------------------------------------------------------- bad input, one test each


def _write(tmp_path, content: bytes, name: str = "bad.csv"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_table(_write(tmp_path, b"", "empty.csv"))


def test_whitespace_only_file(tmp_path):
    with pytest.raises(DataError, match=r"blank\.csv is empty"):
        read_table(_write(tmp_path, b"\n\n  \n", "blank.csv"))


def test_header_only(tmp_path):
    with pytest.raises(DataError, match=r"header\.csv has a header but no data rows"):
        read_table(_write(tmp_path, b"amount,label\n", "header.csv"))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "absent.csv")


def test_target_missing_suggests_a_close_name(credit_df):
    with pytest.raises(DataError, match=r"'credit_risc' is not in the table\. Did you mean 'credit_risk'\?"):
        describe_table(credit_df, DataConfig(target="credit_risc"))


def test_target_missing_lists_columns_when_nothing_is_close(credit_df):
    with pytest.raises(DataError, match=r"'zzz' is not in the table\. Columns are: 'applicant_id'"):
        describe_table(credit_df, DataConfig(target="zzz"))


def test_one_class_target(credit_df):
    credit_df["credit_risk"] = "good"
    with pytest.raises(DataError, match=r"'credit_risk' has only one class \('good'\)"):
        describe_table(credit_df, DataConfig(target="credit_risk"))


def test_more_than_1000_classes():
    n = 1100
    frame = pd.DataFrame({"text": [f"row {i} words here" for i in range(n)], "account": [f"acct-{i}" for i in range(n)]})
    with pytest.raises(DataError, match=r"'account' has 1100 classes, more than 1000"):
        describe_table(frame, DataConfig(target="account"))


def test_non_numeric_regression_target(regression_df):
    regression_df["spread_bps"] = regression_df["spread_bps"].astype(object)
    regression_df.loc[5, "spread_bps"] = "n/a"
    with pytest.raises(DataError, match=r"'spread_bps' is not numeric at row 7 \(value 'n/a'\)"):
        describe_table(regression_df, DataConfig(target="spread_bps", task="regression"))


def test_duplicate_column_names(tmp_path):
    content = b"amount,label,amount\n" + b"1,a,2\n" * 30
    with pytest.raises(DataError, match=r"column name 'amount' twice \(columns 1 and 3\)"):
        read_table(_write(tmp_path, content))


def test_duplicate_column_names_in_a_frame(credit_df):
    # A frame handed over directly (not read by read_table) gets the same check.
    frame = credit_df.rename(columns={"housing": "purpose"})
    with pytest.raises(DataError, match="'purpose' twice"):
        describe_table(frame, DataConfig(target="credit_risk"))


def test_no_usable_feature():
    frame = pd.DataFrame({"customer_id": range(40), "default": ["yes", "no"] * 20})
    with pytest.raises(DataError, match=r"No usable feature: every column besides 'default'"):
        describe_table(frame, DataConfig(target="default"))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 4, id="png"),
        pytest.param(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)) * 4, id="xlsx"),
    ],
)
def test_binary_garbage(tmp_path, content):
    with pytest.raises(DataError, match=r"garbage\.csv looks like a binary file"):
        read_table(_write(tmp_path, content, "garbage.csv"))


def test_damaged_parquet(tmp_path):
    with pytest.raises(DataError, match=r"broken\.parquet is not a readable Parquet file"):
        read_table(_write(tmp_path, b"PAR1" + b"\x00garbage" * 20, "broken.parquet"))


def test_ragged_csv_names_the_line(tmp_path):
    content = b"a,b,c\n" + b"1,2,3\n" * 5 + b"1,2,3,4,5\n"
    with pytest.raises(DataError, match="line 7"):
        read_table(_write(tmp_path, content))


def test_semicolon_csv_reads_decimal_commas():
    text = "id;amount;rate;label\n" + "".join(f"R{i};1.{100 + i},50;{i % 7},25;{'yes' if i % 2 else 'no'}\n" for i in range(30))
    frame = read_table(text.encode("latin-1"), filename="eu.csv")
    assert frame["amount"].iloc[0] == pytest.approx(1100.5)
    assert frame["rate"].iloc[1] == pytest.approx(1.25)
    assert frame["label"].iloc[1] == "yes"
