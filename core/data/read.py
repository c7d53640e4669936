"""Reading a table: CSV (delimiter and encoding detection, row checks) or Parquet, within size
budgets.

Everything here raises :class:`DataError` with the column or row and the fix; nothing raises a
pandas traceback at the user.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import re
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from ..errors import DataError

logger = logging.getLogger(__name__)

MIN_ROWS = 20


# --------------------------------------------------------------------------- reading

# What FinTune reads at once. A 1.8 MB Parquet file of zeros decodes to gigabytes, so the size is
# checked before the table is built; the environment variables raise the limits on a bigger machine.
MAX_CELLS = 50_000_000  # rows x columns
MAX_DECODED_BYTES = 2 * 2**30  # a Parquet file's values once decoded
MAX_CELLS_ENV = "FINTUNE_MAX_CELLS"
MAX_DECODED_BYTES_ENV = "FINTUNE_MAX_DECODED_BYTES"

_DELIMITERS = ",;\t|"
_SNIFF_CHARS = 65536
_SNIFF_RECORDS = 50
_TOO_MANY_FIELDS = re.compile(r"Expected \d+ fields in line \d+, saw \d+")


def read_table(
    source: str | Path | bytes | BinaryIO, *, filename: str | None = None
) -> pd.DataFrame:
    """Read a CSV (any common delimiter; UTF-8, UTF-8 with BOM, UTF-16 or latin-1) or Parquet file.

    Tables over MAX_CELLS cells, or Parquet files over MAX_DECODED_BYTES once decoded, are refused
    before they are built.
    """
    name = filename or (
        str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "upload")
    )
    raw = _read_bytes(source, name)
    if not raw.strip():
        raise DataError(
            f"{Path(name).name} is empty: choose a file with a header row and data rows."
        )
    if raw[:4] == b"PAR1" or name.lower().endswith((".parquet", ".pq")):
        return _read_parquet(raw, name)
    text = _decode(raw, name)
    return _read_csv_text(text, name)


def _read_bytes(source, name: str) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"File {path} does not exist: check the path.")
        return path.read_bytes()
    data = source.read()
    if not isinstance(data, bytes):
        raise DataError(f"{name} could not be read as bytes: upload the file again.")
    return data


def _read_parquet(raw: bytes, name: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    short = Path(name).name
    try:
        parquet = pq.ParquetFile(io.BytesIO(raw))
        # Both checks read the footer (and the text columns, dictionary-encoded), not the table.
        _refuse_nested_columns(parquet.schema_arrow, short)
        _check_parquet_size(parquet, raw, short)
        frame = pd.read_parquet(io.BytesIO(raw))
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises many types for damaged files
        raise DataError(
            f"{short} is not a readable Parquet file ({_one_line(exc)}): export it again."
        ) from exc
    _check_columns(list(map(str, frame.columns)), name)
    if frame.empty:
        raise DataError(f"{short} has columns but no rows: add data rows.")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _refuse_nested_columns(schema, short: str) -> None:
    """Lists, structs and maps are not one value per cell: every later step would fail on them."""
    import pyarrow as pa

    nested = [field for field in schema if pa.types.is_nested(field.type)]
    if nested:
        named = ", ".join(
            f"{field.name!r} ({_shorten(_nested_kind(field.type), 60)})" for field in nested[:5]
        )
        more = f" and {len(nested) - 5} more" if len(nested) > 5 else ""
        raise DataError(
            f"{short} has nested column(s) FinTune cannot read: {named}{more}. Flatten each into "
            "plain columns with one value per cell, or drop it."
        )


def _nested_kind(kind) -> str:
    import pyarrow as pa

    if pa.types.is_map(kind):
        return f"map of {kind.key_type} to {kind.item_type}"
    if pa.types.is_struct(kind):
        return "struct of " + ", ".join(kind.field(i).name for i in range(kind.num_fields))
    if hasattr(kind, "value_type"):  # list, large list, fixed-size list
        return f"list of {kind.value_type}"
    return str(kind)


def _check_parquet_size(parquet, raw: bytes, short: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    metadata = parquet.metadata
    _check_cells(metadata.num_rows, metadata.num_columns, short)
    limit = _limit(MAX_DECODED_BYTES_ENV, MAX_DECODED_BYTES)
    stored = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if stored > limit:
        _refuse_bytes(stored, limit, short)
    # Dictionary encoding stores a repeated string once, so the footer can say kilobytes for
    # gigabytes of text: read the text columns still dictionary-encoded (a few bytes a row) and add
    # up the lengths they expand to.
    text = [field.name for field in parquet.schema_arrow if _is_text_type(field.type)]
    if not text:
        return
    decoded = 8 * metadata.num_rows * (metadata.num_columns - len(text))
    encoded = pq.ParquetFile(io.BytesIO(raw), read_dictionary=text).read(
        columns=text, use_pandas_metadata=False
    )
    for column in encoded.columns:
        for chunk in column.chunks:
            if pa.types.is_dictionary(chunk.type):
                lengths = pc.take(pc.binary_length(chunk.dictionary), chunk.indices)
                decoded += 8 * len(chunk) + (pc.sum(lengths).as_py() or 0)
            else:
                decoded += chunk.nbytes
    if decoded > limit:
        _refuse_bytes(decoded, limit, short)


def _is_text_type(kind) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
        or str(kind) in ("string_view", "binary_view")
    )


def _refuse_bytes(size: int, limit: int, short: str) -> None:
    raise DataError(
        f"{short} holds {_megabytes(size)} of values once decoded, more than FinTune reads at once "
        f"({_megabytes(limit)}): sample the rows or drop columns first, or raise "
        f"{MAX_DECODED_BYTES_ENV} on a machine with the memory."
    )


def _megabytes(size: int) -> str:
    return f"{size / 2**30:,.1f} GB" if size >= 2**30 else f"{size / 2**20:,.1f} MB"


def _check_cells(n_rows: int, n_columns: int, short: str, estimate: bool = False) -> None:
    limit = _limit(MAX_CELLS_ENV, MAX_CELLS)
    if n_rows * n_columns > limit:
        about = "about " if estimate else ""
        raise DataError(
            f"{short} has {about}{n_rows * n_columns:,} cells ({about}{n_rows:,} rows x "
            f"{n_columns:,} columns), more than FinTune reads at once ({limit:,}): sample the "
            f"rows or drop columns first, or raise {MAX_CELLS_ENV} on a machine with the memory."
        )


def _limit(env: str, default: int) -> int:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(
            f"{env}={raw!r} is not a positive whole number: set it like {env}={default} or "
            "unset it."
        )
    return value


def _decode(raw: bytes, name: str) -> str:
    if raw[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        try:
            return raw.decode("utf-32")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{Path(name).name} starts with a UTF-32 byte-order mark but is not UTF-32 text: "
                "save it again as CSV UTF-8."
            ) from exc
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        # UTF-16 text holds NULs (every ASCII character has one); a BOM in front of 8-bit text does
        # not.
        try:
            if b"\x00" in raw[2:4098]:
                return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
        raise DataError(
            f"{Path(name).name} starts with a UTF-16 byte-order mark but is not UTF-16 text: "
            "save it again as CSV UTF-8."
        )
    if b"\x00" in raw[:4096]:
        # UTF-16 without a BOM shows a NUL in every other byte; anything else with NULs is binary.
        if raw[1:4096:2].count(0) > 0.9 * len(raw[1:4096:2]):
            return raw.decode("utf-16-le", errors="replace")
        raise DataError(
            f"{Path(name).name} looks like a binary file, not CSV text: export the table as CSV or "
            "Parquet."
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: read it as Windows-1252 (Excel's Western export, a superset of latin-1's printable
    # characters), else latin-1. Statistical detection guesses cp1257 or cp1250 on short Western
    # files and turns "Genève" into "Genčve", so it is not used.
    try:
        text = raw.decode("cp1252")
        logger.info("%s is not UTF-8; reading it as Windows-1252", name)
        return text
    except UnicodeDecodeError:
        logger.info("%s is not UTF-8; reading it as latin-1", name)
        return raw.decode("latin-1")


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first rows into the same number (more than one) of fields.

    csv.Sniffer is quadratic on some inputs (seconds to minutes on 64 KB of ',"a'); csv.reader is
    linear, and it splits quoted fields the way pandas will.
    """
    sample = _sample(text)
    best, best_score = None, None
    for delimiter in _DELIMITERS:
        widths = _field_counts(sample, delimiter)
        for width in set(widths) - {1}:
            # Rows that agree; then a header that agrees (a trailing delimiter makes it one short);
            # then more columns.
            score = (widths.count(width), -abs(widths[0] - width), width)
            if best_score is None or score > best_score:
                best, best_score = delimiter, score
    if best is not None:
        return best
    first = sample.splitlines()[0] if sample else ""
    counts = {d: first.count(d) for d in _DELIMITERS}
    most = max(counts, key=counts.get)
    return most if counts[most] else ","


