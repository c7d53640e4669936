"""Data intake: read a table, infer column roles and the task, validate, split.

Everything here raises :class:`DataError` with the column or row and the fix; nothing raises a
pandas traceback at the user.
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import DataError

logger = logging.getLogger(__name__)

MAX_CLASSES = 1000
MIN_ROWS = 20
_ID_NAME = re.compile(r"(^|[_\s-])(id|uuid|guid|key|number|no|nr)$|^id[_\s-]|identifier", re.I)
_DATE_HINT = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{4}-\d{2}|\d{1,2}:\d{2}")
_DATE_NAME = re.compile(r"date|time|day|period|month", re.I)


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


def read_table(source: str | Path | bytes | BinaryIO, *, filename: str | None = None) -> pd.DataFrame:
    """Read a CSV (any common delimiter; UTF-8, UTF-8 with BOM, UTF-16 or latin-1) or Parquet file.

    Tables over MAX_CELLS cells, or Parquet files over MAX_DECODED_BYTES once decoded, are refused
    before they are built.
    """
    name = filename or (str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "upload"))
    raw = _read_bytes(source, name)
    if not raw.strip():
        raise DataError(f"{Path(name).name} is empty: choose a file with a header row and data rows.")
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

    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
            or str(kind) in ("string_view", "binary_view"))


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
        # UTF-16 text holds NULs (every ASCII character has one); a BOM in front of 8-bit text does not.
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
            f"{Path(name).name} looks like a binary file, not CSV text: export the table as CSV or Parquet."
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
        raise DataError(f"{short} has no readable header row: the first line must name the columns.") from exc
    _check_columns(header, short)
    # Physical lines bound the rows (a quoted cell may span lines): cheap, and before any parsing.
    _check_cells(max(text.count("\n") or text.count("\r"), 1), len(header), short, estimate=True)
    try:
        frame = _parse_csv(text, delimiter, header, first_row, short)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{short} is empty: choose a file with a header row and data rows.") from exc
    except pd.errors.ParserError as exc:
        row = re.search(r"line (\d+)", str(exc))
        where = f" at line {row.group(1)}" if row else ""
        raise DataError(
            f"{short} could not be parsed{where} ({_one_line(exc)}). Check that every row has as many fields as the "
            f"header and that quotes are balanced."
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
    """Semicolon files come from locales that write "1.234,5": turn such text columns into numbers."""
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column].dropna().astype(str)
        if len(values) and values.str.match(_DECIMAL_COMMA).mean() > 0.9:
            cleaned = frame[column].astype(str).str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
            frame[column] = pd.to_numeric(cleaned, errors="coerce")


def _check_columns(columns: list[str], name: str) -> None:
    stripped = [str(c).strip() for c in columns]
    seen: dict[str, int] = {}
    for position, column in enumerate(stripped, start=1):
        if column in seen:
            raise DataError(
                f"{Path(name).name} has the column name {column!r} twice (columns {seen[column]} and "
                f"{position}): rename one of them so every column name is unique."
            )
        seen[column] = position


# --------------------------------------------------------------------------- roles and task


def infer_roles(frame: pd.DataFrame, target: str | None = None) -> dict[str, str]:
    """Guess each column's role: numeric, categorical, text, datetime, id, or ignore (constant)."""
    return {c: _infer_role(frame[c], c) for c in frame.columns if c != target}


def _infer_role(series: pd.Series, name: str) -> str:
    values = series.dropna()
    if values.empty or values.nunique() <= 1:
        return "ignore"
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series):
        if _ID_NAME.search(name) and values.nunique() == len(values):
            return "id"
        return "numeric"
    strings = values.astype(str)
    if _looks_datetime(strings):
        return "datetime"
    if np.isfinite(to_number(strings)).mean() > 0.98:
        return "numeric"  # numbers stored as text: "1,234.50", "$12", "3.5%"
    n_unique = strings.nunique()
    unique_ratio = n_unique / len(strings)
    mean_words = strings.str.split().str.len().mean()
    if n_unique <= 50 or unique_ratio < 0.05:
        return "categorical"
    if unique_ratio > 0.98 and (_ID_NAME.search(name) or mean_words < 1.5):
        return "id"
    if mean_words >= 2 or strings.str.len().mean() >= 20:
        return "text"
    return "categorical"


