"""Features and a target from a daily price table, computed without look-ahead.

Every feature at row t reads only rows at or before t of the same ticker; only the target looks
forward (by ``horizon`` rows). Rows whose features are still warming up or whose target lies past
the end of the series are dropped, so the frame that comes back can go straight to training.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .schema import parse_datetime, to_number

logger = logging.getLogger(__name__)

TARGETS = ("direction", "return")
MAX_BAD_DATES = 0.1  # above this share of unparseable dates the column is not a date column

# Candidate names, best first, compared after lower-casing and folding "_"/"-" to spaces.
# Adjusted close comes before close: raw closes jump at splits and dividends, faking returns.
_DATE_NAMES = ("date", "datetime", "timestamp", "time", "day", "trade date")
_CLOSE_NAMES = (
    "adj close",
    "adjusted close",
    "adj close price",
    "adjclose",
    "close",
    "close price",
    "closing price",
    "price",
    "last",
    "last price",
)
_VOLUME_NAMES = ("volume", "vol", "shares traded")
_GROUP_NAMES = ("ticker", "symbol", "instrument", "security", "isin", "asset")


def market_columns(frame: pd.DataFrame) -> dict[str, str | None] | None:
    """Guess {date, close, volume, group} column names; None when no date and close pair is found.

    ``volume`` and ``group`` are None when absent, so the dict can be passed on as keywords:
    ``derive_market_features(frame, **market_columns(frame))``.
    """
    by_name: dict[str, str] = {}
    for column in frame.columns:
        by_name.setdefault(re.sub(r"[_\-\s]+", " ", str(column)).strip().lower(), str(column))

    def first(candidates: Sequence[str]) -> str | None:
        return next((by_name[name] for name in candidates if name in by_name), None)

    date, close = first(_DATE_NAMES), first(_CLOSE_NAMES)
    if date is None or close is None:
        return None
    return {
        "date": date,
        "close": close,
        "volume": first(_VOLUME_NAMES),
        "group": first(_GROUP_NAMES),
    }


_LEVEL_NAMES = ("open", "high", "low", "adj open", "adj high", "adj low", "vwap")


def price_level_columns(frame: pd.DataFrame, columns: dict[str, str | None]) -> list[str]:
    """The raw levels of a market table (prices, volume): inputs to leave out once returns,
    volatility and volume ratios are derived. A level trends and drifts out of the range seen in
    training, so a model reading it learns the period rather than the pattern."""
    folded = {re.sub(r"[_\-\s]+", " ", str(c)).strip().lower(): str(c) for c in frame.columns}
    names = [*_CLOSE_NAMES, *_VOLUME_NAMES, *_LEVEL_NAMES]
    levels = {folded[n] for n in names if n in folded}
    levels |= {c for c in (columns.get("close"), columns.get("volume")) if c in frame.columns}
    return [str(c) for c in frame.columns if str(c) in levels]


def derive_market_features(
    frame: pd.DataFrame,
    *,
    date: str,
    close: str,
    volume: str | None = None,
    group: str | None = None,
    horizon: int = 1,
    target: str = "direction",
    lags: Sequence[int] = (1, 5, 20),
    vol_window: int = 20,
) -> pd.DataFrame:
    """The table sorted by (group, date) with past-only features and a forward target added.

    Added columns: ``return_{k}d`` for each lag k, ``volatility_{vol_window}d`` (std of the last
    ``vol_window`` daily log returns, ending at t), and with ``volume``: ``log_volume`` (log1p) and
    ``volume_ratio_{vol_window}d`` (volume at t over the mean of the ``vol_window`` rows *before* t,
    so the baseline is not diluted by the day it is compared with). The target is
    ``next_{horizon}d_direction`` ("up"/"down") or ``next_{horizon}d_return`` (float).
    """
    lags = _check_options(horizon=horizon, target=target, lags=lags, vol_window=vol_window)
    for name in (date, close, volume, group):
        if name is not None and name not in frame.columns:
            raise DataError(f"Column {name!r} is not in the table: name one of its columns.")
    table = frame.reset_index(drop=True)
    table = _sorted_by_time(table, date=date, group=group)
    # Positions in the file survive the sort, so messages can name the row a user sees.
    file_rows = table.pop("__row__").to_numpy() + 2
    prices = _positive_prices(table[close], close, file_rows)
    keys = table[group].astype(str) if group is not None else pd.Series("", index=table.index)
    by_group = pd.Series(prices).groupby(keys.to_numpy(), sort=False)

    features: dict[str, pd.Series] = {}
    for k in lags:
        features[f"return_{k}d"] = prices / by_group.shift(k) - 1
    log_return = np.log(prices / by_group.shift(1))
    features[f"volatility_{vol_window}d"] = log_return.groupby(
        keys.to_numpy(), sort=False
    ).transform(lambda s: s.rolling(vol_window, min_periods=vol_window).std())
    if volume is not None:
        volumes = pd.Series(_volumes(table[volume], volume, file_rows))
        grouped = volumes.groupby(keys.to_numpy(), sort=False)
        baseline = grouped.transform(
            lambda s: s.shift(1).rolling(vol_window, min_periods=vol_window).mean()
        )
        features[f"volume_ratio_{vol_window}d"] = volumes / baseline.where(baseline > 0)
        features["log_volume"] = np.log1p(volumes)

    future = by_group.shift(-horizon) / prices - 1
    if target == "direction":
        target_name = f"next_{horizon}d_direction"
        target_values = pd.Series(np.where(future > 0, "up", "down"), dtype=object).where(
            future.notna()
        )
    else:
        target_name = f"next_{horizon}d_return"
        target_values = future

    clashes = [name for name in [*features, target_name] if name in table.columns]
    if clashes:
        raise DataError(
            f"The table already has a column {clashes[0]!r}, which this helper adds: rename or "
            "drop it (if it came from an earlier run of the helper, start from the original price "
            "table)."
        )
    out = table.assign(**features, **{target_name: target_values})
    # Warm-up is positional (not "any NaN") so a missing volume later on keeps its row.
    position = by_group.cumcount().to_numpy()
    warm_up = max(max(lags), vol_window)
    keep = (position >= warm_up) & future.notna().to_numpy()
    out = out.loc[keep].reset_index(drop=True)
    if out.empty:
        raise DataError(
            f"No rows left: each {'ticker' if group else 'series'} needs more than "
            f"{warm_up + horizon} dated prices ({warm_up} to warm up the features, {horizon} for "
            "the target). Use a longer history or smaller lags and vol_window."
        )
    logger.info(
        "Derived %d market features and %r on %d of %d rows",
        len(features),
        target_name,
        len(out),
        len(frame),
    )
    return out


def _check_options(*, horizon, target, lags, vol_window) -> tuple[int, ...]:
    if target not in TARGETS:
        raise ConfigError(f"Market target {target!r} is unknown: use 'direction' or 'return'.")
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ConfigError(f"horizon is {horizon!r}: use a whole number of rows, 1 or more.")
    if not isinstance(vol_window, int | np.integer) or vol_window < 2:
        raise ConfigError(f"vol_window is {vol_window!r}: use a whole number of rows, 2 or more.")
    lags = tuple(lags)
    if not lags or any(not isinstance(k, int | np.integer) or k < 1 for k in lags):
        raise ConfigError(
            f"lags are {lags!r}: give one or more whole numbers of rows, each 1 or more."
        )
    return tuple(sorted(set(int(k) for k in lags)))


def _sorted_by_time(table: pd.DataFrame, *, date: str, group: str | None) -> pd.DataFrame:
    """Rows with a date, sorted by (group, date); DataError on a non-date column or a repeated
    date."""
    stamps = parse_datetime(table[date])
    bad = stamps.isna()
    if bad.mean() > MAX_BAD_DATES:
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"Column {date!r} is not a date column: {bad.mean():.0%} of its values cannot be read "
            f"as dates (first at row {row + 2}: {table[date].iloc[row]!r}). Name the column with "
            "the dates."
        )
    if bad.any():
        logger.warning("Dropping %d rows whose %r is not a date", int(bad.sum()), date)
    table = table.assign(__row__=np.arange(len(table)), __stamp__=stamps)
    table = table.loc[~bad.to_numpy()]
    by = ["__stamp__"] if group is None else ["__group__", "__stamp__"]
    if group is not None:
        table = table.assign(__group__=table[group].astype(str))
    table = table.sort_values(by, kind="mergesort")
    repeated = table.duplicated(by, keep=False).to_numpy()
    if repeated.any():
        first = table.loc[repeated].iloc[0]
        same = repeated & (table["__stamp__"] == first["__stamp__"]).to_numpy()
        if group is not None:
            same &= (table["__group__"] == first["__group__"]).to_numpy()
        rows = ", ".join(str(r + 2) for r in table.loc[same, "__row__"])
        where = f" for {group} {first[group]!r}" if group is not None else ""
        fix = (
            f"keep one row per day and {group}"
            if group is not None
            else ("keep one row per day, or name the ticker column as group")
        )
        raise DataError(
            f"Date {first[date]!r} appears more than once in column {date!r}{where} (rows {rows}): "
            f"{fix}."
        )
    helpers = [c for c in ("__stamp__", "__group__") if c in table.columns]
    return table.drop(columns=helpers).reset_index(drop=True)


def _positive_prices(series: pd.Series, name: str, file_rows: np.ndarray) -> np.ndarray:
    prices = to_number(series)
    bad = ~(prices > 0)  # NaN compares False, so missing and non-numeric land here too
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"Column {name!r} holds {series.iloc[i]!r} at row {file_rows[i]}: prices must be "
            f"positive numbers ({int(bad.sum())} rows are not). Fix or remove those rows."
        )
    return prices


def _volumes(series: pd.Series, name: str, file_rows: np.ndarray) -> np.ndarray:
    volumes = to_number(series)  # a missing volume is allowed: its features become NaN
    negative = volumes < 0
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise DataError(
            f"Column {name!r} holds {series.iloc[i]!r} at row {file_rows[i]}: volumes cannot be "
            "negative. Fix the value or leave the volume column out."
        )
    return volumes
