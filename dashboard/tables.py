"""Tables for people: a table's column roles, the scorecard, gain and lift, run comparisons.

Built from what ``core`` wrote or returned (metrics.json, comparisons); nothing here computes a
metric.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

import core
from dashboard.formatting import metric_label, with_interval


def roles_table(frame: pd.DataFrame, roles: dict[str, str]) -> pd.DataFrame:
    """One row per feature column: its role (editable) and a short profile."""
    rows = []
    for column, role in roles.items():
        values = frame[column]
        example = values.dropna().astype(str).head(1)
        rows.append(
            {
                "column": column,
                "role": role,
                "type": str(values.dtype),
                "missing": int(values.isna().sum()),
                "distinct": int(values.nunique()),
                "example": example.iloc[0][:60] if len(example) else "",
            }
        )
    return pd.DataFrame(rows)


def scorecard(metrics: dict) -> pd.DataFrame:
    """Rows: headline metrics; columns: the fine-tuned model and each baseline, with intervals."""
    models = core.model_scores(metrics)
    names = [
        m
        for m in core.HEADLINE_METRICS.get(metrics.get("task", ""), [])
        if m in models["Fine-tuned"][0]
    ]
    rows = [
        {
            "metric": metric_label(m),
            **{
                model: with_interval(values.get(m), intervals.get(m))
                for model, (values, intervals) in models.items()
            },
        }
        for m in names
    ]
    return pd.DataFrame(rows)


# How st.dataframe shows gain_lift_table: shares as percentages, lifts with two decimals.
GAIN_LIFT_COLUMNS = {
    "event_rate": st.column_config.NumberColumn("event rate", format="percent"),
    "gain": st.column_config.NumberColumn("cumulative gain", format="percent"),
    "lift": st.column_config.NumberColumn("lift", format="%.2f"),
    "cumulative_lift": st.column_config.NumberColumn("cumulative lift", format="%.2f"),
}


def gain_lift_table(records: list[dict]) -> pd.DataFrame:
    """The gain and lift deciles of metrics.json as a table for people."""
    table = pd.DataFrame(records)
    return table[["decile", "rows", "events", "event_rate", "gain", "lift", "cumulative_lift"]]


def differences_table(comparison) -> pd.DataFrame:
    """Paired differences for people: metric, model − reference with its interval, p, verdict."""
    rows = []
    for r in comparison.differences.itertuples():
        interval = None if math.isnan(r.low) else (r.low, r.high)
        significant = interval is not None and (r.low > 0 or r.high < 0)
        verdict = ("better" if r.better else "worse") if significant else "no clear difference"
        rows.append(
            {
                "model": r.model,
                "metric": metric_label(r.metric),
                f"difference vs {comparison.models[0]}": with_interval(r.difference, interval, 4),
                "p (bootstrap)": f"{r.p_value:.3f}",
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def delong_table(comparison) -> pd.DataFrame:
    """DeLong tests of each model's ROC AUC against the reference, with the verdict at 5%."""
    rows = []
    for r in comparison.delong.itertuples():
        interval = None if math.isnan(r.low) else (r.low, r.high)
        reference = comparison.models[0]
        rows.append(
            {
                "model": r.model,
                f"AUC {reference}": f"{r.auc_reference:.4f}",
                "AUC": f"{r.auc:.4f}",
                f"AUC − AUC {reference}": with_interval(r.difference, interval, 4),
                "p (DeLong)": f"{r.p_value:.4f}",
                "verdict": ("significant at 5%" if r.p_value < 0.05 else "not significant at 5%"),
            }
        )
    return pd.DataFrame(rows)
