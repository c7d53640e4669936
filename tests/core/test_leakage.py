"""Leakage warnings: proxies of the target, identifiers, future dates and repeated rows, fast."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.leakage import PROXY_THRESHOLD, LeakageWarning, find_leakage
from core.data.schema import describe_table
from core.data.split import split_rows
from core.errors import DataError
from tests.conftest import credit_table, regression_table, sentiment_table


def spec_of(frame: pd.DataFrame, target: str, **roles: str):
    return describe_table(frame, DataConfig(target=target, roles=roles))


def kinds(warnings: list[LeakageWarning], kind: str) -> list[LeakageWarning]:
    return [w for w in warnings if w.kind == kind]


# --------------------------------------------------------------------------- target proxies


def test_clean_credit_table_has_no_proxy():
    frame = credit_table(1000)
    assert kinds(find_leakage(frame, spec_of(frame, "credit_risk")), "target_proxy") == []


def test_recoded_target_is_a_proxy():
    frame = credit_table(1000)
    frame["outcome_code"] = np.where(frame["credit_risk"] == "bad", 1, 0)
    frame["status_after_review"] = np.where(frame["credit_risk"] == "bad", "written off", "repaid")
    spec = spec_of(frame, "credit_risk", outcome_code="numeric")
    proxies = kinds(find_leakage(frame, spec), "target_proxy")
    assert {w.column for w in proxies} == {"outcome_code", "status_after_review"}
    warning = proxies[0]
    assert warning.value >= PROXY_THRESHOLD
    assert (
        f"Column {warning.column!r} alone predicts 'credit_risk' with AUC 1.00" in warning.message
    )
    assert "role ignore" in warning.message


def test_strong_but_noisy_column_is_not_a_proxy():
    rng = np.random.default_rng(0)
    frame = credit_table(1000)
    bad = (frame["credit_risk"] == "bad").to_numpy()
    frame["bureau_score"] = bad * 1.45 + rng.normal(size=1000)  # AUC about 0.85
    from core.stats.metrics import binary_ranking_metrics

    assert 0.8 < binary_ranking_metrics(bad, frame["bureau_score"].to_numpy())["roc_auc"] < 0.9
    assert kinds(find_leakage(frame, spec_of(frame, "credit_risk")), "target_proxy") == []


def test_high_cardinality_category_does_not_fake_a_proxy():
    frame = credit_table(1000)
    frame["reference"] = [f"ref-{i}" for i in range(1000)]  # each value seen once
    spec = spec_of(frame, "credit_risk", reference="categorical")
    assert kinds(find_leakage(frame, spec), "target_proxy") == []


def test_missingness_and_non_monotone_proxies():
    frame = credit_table(1000)
    bad = (frame["credit_risk"] == "bad").to_numpy()
    rng = np.random.default_rng(1)
    # Filled in only for bad loans: the gap itself is the answer.
    frame["recovery_amount"] = np.where(bad, rng.uniform(100, 900, size=1000), np.nan)
    # Bad loans sit at both ends, good ones in the middle: AUC of the raw value is near 0.5.
    frame["days_past_due"] = np.where(
        bad,
        rng.choice([-1, 1], size=1000) * rng.uniform(50, 60, size=1000),
        rng.uniform(-10, 10, size=1000),
    )
    proxies = kinds(find_leakage(frame, spec_of(frame, "credit_risk")), "target_proxy")
    assert {w.column for w in proxies} == {"recovery_amount", "days_past_due"}


def test_multiclass_proxy():
    frame = sentiment_table(600)
    frame["label_code"] = (
        frame["label"].map({"bearish": 0, "neutral": 1, "bullish": 2}).astype(float)
    )
    frame["noise"] = np.random.default_rng(0).normal(size=600)
    proxies = kinds(
        find_leakage(frame, spec_of(frame, "label", label_code="numeric")), "target_proxy"
    )
    assert [w.column for w in proxies] == ["label_code"]


def test_regression_proxy():
    frame = regression_table(1000)
    rng = np.random.default_rng(2)
    frame["spread_reported"] = np.exp(frame["spread_bps"] / 5) + rng.normal(0, 1e-3, size=1000)
    warnings = find_leakage(frame, spec_of(frame, "spread_bps"))
    proxies = kinds(warnings, "target_proxy")
    assert [w.column for w in proxies] == ["spread_reported"]  # momentum (rho ~0.95) is legitimate
    assert "alone tracks 'spread_bps' with rank correlation 1.00" in proxies[0].message


def test_proxy_uses_training_rows_and_samples():
    frame = credit_table(1000)
    spec = spec_of(frame, "credit_risk")
    splits = split_rows(frame, spec, DataConfig(target="credit_risk"), seed=0)
    # The answer on the training rows only, noise elsewhere: only the training rows show it.
    code = np.random.default_rng(3).integers(0, 2, size=1000)
    code[splits["train"]] = frame["credit_risk"].iloc[splits["train"]].eq("bad").astype(int)
    frame["outcome_code"] = code
    spec = spec_of(frame, "credit_risk", outcome_code="numeric")
    assert kinds(find_leakage(frame, spec), "target_proxy") == []
    warning = kinds(find_leakage(frame, spec, splits), "target_proxy")[0]
    assert "on the training rows" in warning.message
    warning = kinds(find_leakage(frame, spec, splits, max_rows=300), "target_proxy")[0]
    assert "on 300 sampled training rows" in warning.message


# --------------------------------------------------------------------------- identifiers


def test_identifier_given_a_numeric_role_is_flagged():
    frame = credit_table(300)
    spec = spec_of(frame, "credit_risk", applicant_id="numeric")
    warnings = kinds(find_leakage(frame, spec), "identifier")
    assert [w.column for w in warnings] == ["applicant_id"]
    assert "role id" in warnings[0].message
    # The inferred role (id) is not a feature, so the default spec is quiet.
    assert kinds(find_leakage(frame, spec_of(frame, "credit_risk")), "identifier") == []


def test_row_counter_and_named_key_are_flagged():
    frame = credit_table(300)
    frame["seq"] = np.arange(300) * 3 + 7
    frame["account_key"] = [f"A{i:05d}" for i in np.random.default_rng(0).permutation(300)]
    spec = spec_of(frame, "credit_risk", seq="numeric", account_key="categorical")
    columns = {w.column for w in kinds(find_leakage(frame, spec), "identifier")}
    assert columns == {"seq", "account_key"}


# --------------------------------------------------------------------------- future dates


def test_date_after_prediction_time_is_flagged():
    frame = credit_table(300)
    opened = pd.to_datetime(frame["application_date"])
    rng = np.random.default_rng(0)
    closed = opened + pd.to_timedelta(rng.integers(30, 400, size=300), unit="D")
    frame["closed_date"] = closed.dt.strftime("%Y-%m-%d")
    frame["birth_date"] = (opened - pd.Timedelta(days=9000)).dt.strftime("%Y-%m-%d")
    spec = spec_of(frame, "credit_risk")
    assert spec.roles["closed_date"] == "datetime"
    warnings = kinds(find_leakage(frame, spec, time_column="application_date"), "future_date")
    assert [w.column for w in warnings] == ["closed_date"]
    assert warnings[0].value == 1.0
    assert "later than 'application_date' in 100% of rows" in warnings[0].message
    assert kinds(find_leakage(frame, spec), "future_date") == []  # no time column, no check
    with pytest.raises(DataError, match="'opened' is not in the table"):
        find_leakage(frame, spec, time_column="opened")


# --------------------------------------------------------------------------- duplicates


def test_duplicates_across_splits_are_counted():
    frame = credit_table(300)
    spec = spec_of(frame, "credit_risk")
    splits = split_rows(frame, spec, DataConfig(target="credit_risk"), seed=0)
    assert kinds(find_leakage(frame, spec, splits), "duplicates") == []

    held_out = np.concatenate([splits["val"], splits["test"]])
    copied = held_out[:7]
    features = spec.feature_columns
    # Copy training rows' features onto 7 held-out rows; the id and target differ, which is the
    # point.
    frame.loc[copied, features] = frame.loc[splits["train"][:7], features].to_numpy()
    warnings = kinds(find_leakage(frame, spec, splits), "duplicates")
    assert len(warnings) == 1
    assert warnings[0].message.startswith(f"7 of {len(held_out)} val and test rows")
    assert warnings[0].value == pytest.approx(7 / len(held_out))


# --------------------------------------------------------------------------- speed


def test_thousand_rows_in_well_under_a_second():
    frame = credit_table(1000)
    frame["closed_date"] = frame["application_date"]
    spec = spec_of(frame, "credit_risk")
    splits = split_rows(frame, spec, DataConfig(target="credit_risk"), seed=0)
    find_leakage(frame.head(50), spec)  # imports and first-call costs out of the timing
    start = time.perf_counter()
    find_leakage(frame, spec, splits, time_column="application_date")
    assert time.perf_counter() - start < 0.3
