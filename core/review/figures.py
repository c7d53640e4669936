"""Plotly figures of a run's evaluation, one builder per kind of chart.

The model report and the dashboard's Results, Compare, Predict and Explain pages draw with these,
so a chart reads the same wherever it is shown. Builders take what ``core`` computed or the run
folder stores (curves, reliability bins, outcomes at a threshold, PSI reports); none computes a
metric. Plotly reads titles, names and tick labels as a small HTML dialect, so text that comes
from the user's data (class labels, column names, run ids) is escaped before it reaches a figure.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c", "#9467bd", "#8c564b"]
LEVEL_COLOURS = {"stable": "#2e7d32", "watch": "#f9a825", "shift": "#c62828"}
GUIDE = {"dash": "dot", "color": "grey"}  # the chance / perfect line drawn beside a model


def _text(value) -> str:
    """User text as plotly shows it literally (``<b>`` stays two brackets and a letter)."""
    return html.escape(str(value), quote=False)


# --------------------------------------------------------------------------- ROC and PR


def curves_by_model(tables: dict[str, pd.DataFrame], positive: str, target: str) -> dict[str, dict]:
    """ROC and PR points of the positive class for each prediction table (model or run) by name."""
    from ..stats.metrics import roc_pr_curves
    from ..stats.thresholds import table_scores

    return {
        name: roc_pr_curves(*table_scores(table, target, positive))
        for name, table in tables.items()
    }


def curves_by_class(table: pd.DataFrame, classes: list[str], target: str) -> dict[str, dict]:
    """ROC and PR points of each class against the rest, from one prediction table."""
    from ..stats.metrics import roc_pr_curves

    labels = table[target].astype(str)
    return {c: roc_pr_curves(labels == c, table[f"prob_{c}"]) for c in classes}


def roc_figure(curves: dict[str, dict], *, positive: str | None = None) -> go.Figure:
    """ROC curves (one line per name in ``curves``, as from :func:`curves_by_model`) and chance."""
    figure = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        figure.add_scatter(
            x=curve["roc"]["fpr"],
            y=curve["roc"]["tpr"],
            mode="lines",
            name=_text(name),
            line={"color": PALETTE[i % len(PALETTE)]},
        )
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=GUIDE)
    which = f", positive = {_text(positive)}" if positive is not None else ""
    figure.update_layout(
        title=f"ROC curve (test{which})",
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
    )
    return figure


def pr_figure(curves: dict[str, dict]) -> go.Figure:
    """Precision-recall curves, one line per name in ``curves``."""
    figure = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        figure.add_scatter(
            x=curve["pr"]["recall"],
            y=curve["pr"]["precision"],
            mode="lines",
            name=_text(name),
            line={"color": PALETTE[i % len(PALETTE)]},
        )
    figure.update_layout(
        title="Precision-recall curve (test)",
        xaxis_title="recall",
        yaxis_title="precision",
        yaxis_range=[0, 1.02],
    )
    return figure


# --------------------------------------------------------------------------- scores and calibration


def score_figure(table: pd.DataFrame, positive: str, target: str, ks: float | None) -> go.Figure:
    """P(positive) by actual class: the gap between the two is what KS and AUC measure."""
    figure = go.Figure()
    actual = table[target].astype(str)
    for i, label in enumerate(sorted(actual.unique())):
        figure.add_histogram(
            x=table.loc[actual == label, f"prob_{positive}"],
            name=f"actual {_text(label)}",
            opacity=0.6,
            nbinsx=30,
            histnorm="probability",
            marker_color=PALETTE[i % len(PALETTE)],
        )
    title = f"Scores by actual class (KS {ks:.3f})" if ks is not None else "Scores by actual class"
    figure.update_layout(
        barmode="overlay",
        title=title,
        xaxis_title=f"P({_text(positive)})",
        yaxis_title="share of class",
    )
    return figure


def reliability_figure(
    bins: list[dict] | pd.DataFrame, *, predicted: str, observed: str
) -> go.Figure:
    """Reliability diagram of reliability bins (``reliability_table`` rows); marker size: rows.

    ``predicted`` and ``observed`` name the axes' quantities, e.g. ``P(bad)`` and ``bad``.
    """
    table = pd.DataFrame(bins)
    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated", line=GUIDE)
    if not table.empty:
        size = 8 + 22 * np.sqrt(table["rows"] / table["rows"].max())
        figure.add_scatter(
            x=table["mean_predicted"],
            y=table["observed_rate"],
            mode="lines+markers",
            name="model",
            marker={"size": size},
            customdata=table["rows"],
            hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>%{customdata} rows",
        )
    figure.update_layout(
        title="Reliability diagram (test)",
        xaxis_title=f"mean {_text(predicted)}",
        yaxis_title=_text(observed),
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
    )
    return figure


def gain_figure(records: list[dict]) -> go.Figure:
    """Cumulative gain by share of rows, highest scores first (``gain_lift_table`` rows)."""
    table = pd.DataFrame(records)
    figure = go.Figure()
    figure.add_scatter(
        x=[0, *table["population"]], y=[0, *table["gain"]], mode="lines+markers", name="model"
    )
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="random", line=GUIDE)
    figure.update_layout(
        title="Cumulative gain (test)",
        xaxis_title="share of rows, highest scores first",
        yaxis_title="share of events caught",
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
    )
    return figure


def lift_figure(records: list[dict]) -> go.Figure:
    """Lift of each score decile and cumulative lift (``gain_lift_table`` rows)."""
    table = pd.DataFrame(records)
    figure = go.Figure()
    figure.add_bar(x=table["decile"], y=table["lift"], name="lift of the decile")
    figure.add_scatter(
        x=table["decile"], y=table["cumulative_lift"], mode="lines+markers", name="cumulative lift"
    )
    figure.add_hline(y=1, line_dash="dot", line_color="grey")
    figure.update_layout(
        title="Lift by decile (test)",
        xaxis_title="decile (1 = highest scores)",
        yaxis_title="lift",
        xaxis={"dtick": 1},
    )
    return figure


# --------------------------------------------------------------------------- decisions


def cost_figure(curve: pd.DataFrame, threshold: float, split: str) -> go.Figure:
    """Expected cost per row and approval rate by threshold (``cost_curve``), the chosen marked."""
    figure = go.Figure()
    figure.add_scatter(
        x=curve["threshold"], y=curve["cost_per_row"], mode="lines", name="expected cost per row"
    )
    figure.add_scatter(
        x=curve["threshold"],
        y=curve["approval_rate"],
        mode="lines",
        name="approval rate",
        yaxis="y2",
        line={"dash": "dash"},
    )
    figure.add_vline(x=threshold, line_color="#c62828", annotation_text=f"{threshold:.3f}")
    right = {
        "overlaying": "y",
        "side": "right",
        "title": "approval rate",
        "tickformat": ".0%",
        "range": [0, 1],
        "dtick": 0.25,
    }
    figure.update_layout(
        title=f"Cost and approval rate by threshold ({split})",
        xaxis_title="threshold",
        yaxis_title="cost per row",
        yaxis2=right,
    )
    return figure


def threshold_confusion_figure(outcome: dict, positive: str, negative: str) -> go.Figure:
    """The 2 × 2 counts of an ``outcome_at`` result: flagged / approved against actual."""
    counts = np.array([[outcome["tn"], outcome["fp"]], [outcome["fn"], outcome["tp"]]])
    positive, negative = _text(positive), _text(negative)
    labels = [f"{negative} (approved)", f"{positive} (flagged)"]
    figure = go.Figure(
        go.Heatmap(
            z=counts,
            x=labels,
            y=[negative, positive],
            text=counts,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    figure.update_layout(
        title=f"Confusion at threshold {outcome['threshold']:.3f} (test)",
        xaxis_title="predicted",
        yaxis_title="actual",
        yaxis_autorange="reversed",
    )
    return figure


def confusion_figure(table: pd.DataFrame) -> go.Figure:
    """A confusion matrix (``confusion_table``: actual rows, predicted columns) as a heatmap."""
    labels = [_text(c) for c in table.columns]
    actual = [_text(c) for c in table.index]
    figure = go.Figure(
        go.Heatmap(
            z=table.to_numpy(),
            x=labels,
            y=actual,
            text=table.to_numpy(),
            texttemplate="%{text}",
            colorscale="Blues",
            colorbar={"title": "rows"},
        )
    )
    figure.update_layout(
        title="Confusion matrix (test)",
        xaxis_title="predicted",
        yaxis_title="actual",
        yaxis_autorange="reversed",
    )
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure


# ------------------------------------------------------------------ regression, stability, SHAP


def fit_figure(actual, predicted, target: str) -> go.Figure:
    """Predicted against actual values of the test rows, with the line of perfect predictions."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    figure = go.Figure(
        go.Scatter(
            x=actual,
            y=predicted,
            mode="markers",
            name="test rows",
            marker={"size": 6, "opacity": 0.6},
        )
    )
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    figure.add_scatter(x=[low, high], y=[low, high], mode="lines", name="perfect", line=GUIDE)
    figure.update_layout(
        title="Predicted against actual (test)",
        xaxis_title=f"actual {_text(target)}",
        yaxis_title="predicted",
    )
    return figure


