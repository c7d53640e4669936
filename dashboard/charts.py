"""Evaluation figures and tables for the Results, Compare and Predict pages.

Everything is drawn from what ``core`` wrote or returned (metrics.json, prediction tables,
comparisons, PSI reports); nothing here computes a metric.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

import core

LEVEL_COLOURS = {"stable": "#2e7d32", "watch": "#f9a825", "shift": "#c62828"}
PALETTE = ["#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c", "#9467bd", "#8c564b"]


def metric_label(name: str) -> str:
    arrow = "↑" if core.HIGHER_IS_BETTER.get(name, True) else "↓"
    return f"{core.metric_label(name)} {arrow}"


def with_interval(value, interval, digits: int = 3) -> str:
    """``0.811 [0.729, 0.879]``; ``–`` for a missing value (three digits on the pages)."""
    return core.format_interval(value, interval, digits)


def scorecard(metrics: dict) -> pd.DataFrame:
    """Rows: headline metrics; columns: the fine-tuned model and each baseline, with 95% intervals."""
    models = {"Fine-tuned": (metrics.get("test", {}), metrics.get("test_intervals", {}))}
    for name, entry in (metrics.get("baselines") or {}).items():
        if isinstance(entry, dict) and entry.get("test"):
            models[name] = (entry["test"], entry.get("test_intervals", {}))
    names = [m for m in core.HEADLINE_METRICS.get(metrics.get("task", ""), []) if m in models["Fine-tuned"][0]]
    rows = [{"metric": metric_label(m), **{model: with_interval(values.get(m), intervals.get(m))
                                           for model, (values, intervals) in models.items()}} for m in names]
    return pd.DataFrame(rows)


def roc_overlay(tables: dict[str, pd.DataFrame], positive: str, target: str) -> go.Figure:
    figure = go.Figure()
    for i, (name, table) in enumerate(tables.items()):
        curve = core.roc_pr_curves(table[target].astype(str) == positive, table[f"prob_{positive}"])["roc"]
        figure.add_scatter(x=curve["fpr"], y=curve["tpr"], mode="lines", name=name, line={"color": PALETTE[i % 6]})
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"})
    figure.update_layout(title=f"ROC curve (test, positive = {positive})", xaxis_title="false positive rate",
                         yaxis_title="true positive rate")
    return figure


def pr_overlay(tables: dict[str, pd.DataFrame], positive: str, target: str) -> go.Figure:
    figure = go.Figure()
    for i, (name, table) in enumerate(tables.items()):
        curve = core.roc_pr_curves(table[target].astype(str) == positive, table[f"prob_{positive}"])["pr"]
        figure.add_scatter(x=curve["recall"], y=curve["precision"], mode="lines", name=name,
                           line={"color": PALETTE[i % 6]})
    figure.update_layout(title="Precision-recall curve (test)", xaxis_title="recall", yaxis_title="precision",
                         yaxis_range=[0, 1.02])
    return figure


def score_distributions(table: pd.DataFrame, positive: str, target: str, ks: float | None) -> go.Figure:
    """P(positive) by actual class: the gap between the two is what KS and AUC measure."""
    figure = go.Figure()
    actual = table[target].astype(str)
    for i, label in enumerate(sorted(actual.unique())):
        figure.add_histogram(x=table.loc[actual == label, f"prob_{positive}"], name=f"actual {label}",
                             opacity=0.6, nbinsx=30, histnorm="probability", marker_color=PALETTE[i % 6])
    title = f"Scores by actual class (KS {ks:.3f})" if ks is not None else "Scores by actual class"
    figure.update_layout(barmode="overlay", title=title, xaxis_title=f"P({positive})", yaxis_title="share of class")
    return figure


def reliability(records: list[dict], positive: str) -> go.Figure:
    table = pd.DataFrame(records)
    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                       line={"dash": "dot", "color": "grey"})
    if not table.empty:
        size = 8 + 22 * np.sqrt(table["rows"] / table["rows"].max())
        figure.add_scatter(x=table["mean_predicted"], y=table["observed_rate"], mode="lines+markers", name="model",
                           marker={"size": size}, customdata=table["rows"],
                           hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>%{customdata} rows")
    figure.update_layout(title="Reliability diagram (test)", xaxis_title=f"mean predicted P({positive})",
                         yaxis_title=f"observed share {positive}", xaxis_range=[0, 1], yaxis_range=[0, 1])
    return figure


def gain(records: list[dict]) -> go.Figure:
    table = pd.DataFrame(records)
    figure = go.Figure()
    figure.add_scatter(x=[0, *table["population"]], y=[0, *table["gain"]], mode="lines+markers", name="model")
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="random", line={"dash": "dot", "color": "grey"})
    figure.update_layout(title="Cumulative gain (test)", xaxis_title="share of rows, highest scores first",
                         yaxis_title="share of events caught", xaxis_tickformat=".0%", yaxis_tickformat=".0%")
    return figure


def lift(records: list[dict]) -> go.Figure:
    table = pd.DataFrame(records)
    figure = go.Figure()
    figure.add_bar(x=table["decile"], y=table["lift"], name="lift of the decile")
    figure.add_scatter(x=table["decile"], y=table["cumulative_lift"], mode="lines+markers", name="cumulative lift")
    figure.add_hline(y=1, line_dash="dot", line_color="grey")
    figure.update_layout(title="Lift by decile (test)", xaxis_title="decile (1 = highest scores)", yaxis_title="lift",
                         xaxis={"dtick": 1})
    return figure


def gain_lift_table(records: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(records)
    return table[["decile", "rows", "events", "event_rate", "gain", "lift", "cumulative_lift"]]


def cost_curve(curve: pd.DataFrame, threshold: float, split: str) -> go.Figure:
    figure = go.Figure()
    figure.add_scatter(x=curve["threshold"], y=curve["cost_per_row"], mode="lines", name="expected cost per row")
    figure.add_scatter(x=curve["threshold"], y=curve["approval_rate"], mode="lines", name="approval rate",
                       yaxis="y2", line={"dash": "dash"})
    figure.add_vline(x=threshold, line_color="#c62828", annotation_text=f"{threshold:.3f}")
    figure.update_layout(title=f"Cost and approval rate by threshold ({split})", xaxis_title="threshold",
                         yaxis_title="cost per row", yaxis2={"overlaying": "y", "side": "right",
                                                             "title": "approval rate", "tickformat": ".0%",
                                                             "range": [0, 1], "dtick": 0.25})
    return figure


def confusion_at(outcome: dict, positive: str, negative: str) -> go.Figure:
    counts = np.array([[outcome["tn"], outcome["fp"]], [outcome["fn"], outcome["tp"]]])
    labels = [f"{negative} (approved)", f"{positive} (flagged)"]
    figure = go.Figure(go.Heatmap(z=counts, x=labels, y=[negative, positive], text=counts, texttemplate="%{text}",
                                  colorscale="Blues", showscale=False))
    figure.update_layout(title=f"Confusion at threshold {outcome['threshold']:.3f} (test)",
                         xaxis_title="predicted", yaxis_title="actual", yaxis_autorange="reversed")
    return figure


def psi_bars(report: pd.DataFrame, title: str) -> go.Figure:
    top = report.head(25)
    figure = go.Figure(go.Bar(x=top["psi"], y=top["input"], orientation="h",
                              marker_color=[LEVEL_COLOURS.get(level, "grey") for level in top["level"]]))
    figure.add_vline(x=core.PSI_WARN, line_dash="dot", annotation_text="0.1 watch")
    figure.add_vline(x=core.PSI_ALERT, line_dash="dot", line_color="#c62828", annotation_text="0.25 shift")
    figure.update_layout(title=title, xaxis_title="PSI", yaxis_autorange="reversed")
    return figure


def differences_table(comparison) -> pd.DataFrame:
    """Paired differences for people: metric, model − reference with its interval, p and the verdict."""
    rows = []
    for r in comparison.differences.itertuples():
        interval = None if math.isnan(r.low) else (r.low, r.high)
        significant = interval is not None and (r.low > 0 or r.high < 0)
        rows.append({"model": r.model, "metric": metric_label(r.metric),
                     f"difference vs {comparison.models[0]}": with_interval(r.difference, interval, 4),
                     "p (bootstrap)": f"{r.p_value:.3f}",
                     "verdict": ("better" if r.better else "worse") if significant else "no clear difference"})
    return pd.DataFrame(rows)


def delong_table(comparison) -> pd.DataFrame:
    rows = []
    for r in comparison.delong.itertuples():
        interval = None if math.isnan(r.low) else (r.low, r.high)
        rows.append({"model": r.model, f"AUC {comparison.models[0]}": f"{r.auc_reference:.4f}",
                     "AUC": f"{r.auc:.4f}", f"AUC − AUC {comparison.models[0]}": with_interval(r.difference, interval, 4),
                     "p (DeLong)": f"{r.p_value:.4f}",
                     "verdict": "significant at 5%" if r.p_value < 0.05 else "not significant at 5%"})
    return pd.DataFrame(rows)


def sweep_figure(table: pd.DataFrame) -> go.Figure:
    """Four panels over the sweep's settings: validation metric, trainable parameters (log), wall time
    and peak memory; the knee is marked in every panel."""
    from plotly.subplots import make_subplots

    metric = next((m for m in table["metric"] if m), "metric")
    panels = [("val_metric", f"Validation {metric_label(metric)}"), ("trainable_parameters", "Trainable parameters"),
              ("wall_s", "Training time (s)"), ("peak_memory_mb", "Peak memory (MB)")]
    figure = make_subplots(rows=2, cols=2, subplot_titles=[title for _, title in panels], vertical_spacing=0.18)
    labels = table["label"].tolist()
    colors = ["#d62728" if knee else "#1f77b4" for knee in table["knee"]]
    for i, (column, title) in enumerate(panels):
        row, col = i // 2 + 1, i % 2 + 1
        values = pd.to_numeric(table[column], errors="coerce")
        figure.add_trace(go.Scatter(x=labels, y=values, mode="lines+markers", name=title, showlegend=False,
                                    marker={"color": colors, "size": 10}, line={"color": "#9ab"}),
                         row=row, col=col)
        if column == "trainable_parameters":
            figure.update_yaxes(type="log", row=row, col=col)
    knee = table[table["knee"]]
    if not knee.empty:
        figure.add_annotation(x=knee["label"].iloc[0], y=float(knee["val_metric"].iloc[0]), text="knee",
                              showarrow=True, arrowhead=2, row=1, col=1)
    figure.update_layout(height=560, margin={"t": 40, "b": 20, "l": 20, "r": 20})
    return figure