_NUMBER_NOISE = re.compile(r"[,\s$€£¥%]")


def to_number(series: pd.Series) -> np.ndarray:
    """Floats from a column, reading "1,234.50", "$12" and "3.5%" as numbers; NaN where not a number."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan).copy()
    else:
        cleaned = series.astype(str).str.replace(_NUMBER_NOISE, "", regex=True)
        values = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=float, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _looks_datetime(strings: pd.Series) -> bool:
    sample = strings.head(200)
    if sample.str.len().max() > 40 or not sample.str.contains(_DATE_HINT).mean() > 0.9:
        return False
    return parse_datetime(sample).notna().mean() > 0.9


def parse_datetime(series: pd.Series) -> pd.Series:
    """Parse dates in ISO or common formats; unparseable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
        except (ValueError, TypeError):
            parsed = pd.Series(pd.NaT, index=series.index)
        if parsed.notna().mean() < 0.9:
            parsed = pd.to_datetime(series, errors="coerce", format="mixed", utc=True)
    return parsed.dt.tz_localize(None)


def infer_task(target: pd.Series) -> str:
    """binary, multiclass or regression, from the target's values."""
    values = target.dropna()
    n_unique = values.nunique()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        with np.errstate(invalid="ignore"):  # inf is not integral: mod gives NaN
            integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
        if n_unique > 2 and not (integral and n_unique <= 20):
            return "regression"
    return "binary" if n_unique <= 2 else "multiclass"


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class TableSpec:
    """The validated view of a table: roles per column, the task and the class labels."""

    target: str
    task: str
    roles: dict[str, str]
    classes: tuple[str, ...]  # empty for regression
    warnings: tuple[str, ...] = ()
    positive_class: str | None = None  # binary: the event class (default, fraud) the metrics score

    @property
    def positive_index(self) -> int | None:
        """Index of the positive class in ``classes`` (binary only)."""
        return self.classes.index(self.positive_class) if self.positive_class in self.classes else None

    def columns(self, role: str) -> list[str]:
        return [c for c, r in self.roles.items() if r == role]

    @property
    def feature_columns(self) -> list[str]:
        return [c for c, r in self.roles.items() if r in ("numeric", "categorical", "text", "datetime")]

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "task": self.task,
            "roles": self.roles,
            "classes": list(self.classes),
            "warnings": list(self.warnings),
            "positive_class": self.positive_class,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> TableSpec:
        return cls(
            target=raw["target"],
            task=raw["task"],
            roles=dict(raw["roles"]),
            classes=tuple(raw["classes"]),
            warnings=tuple(raw.get("warnings", ())),
            positive_class=raw.get("positive_class") or _default_positive(raw["task"], tuple(raw["classes"])),
        )