def residual_figure(actual, predicted) -> go.Figure:
    """Residuals (actual − predicted) against the prediction."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    figure = go.Figure(
        go.Scatter(
            x=predicted,
            y=actual - predicted,
            mode="markers",
            name="test rows",
            marker={"size": 6, "opacity": 0.6},
        )
    )
    figure.update_layout(
        title="Residuals (test)", xaxis_title="predicted", yaxis_title="actual − predicted"
    )
    return figure


def psi_figure(report: pd.DataFrame, title: str, *, top: int = 25) -> go.Figure:
    """PSI of the ``top`` least stable inputs (a stability report), coloured by level."""
    from ..evaluation.stability import PSI_ALERT, PSI_WARN

    shown = report.head(top)
    colours = [LEVEL_COLOURS.get(level, "grey") for level in shown["level"]]
    figure = go.Figure(
        go.Bar(
            x=shown["psi"],
            y=[_text(name) for name in shown["input"]],
            orientation="h",
            marker_color=colours,
        )
    )
    figure.add_vline(x=PSI_WARN, line_dash="dot", annotation_text=f"{PSI_WARN:g} watch")
    figure.add_vline(
        x=PSI_ALERT, line_dash="dot", line_color="#c62828", annotation_text=f"{PSI_ALERT:g} shift"
    )
    figure.update_layout(title=title, xaxis_title="PSI", yaxis_autorange="reversed")
    return figure


def importance_figure(
    columns: list[str], mean_abs, output: str, *, rows: int | None = None, title: str | None = None
) -> go.Figure:
    """Mean |SHAP| per column, largest first as given; ``output`` is what the values move."""
    figure = go.Figure(
        go.Bar(
            x=list(mean_abs),
            y=[_text(c) for c in columns],
            orientation="h",
            marker_color=PALETTE[0],
        )
    )
    on = f" ({rows} test rows)" if rows is not None else ""
    figure.update_layout(
        title=_text(title) if title else f"Mean |SHAP| on {_text(output)}{on}",
        xaxis_title=f"mean |change in {_text(output)}|",
    )
    figure.update_yaxes(autorange="reversed", title=None)
    return figure
