"""Data intake: reading, role and task inference, splits, and one typed error per bad input."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.read import read_table
from core.data.schema import describe_table, infer_roles, infer_task, is_missing
from core.data.split import split_rows
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
    frame = frame.sample(frac=1.0, random_state=0).reset_index(
        drop=True
    )  # file order is not time order
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
    from core.training.estimator import FineTuner

    config = tiny_config("credit_risk", max_steps=1)
    first = FineTuner(config).fit(credit_df)
    test_rows = first.splits_["test"]
    train_rows = first.splits_["train"]

    changed = credit_df.copy()
    changed.loc[changed.index[test_rows], "monthly_income"] = (
        1e9  # wild values only in the test split
    )
    changed.loc[changed.index[first.splits_["val"]], "age_years"] = -500
    second = FineTuner(config).fit(changed)

    assert np.array_equal(second.splits_["train"], train_rows)
    assert second.preprocessor_.numeric_stats_ == first.preprocessor_.numeric_stats_
    assert second.preprocessor_.bin_edges_ == first.preprocessor_.bin_edges_
    income = credit_df["monthly_income"].iloc[train_rows].dropna()
    stats = first.preprocessor_.numeric_stats_["monthly_income"]
    assert stats["median"] == pytest.approx(income.median())
    assert stats["low"] <= stats["mean"] <= stats["high"] <= income.max()


# ------------------------------------------------------------------------- bad input, one test each


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
    with pytest.raises(
        DataError, match=r"'credit_risc' is not in the table\. Did you mean 'credit_risk'\?"
    ):
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
    frame = pd.DataFrame(
        {
            "text": [f"row {i} words here" for i in range(n)],
            "account": [f"acct-{i}" for i in range(n)],
        }
    )
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
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 4, id="png"
        ),
        pytest.param(
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)) * 4, id="xlsx"
        ),
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
    text = "id;amount;rate;label\n" + "".join(
        f"R{i};1.{100 + i},50;{i % 7},25;{'yes' if i % 2 else 'no'}\n" for i in range(30)
    )
    frame = read_table(text.encode("latin-1"), filename="eu.csv")
    assert frame["amount"].iloc[0] == pytest.approx(1100.5)
    assert frame["rate"].iloc[1] == pytest.approx(1.25)
    assert frame["label"].iloc[1] == "yes"


# --------------------------------------------------------------------------- hostile inputs


TRAILING_ROWS = [
    ["Zürich", "1.5", "café, crème"],
    ["Genève", "2.25", "déjà vu"],
    ["Köln", "3.0", 'say "hi"'],
]


def _delimited(rows: list[list[str]], delimiter: str, trailing: list[bool]) -> bytes:
    """Header and rows, quoting a field that holds the delimiter or a quote; a trailing delimiter
    after the rows where ``trailing`` says so."""

    def field(value: str) -> str:
        quoted = delimiter in value or '"' in value
        return '"' + value.replace('"', '""') + '"' if quoted else value

    lines = [delimiter.join(["city", "price", "note"])]
    lines += [
        delimiter.join(map(field, row)) + (delimiter if end else "")
        for row, end in zip(rows, trailing, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def _assert_trailing_rows(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == ["city", "price", "note"]
    assert frame["city"].tolist() == ["Zürich", "Genève", "Köln"]
    assert frame["price"].tolist() == [1.5, 2.25, 3.0]
    assert frame["note"].tolist() == ["café, crème", "déjà vu", 'say "hi"']


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize(
    "trailing",
    [[True, True, True], [False, True, False], [True, False, False]],
    ids=["every-row", "a-later-row", "first-row-only"],
)
def test_trailing_delimiter_reads_without_shifting(delimiter, trailing):
    # With one field too many in the first data row, pandas made the first field the index.
    raw = _delimited(TRAILING_ROWS, delimiter, trailing)
    _assert_trailing_rows(read_table(raw, filename="export.csv"))


def test_trailing_delimiter_of_the_issue():
    frame = read_table(b"a,b,c\n1,2,3,\n", filename="t.csv")
    assert frame.to_dict("list") == {"a": [1], "b": [2], "c": [3]}  # was a=2, b=3, c=NaN


def test_several_empty_trailing_fields_read():
    frame = read_table(b"a,b,c\n1,2,3,,\n4,5,6\n7,8,9, ,\n", filename="t.csv")
    assert frame.to_dict("list") == {"a": [1, 4, 7], "b": [2, 5, 8], "c": [3, 6, 9]}


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize(
    ("rows", "line", "value"),
    [
        pytest.param([["1", "2", "3", "x"], ["4", "5", "6"]], 2, "x", id="first-row"),
        pytest.param([["1", "2", "3"], ["4", "5", "6", "", "y"]], 3, "y", id="later-row"),
        pytest.param(
            [["1", "2", "3", ""], ["4", "5", "6", "z"]], 3, "z", id="after-a-trailing-one"
        ),
    ],
)
def test_a_row_with_an_extra_value_is_refused_with_its_line(delimiter, rows, line, value):
    text = "\n".join(delimiter.join(row) for row in [["a", "b", "c"], *rows]) + "\n"
    with pytest.raises(DataError) as refused:
        read_table(text.encode(), filename="extra.csv")
    fields = len(rows[line - 2])
    assert str(refused.value) == (
        f"extra.csv could not be parsed at line {line}: it has {fields} fields but the header has "
        f"3 (extra value {value!r}). Remove the extra field(s) or add a column name to the header."
    )


def test_extra_value_line_counts_lines_inside_quoted_cells():
    text = 'a,b,c\n1,"two\nlines",3\n4,5,6,oops\n'
    with pytest.raises(DataError, match=r"extra\.csv could not be parsed at line 4: .*'oops'"):
        read_table(text.encode(), filename="extra.csv")


def test_trailing_delimiter_after_a_cell_over_128_kb():
    # csv.reader refuses fields over 128 KB by default; pandas reads them, so the check must too.
    raw = ("a,b,c\n1," + "x" * 200_000 + ",3,\n4,5,6,\n").encode()
    frame = read_table(raw, filename="big.csv")
    assert frame["b"].str.len().tolist() == [200_000, 1]
    assert frame["c"].tolist() == [3, 6]


def test_short_rows_read_with_missing_values():
    frame = read_table(b"a,b,c\n1,2\n4,5,6\n7\n", filename="short.csv")
    assert frame["a"].tolist() == [1, 4, 7]
    assert frame["c"].isna().tolist() == [True, False, True]


def _rows(make_row, n: int = 30) -> str:
    return "".join(make_row(i) + "\n" for i in range(n))


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        pytest.param(
            "text\tlabel\n" + _rows(lambda i: f"good, strong, results {i}\tpos"),
            "\t",
            id="tab-with-commas-in-cells",
        ),
        pytest.param(
            "a;b;c\n" + _rows(lambda i: f"{i},5;{i},25;0,{i}"),
            ";",
            id="semicolon-with-decimal-commas-everywhere",
        ),
        pytest.param(
            "a;b;c\n" + _rows(lambda i: f"{i},5;{i},25;0,{i};"),
            ";",
            id="semicolon-decimal-commas-and-a-trailing-delimiter",
        ),
        pytest.param(
            "name,memo\n" + _rows(lambda i: f'n{i},"a; b; c | d"'),
            ",",
            id="other-delimiters-only-inside-quotes",
        ),
        pytest.param("a|b|c\n" + _rows(lambda i: f"{i}|x{i}|y"), "|", id="pipe"),
    ],
)
def test_delimiter_detection_picks_the_consistent_one(text, delimiter):
    from core.data.read import _sniff_delimiter

    assert _sniff_delimiter(text) == delimiter
    columns = text.splitlines()[0].count(delimiter) + 1
    assert read_table(text.encode(), filename="t.csv").shape[1] == columns


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param("text\n" + ',"a' * 21843, id="64KB-of-quote-delimiter"),
        pytest.param("text\n" + ',"a' * 350_000, id="1MB-of-quote-delimiter"),
        pytest.param("text\n" + '"a,' * 350_000, id="1MB-of-quoted-delimiters"),
        pytest.param("text\n" + (',"a' * 20 + "\n") * 17_000, id="1MB-in-short-lines"),
        pytest.param(
            "text,label\n" + _rows(lambda i: f'"{i},""aaa",yes', 60_000), id="1MB-of-quoted-cells"
        ),
    ],
)
def test_hostile_quotes_are_read_in_linear_time(hostile):
    # csv.Sniffer took ~9 s (115 s on a slower machine) on the 64 KB input, holding the GIL.
    started = time.perf_counter()
    try:
        read_table(hostile.encode(), filename="hostile.csv")
    except DataError as exc:
        assert "\n" not in str(exc)
    assert time.perf_counter() - started < 2


def _parquet(table, path: Path) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    return path


def _parquet_frame(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def test_a_parquet_file_of_too_many_cells_is_refused_before_reading(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # 64 million zeros in ~250 KB; the issue's file held 400 million in 1.8 MB and took 3 GB.
    zeros = np.zeros(1_000_000, dtype=np.int8)
    group = pa.table({"amount": zeros, "label": zeros})
    path = tmp_path / "zeros.parquet"
    with pq.ParquetWriter(path, group.schema, compression="zstd") as writer:
        for _ in range(32):
            writer.write_table(group)
    assert path.stat().st_size < 1_000_000
    reads = []
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: reads.append(a))
    started = time.perf_counter()
    with pytest.raises(DataError) as refused:
        read_table(path)
    assert time.perf_counter() - started < 2
    assert not reads  # refused from the footer, before a value was decoded
    assert str(refused.value) == (
        "zeros.parquet has 64,000,000 cells (32,000,000 rows x 2 columns), more than FinTune "
        "reads at once (50,000,000): sample the rows or drop columns first, or raise "
        "FINTUNE_MAX_CELLS on a machine with the memory."
    )


def test_parquet_text_that_decodes_past_the_budget_is_refused(tmp_path, monkeypatch):
    import pyarrow as pa

    from core.data import read as data

    # Dictionary encoding stores the repeated 1 KB memo once: the footer says ~200 KB for 20 MB.
    memo = pa.table({"memo": ["x" * 1000] * 20_000, "label": ["yes", "no"] * 10_000})
    path = _parquet(memo, tmp_path / "memo.parquet")
    monkeypatch.setattr(data, "MAX_DECODED_BYTES", 8 * 2**20)
    with pytest.raises(
        DataError,
        match=r"memo\.parquet holds 1\d\.\d MB of values once decoded, "
        r"more than FinTune reads at once \(8\.0 MB\): sample",
    ):
        read_table(path)
    monkeypatch.setattr(data, "MAX_DECODED_BYTES", 64 * 2**20)
    assert read_table(path).shape == (20_000, 2)


def test_parquet_stored_size_over_the_budget_is_refused(tmp_path, monkeypatch):
    numbers = pd.DataFrame({"x": np.arange(100_000, dtype=float)})
    path = _parquet_frame(numbers, tmp_path / "big.parquet")
    monkeypatch.setenv("FINTUNE_MAX_DECODED_BYTES", str(2**19))
    with pytest.raises(
        DataError,
        match=r"big\.parquet holds \d\.\d MB .* \(0\.5 MB\).*raise "
        r"FINTUNE_MAX_DECODED_BYTES",
    ):
        read_table(path)


def test_cell_limit_applies_to_csv_before_parsing_and_can_be_raised(monkeypatch):
    text = ("a,b,c,label\n" + "1,2,3,yes\n" * 40).encode()
    monkeypatch.setenv("FINTUNE_MAX_CELLS", "100")
    with pytest.raises(
        DataError,
        match=r"t\.csv has about 164 cells \(about 41 rows x 4 "
        r"columns\), more than FinTune reads at once \(100\)",
    ):
        read_table(text, filename="t.csv")
    monkeypatch.setenv("FINTUNE_MAX_CELLS", "1_000")
    assert read_table(text, filename="t.csv").shape == (40, 4)
    monkeypatch.setenv("FINTUNE_MAX_CELLS", "lots")
    with pytest.raises(DataError, match=r"FINTUNE_MAX_CELLS='lots' is not a positive whole number"):
        read_table(text, filename="t.csv")


def test_realistic_tables_pass_the_limits(tmp_path):
    rng = np.random.default_rng(0)
    numbers = pd.DataFrame(rng.normal(size=(30_000, 24)), columns=[f"f{i}" for i in range(24)])
    assert read_table(_parquet_frame(numbers, tmp_path / "numbers.parquet")).shape == (30_000, 24)
    numbers.to_csv(tmp_path / "numbers.csv", index=False)
    assert read_table(tmp_path / "numbers.csv").shape == (30_000, 24)
    words = np.array(["quarterly", "revenue", "guidance", "margin", "loan", "card", "refund"])
    texts = pd.DataFrame(
        {
            "text": [" ".join(rng.choice(words, 40)) for _ in range(12_000)],
            "label": rng.choice(["pos", "neg", "neutral"], 12_000),
        }
    )
    assert read_table(_parquet_frame(texts, tmp_path / "texts.parquet")).shape == (12_000, 2)


def _list(pa):
    return pa.array([["a", "b"], ["c"]] * 15)


def _struct(pa):
    return pa.array([{"city": "Köln", "zip": 50667}] * 30)


def _map(pa):
    return pa.array([[("a", 1)], [("b", 2)]] * 15, type=pa.map_(pa.string(), pa.int64()))


@pytest.mark.parametrize(
    ("column", "kind"),
    [(_list, "list of string"), (_struct, "struct of city, zip"), (_map, "map of string to int64")],
    ids=["list", "struct", "map"],
)
def test_nested_parquet_columns_are_refused_by_name_and_type(tmp_path, column, kind):
    import pyarrow as pa

    table = pa.table({"amount": list(range(30)), "extra": column(pa), "label": ["yes", "no"] * 15})
    with pytest.raises(DataError) as refused:
        read_table(_parquet(table, tmp_path / "nested.parquet"))
    assert str(refused.value) == (
        f"nested.parquet has nested column(s) FinTune cannot read: 'extra' ({kind}). Flatten each "
        "into plain columns with one value per cell, or drop it."
    )


def test_every_nested_parquet_column_is_named(tmp_path):
    import pyarrow as pa

    table = pa.table(
        {
            "tags": pa.array([["a"]] * 30),
            "amount": list(range(30)),
            "owner": pa.array([{"name": "x"}] * 30),
            "label": ["yes", "no"] * 15,
        }
    )
    named = r"'tags' \(list of string\), 'owner' \(struct of name\)\. Flatten"
    with pytest.raises(DataError, match=named):
        read_table(_parquet(table, tmp_path / "nested.parquet"))


def test_one_rule_says_which_cell_values_are_missing():
    missing = [None, float("nan"), np.nan, pd.NA, pd.NaT, np.datetime64("NaT"), "", "  ", np.inf]
    present = [0, 0.0, -1.5, "0", "n/a?", False, pd.Timestamp("2024-03-31"), [1, 2], "rent"]
    assert [v for v in missing if not is_missing(v)] == []
    assert [v for v in present if is_missing(v)] == []
