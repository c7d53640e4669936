"""Turn table rows into what the model reads: texts for the backbone, cells and numbers.

Two encodings (``ModelConfig.table_encoding``):

- **cells** (the default): each categorical cell becomes an id into a vocabulary of
  ``"purpose: new car"`` strings that the backbone encodes once per distinct value; numbers get
  per-feature bins for piecewise-linear embeddings; only free-text columns form the row's text.
- **row text**: categorical values (and, when there would be no text at all, binned numbers) are
  serialised as ``purpose: new car | housing: own`` next to any free-text columns, one string per
  row; numbers also go through a linear encoder.

Everything is fitted on the training split only and saved as JSON beside the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .schema import TableSpec, parse_datetime, target_labels, to_number

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000  # a 1 MB cell would only be truncated by the tokenizer anyway
MAX_COLUMN_WARNINGS = 20  # then one line counts the rest: not 100,000 lines for 100,000 columns
_BIN_WORDS = ("very low", "low", "medium", "high", "very high")
TABLE_ENCODINGS = ("auto", "cells", "row_text")
MAX_CELL_VALUES = 256  # per column; rarer values share the column's "(other)" cell
MAX_CELL_CHARS = 120  # a cell string is a short phrase; long values belong in a text column
NUMERIC_BINS = 16  # piecewise-linear bins per number, at training quantiles
_MISSING_CELL = "(missing)"
_OTHER_CELL = "(other)"


@dataclass
class Features:
    """Model inputs for a batch of rows."""

    texts: list[str]
    numeric: np.ndarray  # (N, d_numeric_in) float32
    cells: np.ndarray | None = None  # (N, n_cell_columns) int64 ids into the cell vocabulary


def pretty_name(column: str) -> str:
    """A column name as the backbone reads it: "credit_amount" -> "credit amount"."""
    return str(column).replace("_", " ").strip()


class Preprocessor:
    """Fitted on the training rows; turns any table with the same columns into :class:`Features`."""

    def __init__(
        self, spec: TableSpec, *, numeric_in_text: str = "auto", table_encoding: str = "auto"
    ):
        self.spec = spec
        self.numeric_in_text = numeric_in_text
        self.table_encoding = table_encoding
        self.numeric_stats_: dict[str, dict[str, float]] = {}
        self.bin_edges_: dict[str, list[float]] = {}
        self.text_numeric_: bool = False
        self.target_stats_: dict[str, float] = {}
        self.encoding_: str = "row_text"
        self.cell_values_: dict[str, list[str]] = {}  # column -> its values with a vector each
        self.numeric_bins_: list[list[float]] = []  # bin edges per numeric input (cells only)

    # ----------------------------------------------------------------- fit / state

    def fit(self, train: pd.DataFrame) -> Preprocessor:
        for column in self.spec.columns("numeric"):
            values = to_number(train[column])
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                finite = np.zeros(1)
            low, high = np.percentile(finite, [0.5, 99.5])
            clipped = np.clip(finite, low, high)
            self.numeric_stats_[column] = {
                "low": float(low),
                "high": float(high),
                "median": float(np.median(finite)),
                "mean": float(clipped.mean()),
                "std": float(clipped.std()) or 1.0,
                "has_missing": bool((~np.isfinite(values)).any()),
            }
            edges = np.unique(np.quantile(finite, [0.2, 0.4, 0.6, 0.8]))
            self.bin_edges_[column] = [float(e) for e in edges]
        self.encoding_ = resolve_table_encoding(self.table_encoding)
        if self.encoding_ == "cells":
            self.text_numeric_ = False
            for column in self.spec.columns("categorical"):
                self.cell_values_[column] = _frequent_values(train[column])
            self.numeric_bins_ = numeric_bins(self.numeric(train))
        else:
            has_words = bool(self.spec.columns("text") or self.spec.columns("categorical"))
            self.text_numeric_ = self.numeric_in_text == "always" or (
                self.numeric_in_text == "auto" and not has_words
            )
        if self.spec.task == "regression":
            y = pd.to_numeric(train[self.spec.target], errors="coerce").to_numpy(dtype=float)
            self.target_stats_ = {"mean": float(np.nanmean(y)), "std": float(np.nanstd(y)) or 1.0}
        return self

    def state_dict(self) -> dict:
        return {
            "spec": self.spec.to_dict(),
            "numeric_in_text": self.numeric_in_text,
            "numeric_stats": self.numeric_stats_,
            "bin_edges": self.bin_edges_,
            "text_numeric": self.text_numeric_,
            "target_stats": self.target_stats_,
            "table_encoding": self.table_encoding,
            "encoding": self.encoding_,
            "cell_values": self.cell_values_,
            "numeric_bins": self.numeric_bins_,
        }

    @classmethod
    def from_state(cls, state: dict) -> Preprocessor:
        pre = cls(
            TableSpec.from_dict(state["spec"]),
            numeric_in_text=state["numeric_in_text"],
            # Models saved before cells existed read whole rows as text.
            table_encoding=state.get("table_encoding", "row_text"),
        )
        pre.encoding_ = state.get("encoding", "row_text")
        pre.cell_values_ = state.get("cell_values", {})
        pre.numeric_bins_ = state.get("numeric_bins", [])
        pre.numeric_stats_ = state["numeric_stats"]
        pre.bin_edges_ = state["bin_edges"]
        pre.text_numeric_ = state["text_numeric"]
        pre.target_stats_ = state["target_stats"]
        return pre

    # ----------------------------------------------------------------- transform

    @property
    def numeric_names(self) -> list[str]:
        """Names of the numeric input vector's entries, in order."""
        names = []
        for column, stats in self.numeric_stats_.items():
            names.append(column)
            if stats["has_missing"]:
                names.append(f"{column} (missing)")
        for column in self.spec.columns("datetime"):
            names += [f"{column} ({part})" for part in DATE_PART_NAMES]
        return names

    def check_columns(self, frame: pd.DataFrame) -> list[str]:
        """Raise on missing feature columns; return warnings for extra ones."""
        needed = self.spec.feature_columns
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(
                f"The file lacks column(s) {', '.join(map(repr, missing))} that the model was "
                "trained on: "
                "add them (empty values are allowed)."
            )
        return column_warnings(self.unused_columns(frame.columns))

    def unused_columns(self, columns) -> list:
        """The names in ``columns`` the model does not read (neither an input nor the target)."""
        known = set(self.spec.roles) | {self.spec.target}
        return [c for c in columns if c not in known]

    def transform(self, frame: pd.DataFrame) -> Features:
        self.check_columns(frame)
        return Features(
            texts=self.texts(frame), numeric=self.numeric(frame), cells=self.cells(frame)
        )

    @property
    def reads_row_text(self) -> bool:
        """Whether each row has a text for the backbone (free text, or the row-text encoding)."""
        return self.encoding_ == "row_text" or bool(self.spec.columns("text"))

    @property
    def cell_columns(self) -> list[str]:
        """The columns read as cells, in the order of the cell ids."""
        return list(self.cell_values_)

    @property
    def cell_vocabulary(self) -> list[str]:
        """Every cell string the backbone encodes: per column its values, missing and other."""
        vocabulary = []
        for column, values in self.cell_values_.items():
            label = pretty_name(column)
            vocabulary += [f"{label}: {value}" for value in [*values, _MISSING_CELL, _OTHER_CELL]]
        return vocabulary

    def cells(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Cell ids (N, n_cell_columns) into :attr:`cell_vocabulary`; None without cells."""
        if not self.cell_values_:
            return None
        ids, offset = [], 0
        for column, values in self.cell_values_.items():
            cleaned = frame[column].map(_cell_text)
            position = cleaned.map({value: i for i, value in enumerate(values)})  # NaN: unseen
            missing, other = offset + len(values), offset + len(values) + 1
            column_ids = np.where(
                cleaned.eq("").to_numpy(),
                missing,
                np.where(position.isna().to_numpy(), other, offset + position.fillna(0).to_numpy()),
            )
            ids.append(column_ids.astype(np.int64))
            offset += len(values) + 2
        return np.stack(ids, axis=1)

    def texts(self, frame: pd.DataFrame) -> list[str]:
        parts: list[list[str]] = [[] for _ in range(len(frame))]
        for column in self.spec.columns("text"):
            self._add_parts(parts, column, frame[column].map(_clean_text))
        if self.encoding_ == "cells":
            return [" | ".join(p) if p else "" for p in parts]
        for column in self.spec.columns("categorical"):
            self._add_parts(parts, column, frame[column].map(_clean_text))
        if self.text_numeric_:
            for column in self.numeric_stats_:
                self._add_parts(parts, column, self._bin_words(frame[column]))
        return [" | ".join(p) if p else "(no text)" for p in parts]

    @staticmethod
    def _add_parts(parts: list[list[str]], column: str, values: pd.Series) -> None:
        label = pretty_name(column)
        for row, value in enumerate(values.tolist()):
            if value:
                parts[row].append(f"{label}: {value}")

    def _bin_words(self, series: pd.Series) -> pd.Series:
        values = to_number(series)
        edges = self.bin_edges_[series.name]
        index = np.searchsorted(edges, values, side="right")
        words = np.array(_BIN_WORDS)[np.clip(index, 0, len(_BIN_WORDS) - 1)]
        return pd.Series(np.where(np.isfinite(values), words, ""), index=series.index)

    def numeric(self, frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for column, stats in self.numeric_stats_.items():
            values = to_number(frame[column])
            missing = ~np.isfinite(values)
            filled = np.where(missing, stats["median"], values)
            clipped = np.clip(filled, stats["low"], stats["high"])
            columns.append((clipped - stats["mean"]) / stats["std"])
            if stats["has_missing"]:
                columns.append(missing.astype(float))
        for column in self.spec.columns("datetime"):
            columns += list(date_parts(frame[column]).T)
        if not columns:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.stack(columns, axis=1).astype(np.float32)  # (N, d_numeric_in)

    # ----------------------------------------------------------------- target

    def encode_target(self, frame: pd.DataFrame) -> np.ndarray:
        y = frame[self.spec.target]
        if self.spec.task == "regression":
            values = pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
            return ((values - self.target_stats_["mean"]) / self.target_stats_["std"]).astype(
                np.float32
            )
        index = {label: i for i, label in enumerate(self.spec.classes)}
        labels = target_labels(y)
        unknown = sorted(set(labels.dropna()) - set(index))
        if unknown:
            raise DataError(
                f"Target {self.spec.target!r} has label(s) {unknown[:5]} not seen in training: "
                "score them with a model trained on those classes."
            )
        return labels.map(index).to_numpy(dtype=np.int64)

    def decode_regression(self, scaled: np.ndarray) -> np.ndarray:
        return scaled * self.target_stats_["std"] + self.target_stats_["mean"]


DATE_PART_NAMES = ("month sin", "month cos", "weekday")


def resolve_table_encoding(setting: str) -> str:
    """The encoding a table gets: ``auto`` reads tables by their cells (a text-only table reads
    the same either way). Choosing per table by measurement is still open (issue 16)."""
    if setting not in TABLE_ENCODINGS:
        raise DataError(f"Table encoding {setting!r} is unknown: use auto, cells or row_text.")
    return "row_text" if setting == "row_text" else "cells"


def numeric_bins(numeric: np.ndarray, n_bins: int = NUMERIC_BINS) -> list[list[float]]:
    """Bin edges per column of the training rows' numeric inputs, at quantiles (at least two)."""
    bins = []
    for values in numeric.T:
        edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)))
        if len(edges) < 2:  # a constant column: one bin around its value
            edges = np.array([edges[0] - 1.0, edges[0] + 1.0])
        bins.append([float(e) for e in edges])
    return bins