def _sample(text: str) -> str:
    """The first 64 KB, cut at a line end so the last row is whole."""
    if len(text) <= _SNIFF_CHARS:
        return text
    sample = text[:_SNIFF_CHARS]
    end = max(sample.rfind("\n"), sample.rfind("\r"))
    return sample[: end + 1] if end > 0 else sample


def _field_counts(sample: str, delimiter: str) -> list[int]:
    """Fields per row in the first rows of ``sample`` split by ``delimiter``; no blank lines."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)  # see _csv_rows
    widths: list[int] = []
    try:
        for record in itertools.islice(reader, _SNIFF_RECORDS):
            if record:
                widths.append(len(record))
    except csv.Error:  # a NUL or an overlong field: what was read so far still counts
        pass
    return widths


def _read_csv_text(text: str, name: str) -> pd.DataFrame:
    short = Path(name).name
    delimiter = _sniff_delimiter(text)
    reader = _csv_rows(text, delimiter)
    try:
        header = next(record for record in reader if record)  # pandas skips blank lines too
        first_row = next((record for record in reader if record), [])
    except (StopIteration, csv.Error) as exc:
        raise DataError(
            f"{short} has no readable header row: the first line must name the columns."
        ) from exc
    _check_columns(header, short)
    # Physical lines bound the rows (a quoted cell may span lines): cheap, and before any parsing.
    _check_cells(max(text.count("\n") or text.count("\r"), 1), len(header), short, estimate=True)
    try:
        frame = _parse_csv(text, delimiter, header, first_row, short)
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{short} is empty: choose a file with a header row and data rows."
        ) from exc
    except pd.errors.ParserError as exc:
        row = re.search(r"line (\d+)", str(exc))
        where = f" at line {row.group(1)}" if row else ""
        raise DataError(
            f"{short} could not be parsed{where} ({_one_line(exc)}). Check that every row has as "
            "many fields as the header and that quotes are balanced."
        ) from exc
    if frame.empty:
        raise DataError(f"{short} has a header but no data rows: add at least {MIN_ROWS} rows.")
    if frame.shape[1] == 1 and len(text) > 0 and delimiter == ",":
        logger.info("%s has a single column; delimiter detection found none", short)
    frame.columns = [str(c).strip() for c in frame.columns]
    if delimiter == ";":
        _convert_decimal_commas(frame)
    return frame


def _parse_csv(
    text: str, delimiter: str, header: list[str], first_row: list[str], short: str
) -> pd.DataFrame:
    # index_col=False: when the first data row has one field more than the header (a trailing
    # delimiter), pandas would otherwise make the first field the index and shift every column.
    options = {"sep": delimiter, "low_memory": False, "index_col": False}
    if len(first_row) <= len(header):
        try:
            return pd.read_csv(io.StringIO(text), **options)
        except pd.errors.ParserError as exc:
            if not _TOO_MANY_FIELDS.search(str(exc)):
                raise
    # Some row has more fields than the header: read the file if every extra field is empty
    # (a trailing delimiter, as many exports write), and refuse the first row that holds a value.
    _refuse_extra_fields(text, delimiter, len(header), short)
    try:
        return pd.read_csv(io.StringIO(text), usecols=range(len(header)), **options)
    except pd.errors.ParserError:
        raise
    except ValueError as exc:  # "Usecols do not match columns": pandas read a shorter header
        raise pd.errors.ParserError(_one_line(exc)) from exc


def _refuse_extra_fields(text: str, delimiter: str, n_columns: int, short: str) -> None:
    """Raise DataError naming the first row with a non-empty field beyond the header's columns."""
    reader = _csv_rows(text, delimiter)
    header_seen, line = False, 0
    try:
        for record in reader:
            start, line = line + 1, reader.line_num  # a quoted cell can span lines: name the first
            if not record:
                continue
            if not header_seen:
                header_seen = True
                continue
            extra = [value for value in record[n_columns:] if value.strip()]
            if extra:
                raise DataError(
                    f"{short} could not be parsed at line {start}: it has {len(record)} fields "
                    f"but the header has {n_columns} (extra value {_shorten(extra[0], 40)!r}). "
                    "Remove the extra field(s) or add a column name to the header."
                )
    except csv.Error as exc:
        raise DataError(
            f"{short} could not be parsed at line {line + 1} ({_one_line(exc)}): check that quotes "
            "are balanced."
        ) from exc


