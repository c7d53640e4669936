"""Hostile input files for FinTune's intake: each case says whether it must load or be refused.

``python -m tests.bad_inputs.make_corpus OUT_DIR`` writes the files and prints a table of cases;
the tests import :func:`make_corpus`. The bytes are fixed (seeded), so every run writes the same
files. docs/bad_inputs.md says what FinTune does with each one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

N_ROWS = 60  # above core.data.MIN_ROWS, small enough for a 1-step CLI run
WIDE_COLUMNS, WIDE_ROWS = 10_000, 200
BIG_CELL = 1_000_000  # characters in the one huge text cell
UPLOAD_LIMIT_MB = 1  # the dashboard test lowers server.maxUploadSize to this
QUOTE_BOMB = 21_843  # ',"a' repeats in 64 KB: csv.Sniffer took ~9 s on them (115 s elsewhere)
ZERO_ROWS, ZERO_ROW_GROUP = 32_000_000, 1_000_000  # x 2 columns: over core.data.MAX_CELLS
TEXT_BOMB_ROWS = 2_200_000  # x 1 KB: over core.data.MAX_DECODED_BYTES


@dataclass(frozen=True)
class Case:
    """One hostile file and what FinTune must do with it.

    ``expect`` is "error" (refused with a DataError whose message holds every ``message``
    fragment: where the fault is, and the fix) or "loads" (read and described, maybe with
    warnings, into ``shape`` rows x columns). With ``upload_limit_mb`` set, the Data page running
    under that upload limit must refuse the file before reading it.
    """

    name: str
    file: Path
    target: str
    expect: str
    message: tuple[str, ...] = ()
    shape: tuple[int, int] | None = None
    about: str = ""
    upload_limit_mb: int | None = None


def _csv(rows: list[list], delimiter: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _table(header: list[str], make_row: Callable[[int], list], delimiter: str = ",") -> str:
    """A header and N_ROWS rows, row ``i`` from ``make_row(i)``."""
    return _csv([header, *(make_row(i) for i in range(N_ROWS))], delimiter)


def _yes_no(i: int) -> str:
    return "yes" if i % 3 else "no"


def _plain() -> str:
    return _table(["amount", "segment", "label"], lambda i: [i * 10.5, f"s{i % 4}", _yes_no(i)])


def _garbage() -> bytes:
    rng = random.Random(20240601)
    return bytes(rng.randrange(256) for _ in range(8192)) + b"\x00" * 64


def _wide() -> str:
    header = [f"f{j}" for j in range(WIDE_COLUMNS - 1)] + ["label"]
    return _csv(
        [
            header,
            *(
                [(i * 7 + j) % 13 for j in range(WIDE_COLUMNS - 1)] + [_yes_no(i)]
                for i in range(WIDE_ROWS)
            ),
        ]
    )


def _trailing_delimiter() -> str:
    """The plain table with a ',' ending every data row: pandas shifted every column left."""
    header, *rows = _plain().splitlines()
    return "\n".join([header, *(row + "," for row in rows)]) + "\n"


def _extra_field() -> str:
    """The plain table with a fourth value in the first data row, under a three-column header."""
    header, first, *rows = _plain().splitlines()
    return "\n".join([header, first + ",oops", *rows]) + "\n"


def _parquet(table) -> bytes:
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", store_schema=False)
    return out.getvalue()


def _zeros_parquet() -> bytes:
    """ZERO_ROWS x 2 zeros in ~250 KB: refused from the footer, never decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    zeros = pa.table(
        {
            "amount": pa.array(bytes(ZERO_ROW_GROUP), pa.int8()),
            "label": pa.array(bytes(ZERO_ROW_GROUP), pa.int8()),
        }
    )
    out = io.BytesIO()
    with pq.ParquetWriter(out, zeros.schema, compression="zstd") as writer:
        for _ in range(ZERO_ROWS // ZERO_ROW_GROUP):
            writer.write_table(zeros)
    return out.getvalue()


def _repeated_text_parquet() -> bytes:
    """One 1 KB memo repeated in TEXT_BOMB_ROWS rows: stored once (dictionary), 2 GB decoded."""
    import pyarrow as pa

    memo = pa.DictionaryArray.from_arrays(
        pa.array([0] * TEXT_BOMB_ROWS, pa.int32()), pa.array(["memo " * 205])
    )
    label = pa.DictionaryArray.from_arrays(
        pa.array([0, 1] * (TEXT_BOMB_ROWS // 2), pa.int32()), pa.array(["yes", "no"])
    )
    # Written without the Arrow schema, both read back as plain strings.
    return _parquet(pa.table({"memo": memo, "label": label}))


def _nested_parquet() -> bytes:
    import pyarrow as pa

    return _parquet(
        pa.table(
            {
                "amount": [i * 10.5 for i in range(N_ROWS)],
                "tags": [["new", "web"] if i % 2 else ["branch"] for i in range(N_ROWS)],
                "address": [{"city": "Köln", "zip": 50667 + i} for i in range(N_ROWS)],
                "label": [_yes_no(i) for i in range(N_ROWS)],
            }
        )
    )


_NON_FINITE = ["inf", "-inf", "nan", "NaN", "", "Infinity", "1e309"]
_FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "@SUM(A1:A9)", "-2+3", '=HYPERLINK("http://x","y")']
_ROWS = (N_ROWS, 3)

# (case with the bare file name, how to make its bytes)
_SPECS: list[tuple[Case, Callable[[], bytes]]] = [
    (
        Case(
            "empty",
            Path("empty.csv"),
            "label",
            "error",
            ("empty.csv is empty", "choose a file with a header"),
            about="zero bytes",
        ),
        lambda: b"",
    ),
    (
        Case(
            "header_only",
            Path("header_only.csv"),
            "label",
            "error",
            ("header_only.csv has a header but no data rows", "add at least 20 rows"),
            about="a header, no rows",
        ),
        lambda: b"amount,segment,label\n",
    ),
    (
        Case(
            "binary_garbage",
            Path("garbage.csv"),
            "label",
            "error",
            ("garbage.csv looks like a binary file", "export the table as CSV or Parquet"),
            about="8 KB of random bytes with NULs",
        ),
        _garbage,
    ),
    (
        Case(
            "semicolon",
            Path("semicolon.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="';' delimiter, decimal commas; 'label' exists only when split by ';'",
        ),
        lambda: _table(
            ["amount", "segment", "label"], lambda i: [f"{i},5", f"s{i % 4}", _yes_no(i)], ";"
        ).encode(),
    ),
    (
        Case(
            "latin1",
            Path("latin1.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="latin-1 text in cells and in a column name",
        ),
        lambda: _table(
            ["montant", "région", "label"],
            lambda i: [i, ["Genève", "Zürich", "Köln", "Señora"][i % 4], _yes_no(i)],
        ).encode("latin-1"),
    ),
    (
        Case("utf16", Path("utf16.csv"), "label", "loads", shape=_ROWS, about="UTF-16 with a BOM"),
        lambda: _plain().encode("utf-16"),
    ),
    (
        Case("utf32", Path("utf32.csv"), "label", "loads", shape=_ROWS, about="UTF-32 with a BOM"),
        lambda: _plain().encode("utf-32"),
    ),
    (
        Case(
            "mac_line_ends",
            Path("mac_line_ends.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="classic-Mac line ends: '\\r' only",
        ),
        lambda: _plain().replace("\n", "\r").encode(),
    ),
    (
        Case(
            "quoted_newlines",
            Path("quoted_newlines.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="quoted cells holding \\n, \\r\\n, commas and doubled quotes",
        ),
        lambda: _table(
            ["amount", "memo", "label"],
            lambda i: [i, f'line one of {i}\nline two, with "quotes"\r\nend', _yes_no(i)],
        ).encode(),
    ),
    (
        Case(
            "wide",
            Path("wide.csv"),
            "label",
            "loads",
            shape=(WIDE_ROWS, WIDE_COLUMNS),
            about=f"{WIDE_COLUMNS:,} columns x {WIDE_ROWS} rows",
        ),
        lambda: _wide().encode(),
    ),
    (
        Case(
            "duplicate_headers",
            Path("duplicate_headers.csv"),
            "label",
            "error",
            ("column name 'amount' twice", "columns 1 and 3", "rename one of them"),
            about="two columns named 'amount'",
        ),
        lambda: _table(
            ["amount", "segment", "amount", "label"], lambda i: [i, "a", i, _yes_no(i)]
        ).encode(),
    ),
    (
        Case(
            "missing_target",
            Path("missing_target.csv"),
            "label",
            "error",
            ("Target column 'label' has no values", "choose a column that holds the labels"),
            about="the target is empty in every row",
        ),
        lambda: _table(["amount", "segment", "label"], lambda i: [i, f"s{i % 4}", ""]).encode(),
    ),
    (
        Case(
            "one_class",
            Path("one_class.csv"),
            "label",
            "error",
            ("Target column 'label' has only one class ('yes')", "choose another target"),
            about="every label is 'yes'",
        ),
        lambda: _table(["amount", "segment", "label"], lambda i: [i, f"s{i % 4}", "yes"]).encode(),
    ),
    (
        Case(
            "non_finite",
            Path("non_finite.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="inf, -inf, nan, Infinity, 1e309 in a numeric feature",
        ),
        lambda: _table(
            ["amount", "ratio", "label"],
            lambda i: [_NON_FINITE[i % 7] if i % 2 else i, i / 7, _yes_no(i)],
        ).encode(),
    ),
    (
        Case(
            "inf_target",
            Path("inf_target.csv"),
            "spread",
            "error",
            (
                "Target column 'spread' is not a finite number at row 19 (value 'inf')",
                "fix the value",
            ),
            about="a regression target holding inf",
        ),
        lambda: _table(
            ["amount", "spread"], lambda i: [i, "inf" if i == 17 else i * 1.5 + i % 7]
        ).encode(),
    ),
    (
        Case(
            "huge_cell",
            Path("huge_cell.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="one 1 MB text cell",
        ),
        lambda: _table(
            ["amount", "memo", "label"],
            lambda i: [i, "lorem ipsum " * (BIG_CELL // 12) if i == 5 else f"memo {i}", _yes_no(i)],
        ).encode(),
    ),
    (
        Case(
            "formulas",
            Path("formulas.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="spreadsheet formulas: =cmd|' /C calc'!A0, +1+1, @SUM, -2+3, =HYPERLINK",
        ),
        lambda: _table(
            ["amount", "comment", "label"], lambda i: [i, _FORMULAS[i % 5], _yes_no(i)]
        ).encode(),
    ),
    (
        Case(
            "undecodable_header",
            Path("undecodable_header.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="bytes that are neither UTF-8 nor Windows-1252 in a column name",
        ),
        lambda: b"amount,r\x81gion\x8d\x90,label\n" + _plain().split("\n", 1)[1].encode(),
    ),
    (
        Case(
            "emoji",
            Path("emoji.csv"),
            "📈 label",
            "loads",
            shape=_ROWS,
            about="emoji column names and cells",
        ),
        lambda: _table(
            ["💰 amount", "🏦 bank", "📈 label"],
            lambda i: [i, ["🐂", "🐻", "🦄"][i % 3], _yes_no(i)],
        ).encode(),
    ),
    (
        Case(
            "bogus_bom",
            Path("bogus_bom.csv"),
            "label",
            "error",
            (
                "bogus_bom.csv starts with a UTF-16 byte-order mark but is not UTF-16 text",
                "save it again",
            ),
            about="a UTF-16 byte-order mark in front of UTF-8 text",
        ),
        lambda: b"\xff\xfe" + _plain().encode(),
    ),
    (
        Case(
            "ragged",
            Path("ragged.csv"),
            "label",
            "error",
            (
                "ragged.csv could not be parsed at line 62: it has 5 fields but the header has 3 "
                "(extra value '4')",
                "Remove the extra field(s) or add a column name to the header.",
            ),
            about="a row with more fields than the header",
        ),
        lambda: (_plain() + "1,2,3,4,5\n").encode(),
    ),
    (
        Case(
            "trailing_delimiter",
            Path("trailing_delimiter.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about="a ',' ending every data row (not the header)",
        ),
        lambda: _trailing_delimiter().encode(),
    ),
    (
        Case(
            "extra_field",
            Path("extra_field.csv"),
            "label",
            "error",
            (
                "extra_field.csv could not be parsed at line 2: it has 4 fields but the header has "
                "3 (extra value 'oops')",
                "Remove the extra field(s) or add a column name to the header.",
            ),
            about="a fourth value in the first data row under a three-column header",
        ),
        lambda: _extra_field().encode(),
    ),
    (
        Case(
            "quote_bomb",
            Path("quote_bomb.csv"),
            "label",
            "error",
            (
                "quote_bomb.csv could not be parsed at line 2: it has 10923 fields but the header "
                "has 1",
                "Remove the extra field(s)",
            ),
            about=f"'text', then ',\"a' {QUOTE_BOMB:,} times: 64 KB csv.Sniffer took seconds on",
        ),
        lambda: ("text\n" + ',"a' * QUOTE_BOMB).encode(),
    ),
    (
        Case(
            "zeros_parquet",
            Path("zeros.parquet"),
            "label",
            "error",
            (
                f"zeros.parquet has {2 * ZERO_ROWS:,} cells ({ZERO_ROWS:,} rows x 2 columns), more "
                "than FinTune reads at once (50,000,000)",
                "sample the rows or drop columns",
            ),
            about=f"{2 * ZERO_ROWS:,} zeros compressed into ~250 KB of Parquet",
        ),
        _zeros_parquet,
    ),
    (
        Case(
            "repeated_text_parquet",
            Path("repeated_text.parquet"),
            "label",
            "error",
            (
                "repeated_text.parquet holds 2.1 GB of values once decoded, more than FinTune "
                "reads at once (2.0 GB)",
                "sample the rows or drop columns",
            ),
            about=f"one 1 KB memo in {TEXT_BOMB_ROWS:,} rows: stored once, 2 GB once decoded",
        ),
        _repeated_text_parquet,
    ),
    (
        Case(
            "nested_parquet",
            Path("nested.parquet"),
            "label",
            "error",
            (
                "nested.parquet has nested column(s) FinTune cannot read: 'tags' (list of string), "
                "'address' (struct of city, zip)",
                "Flatten each into plain columns with one value per cell, or drop it",
            ),
            about="a list column and a struct column in Parquet",
        ),
        _nested_parquet,
    ),
    (
        Case(
            "over_upload_limit",
            Path("over_limit.csv"),
            "label",
            "loads",
            shape=_ROWS,
            about=f"just over {UPLOAD_LIMIT_MB} MB: refused by the Data page under a "
            f"{UPLOAD_LIMIT_MB} MB limit",
            upload_limit_mb=UPLOAD_LIMIT_MB,
        ),
        lambda: _table(
            ["amount", "memo", "label"],
            lambda i: [i, "x" * (UPLOAD_LIMIT_MB * 2**20 // N_ROWS + 64), _yes_no(i)],
        ).encode(),
    ),
]

CASES: tuple[Case, ...] = tuple(case for case, _ in _SPECS)  # with bare file names, for test ids


def make_corpus(folder: Path) -> list[Case]:
    """Write every hostile file into ``folder`` and return the cases, their ``file`` in it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for case, build in _SPECS:
        path = folder / case.file
        path.write_bytes(build())
        cases.append(dataclasses.replace(case, file=path))
    return cases


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.bad_inputs.make_corpus OUT_DIR", file=sys.stderr)
        return 2
    cases = make_corpus(Path(argv[0]))
    width = max(len(c.name) for c in cases)
    print(f"{'case':<{width}}  {'expect':<6}  {'bytes':>10}  {'target':<9}  about")
    for c in cases:
        print(
            f"{c.name:<{width}}  {c.expect:<6}  {c.file.stat().st_size:>10,}  {c.target:<9}  "
            f"{c.about}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