def describe_table(frame: pd.DataFrame, config: DataConfig) -> TableSpec:
    """Validate the table against the config and settle roles, task and classes."""
    _check_columns(list(map(str, frame.columns)), "The table")  # frames can arrive without read_table
    target = config.target
    if target not in frame.columns:
        close = difflib.get_close_matches(target, list(map(str, frame.columns)), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else f" Columns are: {_preview(frame.columns)}."
        raise DataError(f"Target column {target!r} is not in the table.{hint}")
    unknown = [c for c in config.roles if c not in frame.columns]
    if unknown:
        raise DataError(f"Role given for column {unknown[0]!r}, which is not in the table: fix the name.")
    notes: list[str] = []
    y = frame[target]
    missing = int(y.isna().sum())
    if missing == len(y):
        raise DataError(f"Target column {target!r} has no values: choose a column that holds the labels.")
    if missing:
        notes.append(f"{missing} rows with no value in target {target!r} are left out.")
        y = y.dropna()
    if len(y) < MIN_ROWS:
        raise DataError(f"Only {len(y)} labelled rows: FinTune needs at least {MIN_ROWS} to train and test.")
    task = config.task or infer_task(y)
    classes: tuple[str, ...] = ()
    positive_class = None
    if task == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        bad = numeric.isna() | ~np.isfinite(numeric.fillna(0).to_numpy(dtype=float))
        if bad.any():
            label = bad.idxmax()
            problem = "is not numeric" if pd.isna(numeric.loc[label]) else "is not a finite number"
            raise DataError(
                f"Target column {target!r} {problem} at row {frame.index.get_loc(label) + 2} (value "
                f"{str(y.loc[label])!r}): regression needs finite numbers; fix the value or choose a "
                "classification task."
            )
    else:
        labels = target_labels(y)
        counts = labels.value_counts()
        if len(counts) < 2:
            raise DataError(
                f"Target column {target!r} has only one class ({counts.index[0]!r}): a classifier needs at "
                "least two; choose another target or add rows of the other classes."
            )
        if len(counts) > MAX_CLASSES:
            raise DataError(
                f"Target column {target!r} has {len(counts)} classes, more than {MAX_CLASSES}: choose a "
                "coarser target, or set the task to regression if it is a number."
            )
        if task == "binary" and len(counts) > 2:
            raise DataError(f"Task is binary but {target!r} has {len(counts)} classes: set task multiclass.")
        classes = tuple(sorted(counts.index, key=_natural_key))
        if task == "binary":
            positive_class = _positive_class(config.positive_class, counts, classes, target)
    roles = infer_roles(frame, target)
    roles.update(config.roles)
    time_column = config.time_column
    if time_column is not None:
        if time_column not in frame.columns:
            raise DataError(f"Split column {time_column!r} is not in the table: name a date column.")
        if time_column == target:
            raise DataError("The chronological split column cannot be the target: name a date column.")
    if not any(role in ("numeric", "categorical", "text", "datetime") for role in roles.values()):
        raise DataError(
            f"No usable feature: every column besides {target!r} is an identifier, constant or ignored. "
            "Add feature columns or change a column's role."
        )
    if config.positive_class is not None and task != "binary":
        raise DataError(f"A positive class is for binary targets, and {target!r} is {task}: leave it unset.")
    return TableSpec(target=target, task=task, roles=roles, classes=classes, warnings=tuple(notes),
                     positive_class=positive_class)


def _positive_class(given: str | None, counts: pd.Series, classes: tuple[str, ...], target: str) -> str:
    """The event class: the one given, else the rarer class (defaults and frauds are the minority)."""
    if given is not None:
        if str(given) not in classes:
            raise DataError(
                f"Positive class {given!r} is not a value of {target!r}: choose one of {list(classes)}."
            )
        return str(given)
    rarest = counts[counts == counts.min()].index
    return max(rarest, key=_natural_key)  # a tie (50/50) keeps the conventional "1" / later label


def _default_positive(task: str, classes: tuple[str, ...]) -> str | None:
    """Specs saved before positive classes existed scored ``classes[1]``."""
    return classes[1] if task == "binary" and len(classes) == 2 else None


def target_labels(y: pd.Series) -> pd.Series:
    """Class labels as strings; integral floats (1.0) read as integers (1)."""
    if pd.api.types.is_float_dtype(y) and np.all(np.mod(y.dropna().to_numpy(), 1) == 0):
        y = y.astype("Int64")
    return y.astype(str).where(y.notna())


def _natural_key(label: str):
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _preview(columns, n: int = 8) -> str:
    names = [repr(str(c)) for c in list(columns)[:n]]
    return ", ".join(names) + (", ..." if len(columns) > n else "")


# --------------------------------------------------------------------------- splitting


def resolve_split(spec: TableSpec, config: DataConfig) -> str:
    """The split a config means for this table: ``auto`` is by time when there is a date column."""
    if config.split != "auto":
        return config.split
    dates = spec.columns("datetime")
    if not dates:
        return "random"
    named = [c for c in dates if _DATE_NAME.search(str(c))]
    return f"time:{(named or dates)[0]}"


def describe_split(spec: TableSpec, config: DataConfig) -> str:
    """One line for people: "chronological by 'date' (embargo 5 dates)" or "stratified random"."""
    split = resolve_split(spec, config)
    if split == "random":
        return "stratified random" if spec.task != "regression" else "random"
    embargo = f", embargo {config.embargo} dates" if config.embargo else ""
    return f"chronological by {split[5:]!r}{embargo}"


def split_rows(frame: pd.DataFrame, spec: TableSpec, config: DataConfig, seed: int) -> dict[str, np.ndarray]:
    """Row positions for train / val / test (labelled rows only)."""
    labelled = np.flatnonzero(frame[spec.target].notna().to_numpy())
    split = resolve_split(spec, config)
    if split.startswith("time:"):
        return _chronological_split(frame, labelled, split[5:], config)
    return _random_split(frame, spec, labelled, config, seed)


def _random_split(frame, spec, rows, config, seed) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    strata = None
    if spec.task != "regression":
        labels = target_labels(frame[spec.target].iloc[rows])
        if labels.value_counts().min() >= 3:
            strata = labels.to_numpy()
    holdout = config.val_fraction + config.test_fraction
    train, rest = train_test_split(rows, test_size=holdout, random_state=seed, stratify=strata)
    rest_strata = None
    if strata is not None:
        rest_labels = target_labels(frame[spec.target].iloc[rest])
        if rest_labels.value_counts().min() >= 2:
            rest_strata = rest_labels.to_numpy()
    val, test = train_test_split(
        rest, test_size=config.test_fraction / holdout, random_state=seed, stratify=rest_strata
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _chronological_split(frame, rows, column, config) -> dict[str, np.ndarray]:
    times = parse_datetime(frame[column].iloc[rows])
    if times.isna().mean() > 0.5:
        raise DataError(f"Column {column!r} does not hold dates: choose a date column for the time split.")
    keep = times.notna().to_numpy()
    rows, times = rows[keep], times[keep]
    order = np.argsort(times.to_numpy(), kind="stable")
    rows, stamps = rows[order], times.to_numpy()[order]
    n = len(rows)
    # Cut at timestamp boundaries so no later split holds a row from the same instant as train.
    cut_val = _boundary(stamps, int(round(n * (1 - config.val_fraction - config.test_fraction))))
    cut_test = _boundary(stamps, int(round(n * (1 - config.test_fraction))))
    # The embargo drops the first dates after each cut, so labels that look ahead (a 5-day return)
    # cannot overlap the next period's rows.
    val_start = _skip_dates(stamps, cut_val, config.embargo)
    test_start = _skip_dates(stamps, cut_test, config.embargo)
    parts = {"train": rows[:cut_val], "val": rows[val_start:cut_test], "test": rows[test_start:]}
    for name, part in parts.items():
        if len(part) == 0:
            embargo = f" after an embargo of {config.embargo} dates" if config.embargo else ""
            raise DataError(
                f"The time split by {column!r} leaves the {name} split empty{embargo}: too few distinct "
                "dates; use a smaller embargo, a random split or a finer date column."
            )
    return parts


def _skip_dates(stamps: np.ndarray, position: int, n_dates: int) -> int:
    """The position ``n_dates`` distinct dates after ``position``."""
    for _ in range(n_dates):
        if position >= len(stamps):
            break
        position = _boundary(stamps, position + 1) if position + 1 < len(stamps) else len(stamps)
    return position


def _boundary(stamps: np.ndarray, position: int) -> int:
    position = min(max(position, 1), len(stamps) - 1)
    while position < len(stamps) and stamps[position] == stamps[position - 1]:
        position += 1
    return position