def date_parts(values: pd.Series) -> np.ndarray:
    """The derived features of a date column, (N, 3): month on a circle and centred weekday.

    One home for the network and the tree model, so both read a date the same way.
    """
    stamps = parse_datetime(values)
    month = stamps.dt.month.fillna(6).to_numpy(dtype=float)
    weekday = stamps.dt.weekday.fillna(3).to_numpy(dtype=float)
    angle = 2 * np.pi * month / 12
    return np.stack([np.sin(angle), np.cos(angle), (weekday - 3) / 2], axis=1)


def column_warnings(unused) -> list[str]:
    """One warning per column the model does not use: at most ``MAX_COLUMN_WARNINGS``, then a count.

    A file or request with 100,000 stray columns gets 21 lines; long names are cut short.
    """
    unused = list(unused)
    warnings = [
        f"Column {_short_name(c)} was not seen in training and is ignored."
        for c in unused[:MAX_COLUMN_WARNINGS]
    ]
    if len(unused) > MAX_COLUMN_WARNINGS:
        more = len(unused) - MAX_COLUMN_WARNINGS
        warnings.append(f"... and {more:,} more columns the model does not use.")
    return warnings


def _short_name(column) -> str:
    text = repr(column)
    return text if len(text) <= 80 else text[:77] + "..."


def _frequent_values(values: pd.Series) -> list[str]:
    """A column's training values that get their own cell, most frequent first."""
    counts = values.map(_cell_text).value_counts()
    counts = counts[counts.index != ""]
    return [str(v) for v in counts.index[:MAX_CELL_VALUES]]


def _cell_text(value) -> str:
    return _clean_text(value)[:MAX_CELL_CHARS]


def _clean_text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    text = " ".join(str(value).split())  # newlines and runs of spaces cost tokens, carry nothing
    return text[:MAX_TEXT_CHARS]
