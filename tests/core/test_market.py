"""Market features: values by hand, no look-ahead, tickers kept apart, and errors that name the
row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.market import derive_market_features, market_columns, price_level_columns
from core.errors import ConfigError, DataError

FEATURES = [
    "return_1d",
    "return_5d",
    "return_20d",
    "volatility_20d",
    "volume_ratio_20d",
    "log_volume",
]


def random_walk(n: int = 300, seed: int = 0, start: str = "2022-01-03") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "date": pd.bdate_range(start, periods=n).strftime("%Y-%m-%d"),
            "close": 100 * np.exp(np.cumsum(rng.normal(0, 0.02, size=n))),
            "volume": rng.integers(1_000, 5_000, size=n).astype(float),
            "headline": [f"day {i} news" for i in range(n)],
        }
    )


# --------------------------------------------------------------------------- values


def test_features_match_hand_computation():
    closes = [10.0, 11.0, 12.1, 11.0, 13.2, 14.0]
    volumes = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
    frame = pd.DataFrame(
        {"day": pd.date_range("2024-03-01", periods=6), "px": closes, "vol": volumes}
    )
    out = derive_market_features(
        frame, date="day", close="px", volume="vol", lags=(1, 2), vol_window=3
    )
    # Warm-up is max(lags, vol_window) = 3 rows; the last row has no next close.
    assert len(out) == 2
    assert list(out.index) == [0, 1]
    assert out["return_1d"].tolist() == pytest.approx([11.0 / 12.1 - 1, 13.2 / 11.0 - 1])
    assert out["return_2d"].tolist() == pytest.approx([11.0 / 11.0 - 1, 13.2 / 12.1 - 1])
    log_returns = np.diff(np.log(closes))
    assert out["volatility_3d"].tolist() == pytest.approx(
        [np.std(log_returns[0:3], ddof=1), np.std(log_returns[1:4], ddof=1)]
    )
    # The baseline is the mean of the 3 rows before t, not including t.
    assert out["volume_ratio_3d"].tolist() == pytest.approx([400 / 200, 500 / 300])
    assert out["log_volume"].tolist() == pytest.approx(np.log1p([400.0, 500.0]))
    assert out["next_1d_direction"].tolist() == ["up", "up"]

    returns = derive_market_features(
        frame, date="day", close="px", lags=(1, 2), vol_window=3, target="return", horizon=2
    )
    assert returns["next_2d_return"].tolist() == pytest.approx([14.0 / 11.0 - 1])
    assert "volume_ratio_3d" not in returns.columns


def test_sorts_by_date_and_keeps_original_columns():
    frame = random_walk(60)
    shuffled = frame.sample(frac=1.0, random_state=1)
    a = derive_market_features(frame, date="date", close="close", volume="volume")
    b = derive_market_features(shuffled, date="date", close="close", volume="volume")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns[:4]) == ["date", "close", "volume", "headline"]
    assert len(a) == 60 - 20 - 1
    assert a["date"].is_monotonic_increasing


def test_flat_price_is_down():
    frame = random_walk(30)
    frame.loc[25, "close"] = frame.loc[24, "close"]
    out = derive_market_features(frame, date="date", close="close", lags=(1,), vol_window=5)
    row = out.index[out["date"] == frame.loc[24, "date"]][0]
    assert out.loc[row, "next_1d_direction"] == "down"


# --------------------------------------------------------------------------- no look-ahead


@pytest.mark.parametrize("horizon", [1, 5])
def test_changing_the_future_leaves_past_features_and_targets_alone(horizon):
    frame = random_walk(300)
    cut = pd.Timestamp(frame.loc[200, "date"])
    before = derive_market_features(
        frame, date="date", close="close", volume="volume", horizon=horizon, target="return"
    )
    wild = frame.copy()
    after_cut = pd.to_datetime(wild["date"]) > cut
    wild.loc[after_cut, "close"] *= 100
    wild.loc[after_cut, "volume"] *= 1000
    after = derive_market_features(
        wild, date="date", close="close", volume="volume", horizon=horizon, target="return"
    )

    dates = pd.to_datetime(before["date"])
    past = (dates <= cut).to_numpy()
    assert past.sum() > 100
    pd.testing.assert_frame_equal(before.loc[past, FEATURES], after.loc[past, FEATURES])
    # A target looks `horizon` rows ahead by design; those whose window ends by the cut are fixed.
    target = f"next_{horizon}d_return"
    settled = past.copy()
    settled[np.flatnonzero(past)[-horizon:]] = False
    pd.testing.assert_series_equal(before.loc[settled, target], after.loc[settled, target])
    assert not np.allclose(before.loc[past & ~settled, target], after.loc[past & ~settled, target])


def test_no_derived_feature_copies_the_target():
    frame = random_walk(300, seed=4)
    # Future information planted by the user; the helper keeps it but must not create its own.
    frame["planted_next_return"] = frame["close"].shift(-1) / frame["close"] - 1
    out = derive_market_features(
        frame, date="date", close="close", volume="volume", target="return"
    )
    assert out["planted_next_return"].corr(out["next_1d_return"]) > 0.99
    for column in FEATURES:
        assert abs(out[column].corr(out["next_1d_return"])) < 0.9, column


def test_tickers_never_mix():
    a, b = random_walk(80, seed=1), random_walk(80, seed=2)
    b["close"] *= 50  # a different price level makes any cross-ticker return obvious
    a["ticker"], b["ticker"] = "AAA", "BBB"
    both = pd.concat([a, b]).sort_values(["date", "ticker"]).reset_index(drop=True)  # interleaved
    out = derive_market_features(both, date="date", close="close", volume="volume", group="ticker")
    for ticker, alone in (("AAA", a), ("BBB", b)):
        expected = derive_market_features(alone, date="date", close="close", volume="volume")
        got = out[out["ticker"] == ticker].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got[FEATURES + ["next_1d_direction"]], expected[FEATURES + ["next_1d_direction"]]
        )
    assert out["return_1d"].abs().max() < 1


# --------------------------------------------------------------------------- errors


def test_bad_date_column_is_named():
    frame = random_walk(40)
    frame["date"] = [f"someday {i}" for i in range(40)]
    with pytest.raises(DataError, match="'date' is not a date column"):
        derive_market_features(frame, date="date", close="close")


def test_non_numeric_close_names_file_row_and_value():
    frame = random_walk(40)
    frame["close"] = frame["close"].astype(object)
    frame.loc[7, "close"] = "n/a"
    with pytest.raises(DataError, match=r"'n/a' at row 9"):
        derive_market_features(frame, date="date", close="close")
    frame.loc[7, "close"] = -3.0
    with pytest.raises(DataError, match=r"-3.0 at row 9.*positive"):
        derive_market_features(frame, date="date", close="close")


def test_duplicate_dates_are_named():
    frame = random_walk(40)
    frame.loc[12, "date"] = frame.loc[11, "date"]
    repeated = frame.loc[11, "date"]
    with pytest.raises(DataError, match=rf"Date '{repeated}' appears more than once.*rows 13, 14"):
        derive_market_features(frame, date="date", close="close")
    # The same date in two tickers is fine.
    a, b = random_walk(40), random_walk(40, seed=3)
    a["ticker"], b["ticker"] = "AAA", "BBB"
    derive_market_features(
        pd.concat([a, b], ignore_index=True), date="date", close="close", group="ticker"
    )


def test_too_short_and_bad_options():
    with pytest.raises(DataError, match="needs more than 21 dated prices"):
        derive_market_features(random_walk(21), date="date", close="close")
    with pytest.raises(ConfigError, match="target 'price'"):
        derive_market_features(random_walk(40), date="date", close="close", target="price")
    with pytest.raises(DataError, match="'Close' is not in the table"):
        derive_market_features(random_walk(40), date="date", close="Close")


# --------------------------------------------------------------------------- guessing columns


def test_market_columns_guesses_common_names():
    frame = pd.DataFrame(
        columns=["Date", "Open", "Close", "Adj Close", "Volume", "Symbol", "Headline"]
    )
    assert market_columns(frame) == {
        "date": "Date",
        "close": "Adj Close",
        "volume": "Volume",
        "group": "Symbol",
    }
    assert market_columns(pd.DataFrame(columns=["timestamp", "PRICE"])) == {
        "date": "timestamp",
        "close": "PRICE",
        "volume": None,
        "group": None,
    }
    assert market_columns(pd.DataFrame(columns=["date", "revenue"])) is None
    assert market_columns(pd.DataFrame(columns=["close", "volume"])) is None


def test_price_levels_are_named_for_leaving_out():
    frame = pd.DataFrame(
        columns=["Date", "Ticker", "Open", "High", "Low", "Adj Close", "Close", "Volume"]
        + ["return_1d", "volume_ratio_20d", "headline"]
    )
    levels = price_level_columns(frame, market_columns(frame))
    assert levels == ["Open", "High", "Low", "Adj Close", "Close", "Volume"]
