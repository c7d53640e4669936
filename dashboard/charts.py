"""Evaluation tables for the Results and Compare pages, and the sweep figure of the Train page.

Everything is drawn from what ``core`` wrote or returned (metrics.json, comparisons, sweeps);
nothing here computes a metric. The evaluation figures (ROC, PR, calibration, gain, lift, cost,
confusion, PSI) are ``core``'s (``core.roc_figure`` and the like), shared with the model report.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

import core


def metric_label(name: str) -> str:
    """A metric's label with its direction: ``ROC AUC ↑``, ``Brier score ↓``."""
    arrow = "↑" if core.HIGHER_IS_BETTER.get(name, True) else "↓"
    return f"{core.metric_label(name)} {arrow}"


def with_interval(value, interval, digits: int = 3) -> str:
    """``0.811 [0.729, 0.879]``; ``–`` for a missing value (three digits on the pages)."""
    return core.format_interval(value, interval, digits)


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


def sweep_figure(table: pd.DataFrame) -> go.Figure:
    """Four panels over the sweep's settings: validation metric, trainable parameters (log), wall
    time and peak memory; the knee is marked in every panel."""
    from plotly.subplots import make_subplots

    metric = next((m for m in table["metric"] if m), "metric")
    panels = [
        ("val_metric", f"Validation {metric_label(metric)}"),
        ("trainable_parameters", "Trainable parameters"),
        ("wall_s", "Training time (s)"),
        ("peak_memory_mb", "Peak memory (MB)"),
    ]
    figure = make_subplots(
        rows=2, cols=2, subplot_titles=[title for _, title in panels], vertical_spacing=0.18
    )
    labels = table["label"].tolist()
    colors = ["#d62728" if knee else "#1f77b4" for knee in table["knee"]]
    for i, (column, title) in enumerate(panels):
        row, col = i // 2 + 1, i % 2 + 1
        values = pd.to_numeric(table[column], errors="coerce")
        figure.add_trace(
            go.Scatter(
                x=labels,
                y=values,
                mode="lines+markers",
                name=title,
                showlegend=False,
                marker={"color": colors, "size": 10},
                line={"color": "#9ab"},
            ),
            row=row,
            col=col,
        )
        if column == "trainable_parameters":
            figure.update_yaxes(type="log", row=row, col=col)
    knee = table[table["knee"]]
    if not knee.empty:
        figure.add_annotation(
            x=knee["label"].iloc[0],
            y=float(knee["val_metric"].iloc[0]),
            text="knee",
            showarrow=True,
            arrowhead=2,
            row=1,
            col=1,
        )
    figure.update_layout(height=560, margin={"t": 40, "b": 20, "l": 20, "r": 20})
    return figure
