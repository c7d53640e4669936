"""Property tests of data intake: any bytes give a DataFrame or a DataError, never another
exception.

Tables are generated with hostile names and cells (unicode, empty, duplicated; numbers, nan, inf;
delimiters, quotes, newlines, spreadsheet formulas), written with a random delimiter, line end,
quoting and encoding. Plain tables must also come back with their names and row count.
"""

from __future__ import annotations

import csv
import io

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.config import ROLES, DataConfig
from core.data.read import read_table
from core.data.schema import TableSpec, describe_table, infer_roles
from core.errors import DataError

# database=None: a failure prints its example (add it below with @example) rather than saving it.
SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
DELIMITERS = st.sampled_from([",", ";", "\t", "|"])
LINE_ENDS = st.sampled_from(["\r\n", "\n", "\r"])
QUOTING = st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1", "cp1252"])

names = st.one_of(
    st.text(max_size=12), st.sampled_from(["", " ", "id", "amount", "label", "a,b", '"q"', "💰"])
)
cells = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "nan",
            "inf",
            "-inf",
            "NaN",
            "1,5",
            "1.234,5",
            "$12",
            "3.5%",
            "2024-01-31",
            "yes",
            "no",
        ]
    ),
    st.sampled_from(
        [
            "=cmd|' /C calc'!A0",
            "+1+1",
            "@SUM(A1:A2)",
            "-2+3",
            "a;b",
            "a\tb",
            "a|b",
            'say "hi"',
            "two\nlines",
            "cr\rlf\r\n",
        ]
    ),
    st.text(max_size=20),
)


@st.composite
def tables(draw) -> list[list]:
    """A header and up to 30 rows of mixed cells; rows may be ragged."""
    header = draw(st.lists(names, min_size=1, max_size=6))
    n_rows = draw(st.integers(0, 30))
    column = st.lists(cells, min_size=n_rows, max_size=n_rows)
    columns = [draw(column) for _ in header]
    rows = [list(row) for row in zip(*columns, strict=True)] if n_rows else []
    if rows and draw(st.booleans()):
        rows[draw(st.integers(0, len(rows) - 1))].append(draw(cells))  # one ragged row
    return [header, *rows]


def _serialise(rows: list[list], draw) -> bytes:
    """CSV bytes in a random delimiter, line end, quoting and (where it can hold the text)
    encoding."""
    out = io.StringIO()
    csv.writer(
        out, delimiter=draw(DELIMITERS), lineterminator=draw(LINE_ENDS), quoting=draw(QUOTING)
    ).writerows(rows)
    try:
        return out.getvalue().encode(draw(ENCODINGS))
    except UnicodeEncodeError:
        return out.getvalue().encode("utf-8")


@st.composite
def csv_files(draw) -> bytes:
    return _serialise(draw(tables()), draw)


words = st.text(alphabet=st.characters(categories=["L"]), min_size=1, max_size=8)


@st.composite
def plain_tables(draw) -> tuple[list[str], int, bytes]:
    """(names, row count, CSV bytes) of a well-formed table: unique names; numbers, words,
    phrases."""
    names = draw(st.lists(words, min_size=2, max_size=5, unique=True))
    cell = st.one_of(
        st.integers(-1000, 10**6),
        st.floats(-1e6, 1e6).map(lambda x: round(x, 3)),
        words,
        st.lists(words, min_size=2, max_size=4).map(" ".join),
    )
    rows = draw(
        st.lists(st.lists(cell, min_size=len(names), max_size=len(names)), min_size=1, max_size=25)
    )
    return names, len(rows), _serialise([names, *rows], draw)


def _read(raw: bytes) -> pd.DataFrame | None:
    try:
        frame = read_table(raw, filename="x.csv")
    except DataError as exc:
        assert "\n" not in str(exc)  # the CLI prints it as one line
        return None
    assert isinstance(frame, pd.DataFrame)
    return frame


@SETTINGS
@given(raw=csv_files())
@example(raw=b"\xff\xfe" + b"a,b,label\n1,2,34\n")  # a UTF-16 BOM on 8-bit text: UnicodeDecodeError
@example(raw=b"a,b,label\n1,2,3\n1,2,3,4,5\n")  # pandas' message ends in a newline
def test_csv_bytes_give_a_frame_or_a_data_error(raw):
    _read(raw)


@SETTINGS
@given(table=plain_tables())
@example(
    table=(["a", "b"], 2, b"a,b\r1,x\r2,y\r")
)  # classic-Mac line ends were "no readable header row"
@example(
    table=(["a", "b"], 1, "a,b\n1,x\n".encode("utf-32"))
)  # UTF-32 was read as UTF-16: NULs in names
def test_plain_tables_come_back_whole(table):
    names, n_rows, raw = table
    frame = read_table(raw, filename="x.csv")
    assert list(frame.columns) == names
    assert len(frame) == n_rows


@SETTINGS
@given(raw=st.binary(max_size=2000))
@example(raw=b"\xff\xfe\x00")  # a BOM and half a UTF-16 code unit
@example(raw=b"PAR1not parquet")
def test_random_bytes_give_a_frame_or_a_data_error(raw):
    _read(raw)


@SETTINGS
@given(raw=csv_files(), data=st.data())
def test_roles_and_description_of_any_loaded_table(raw, data):
    frame = _read(raw)
    if frame is None:
        return
    roles = infer_roles(frame)
    assert set(roles) == set(frame.columns)
    assert set(roles.values()) <= set(ROLES)
    target = data.draw(st.sampled_from(list(frame.columns)), label="target")
    if not target:
        return  # DataConfig refuses an empty target name before describe_table sees it
    try:
        spec = describe_table(frame, DataConfig(target=target))
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(spec, TableSpec)
    assert set(spec.roles.values()) <= set(ROLES)
