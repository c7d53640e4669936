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


def fairness_groups_table(result, column: str) -> pd.DataFrame:
    """One row per group of ``column`` (``result``: core.run_fairness(...)): rows, positives and
    each rate with its 95% interval."""
    rows = result.groups[result.groups["column"] == column]

    def cell(row, metric: str) -> str:
        return with_interval(row[metric], (row[f"{metric}_low"], row[f"{metric}_high"]))

    return pd.DataFrame(
        {
            "group": rows["group"],
            "rows": rows["rows"],
            f"{result.positive_class} (positives)": rows["positives"],
            **{
                name: [cell(r, metric) for _, r in rows.iterrows()]
                for metric, name in core.FAIRNESS_METRICS.items()
            },
        }
    )


def fairness_ratio_table(result, column: str) -> pd.DataFrame:
    """Each group's approval rate as a ratio to the most-approved group's, with the finding."""
    rows = result.disparities[result.disparities["column"] == column]
    return pd.DataFrame(
        {
            "group": rows["group"],
            "approval ratio": [
                "reference (most approved)"
                if r["group"] == r["reference"]
                else with_interval(
                    r["approval_ratio"], (r["approval_ratio_low"], r["approval_ratio_high"])
                )
                for _, r in rows.iterrows()
            ],
            "finding": rows["finding"],
        }
    )


def fairness_gaps_table(result) -> pd.DataFrame:
    """Per column: the approval, equal-opportunity and equalized-odds gaps with their intervals
    and the p value from shuffled group labels."""
    return pd.DataFrame(
        {
            "column": result.gaps["column"],
            "gap": [core.GAP_NAMES[m] for m in result.gaps["measure"]],
            "value": [
                with_interval(r["value"], (r["low"], r["high"])) for _, r in result.gaps.iterrows()
            ],
            "p (shuffled groups)": [f"{p:.3f}" for p in result.gaps["p_value"]],
        }
    )