def _csv_rows(text: str, delimiter: str):
    """csv.reader over the whole text, as pandas will split it."""
    # A cell over csv's default 128 KB limit is data (pandas reads it; the text is in memory
    # already), not an error. The limit is process-wide, so it is only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), min(len(text), 2**31 - 1)))
    # newline="": a file with classic-Mac "\r" line ends is rows, not one line holding "\r"s
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def _shorten(value: str, length: int) -> str:
    return value if len(value) <= length else value[: length - 3] + "..."


def _one_line(exc: Exception) -> str:
    """A library's message on one line: the CLI reports an error as exactly one line."""
    return " ".join(str(exc).split())


_DECIMAL_COMMA = re.compile(r"^\s*-?\d{1,3}(?:\.\d{3})*,\d+\s*$|^\s*-?\d+,\d+\s*$")


def _convert_decimal_commas(frame: pd.DataFrame) -> None:
    """Semicolon files come from locales that write "1.234,5": turn such text columns into
    numbers."""
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column].dropna().astype(str)
        if len(values) and values.str.match(_DECIMAL_COMMA).mean() > 0.9:
            cleaned = (
                frame[column]
                .astype(str)
                .str.replace(".", "", regex=False)
                .str.replace(",", ".", regex=False)
            )
            frame[column] = pd.to_numeric(cleaned, errors="coerce")


def _check_columns(columns: list[str], name: str) -> None:
    stripped = [str(c).strip() for c in columns]
    seen: dict[str, int] = {}
    for position, column in enumerate(stripped, start=1):
        if column in seen:
            raise DataError(
                f"{Path(name).name} has the column name {column!r} twice (columns {seen[column]} "
                f"and {position}): rename one of them so every column name is unique."
            )
        seen[column] = position
