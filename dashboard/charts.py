"""The dashboard's own plotly figures, and ``plot`` that shows any figure on a page.

Data profile (class balance, missing values, distributions), training curves (loss, validation,
runs compared), the freeze-depth sweep, and SHAP views (importance, beeswarm, waterfall, shaded
words). Figures are built from what ``core`` returns (run-folder events, explanations, sweeps);
nothing here computes a metric or trains anything. The evaluation figures (ROC, PR, calibration,
gain, lift, cost, confusion, PSI, importance) are ``core``'s (``core.roc_figure`` and the like),
shared with the model report.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import core
from dashboard.formatting import metric_label

BOUNDED_METRICS = ("roc_auc", "accuracy", "f1")


def plot(figure: go.Figure, *, key: str | None = None, height: int = 320) -> None:
    figure.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}, height=height)
    st.plotly_chart(figure, width="stretch", key=key)


# ----------------------------------------------------------------------------- data profile


def class_balance(target: pd.Series, task: str) -> go.Figure:
    if task == "regression":
        figure = px.histogram(
            pd.to_numeric(target, errors="coerce"), nbins=40, title=f"Distribution of {target.name}"
        )
        figure.update_layout(showlegend=False, xaxis_title=target.name, yaxis_title="rows")
        return figure
    counts = (
        target.astype(str).value_counts(dropna=False).rename_axis("class").reset_index(name="rows")
    )
    return px.bar(counts, x="class", y="rows", text="rows", title=f"Class balance of {target.name}")


def missing_values(frame: pd.DataFrame) -> go.Figure:
    share = (frame.isna().mean() * 100).rename_axis("column").reset_index(name="missing %")
    none = " (none)" if not share["missing %"].any() else ""
    figure = px.bar(share, x="column", y="missing %", title=f"Missing values per column{none}")
    figure.update_yaxes(range=[0, max(5.0, float(share["missing %"].max()) * 1.1)])
    return figure


def _period(dates: pd.Series) -> tuple[str, str]:
    """A period that gives a readable number of bars for this span of dates: (pandas code, word)."""
    days = (dates.max() - dates.min()).days if dates.notna().any() else 0
    if days <= 120:
        return "D", "day"
    if days <= 3 * 365:
        return "W", "week"
    return "M", "month"


def dates_profile(series: pd.Series) -> go.Figure:
    """Rows per day, week or month of a date column (gaps show as empty periods)."""
    dates = core.parse_datetime(series).dt.tz_localize(None)
    code, word = _period(dates)
    counts = dates.dt.to_period(code).value_counts().sort_index()
    figure = go.Figure(go.Bar(x=counts.index.to_timestamp(), y=counts.values))
    figure.update_layout(
        title=f"{series.name}: rows per {word}", xaxis_title=None, yaxis_title="rows"
    )
    return figure


def target_over_time(
    dates: pd.Series, target: pd.Series, task: str, positive: str | None = None
) -> go.Figure:
    """The target per period: the positive class's share (binary), each class's share
    (multiclass) or the mean (regression), with the rows per period on a second axis."""
    when = core.parse_datetime(dates).dt.tz_localize(None)
    code, word = _period(when)
    period = when.dt.to_period(code).rename("period")
    frame = pd.DataFrame({"period": period, "target": target.values}).dropna(subset=["period"])
    groups = frame.groupby("period")["target"]
    x = groups.size().index.to_timestamp()
    figure = go.Figure()
    if task == "regression":
        values = groups.apply(lambda v: pd.to_numeric(v, errors="coerce").mean())
        figure.add_scatter(x=x, y=values.values, mode="lines", name=f"mean {target.name}")
        y_title = f"mean {target.name}"
    else:
        labels = [positive] if task == "binary" and positive is not None else None
        labels = labels or sorted(frame["target"].astype(str).unique())
        for label in labels:
            share = groups.apply(lambda v, label=label: (v.astype(str) == str(label)).mean())
            figure.add_scatter(x=x, y=share.values, mode="lines", name=str(label))
        y_title = "share of rows"
        figure.update_yaxes(tickformat=".0%")
    figure.add_bar(
        x=x, y=groups.size().values, name="rows", yaxis="y2", opacity=0.25, marker_color="grey"
    )
    figure.update_layout(
        title=f"{target.name} per {word}",
        yaxis={"title": y_title},
        yaxis2={"title": "rows", "overlaying": "y", "side": "right", "showgrid": False},
        legend={"orientation": "h", "y": -0.15},
    )
    return figure


def distribution(series: pd.Series, role: str) -> go.Figure:
    if role == "datetime":
        return dates_profile(series)
    if role in ("numeric", "text"):
        values = (
            pd.to_numeric(series, errors="coerce")
            if role == "numeric"
            else series.dropna().astype(str).str.split().str.len()
        )
        title = series.name if role == "numeric" else f"{series.name}: words per row"
        figure = px.histogram(values, nbins=30, title=title)
        figure.update_layout(
            showlegend=False,
            xaxis_title=series.name if role == "numeric" else "words",
            yaxis_title="rows",
        )
        return figure
    counts = (
        series.astype(str).value_counts().head(20).rename_axis("value").reset_index(name="rows")
    )
    figure = px.bar(
        counts, x="rows", y="value", orientation="h", title=f"{series.name} (top 20 values)"
    )
    figure.update_yaxes(autorange="reversed", title=None)
    return figure


# ----------------------------------------------------------------------------- training curves


# The live Train page redraws these every LIVE_REFRESH_S in every open session (dashboard/live.py):
# plain graph objects, not plotly.express, build in a few milliseconds instead of ~25.


MAX_CURVE_POINTS = 500  # a long run's curve is thinned: the shape is the same, the page stays light


def loss_curve(steps: list[dict], *, title: str = "Training loss") -> go.Figure:
    if len(steps) > MAX_CURVE_POINTS:
        stride = -(-len(steps) // MAX_CURVE_POINTS)
        steps = steps[::stride] + ([steps[-1]] if (len(steps) - 1) % stride else [])
    x, y = [e.get("step") for e in steps], [e.get("loss") for e in steps]
    figure = go.Figure(
        go.Scatter(x=x, y=y, mode="lines+markers" if len(x) < 30 else "lines", name="loss")
    )
    figure.update_layout(
        title=title, xaxis_title="step", yaxis_title="loss", xaxis_rangemode="tozero"
    )
    if not steps:
        _placeholder(figure, "drawn from the first training steps")
    return figure


def validation_curve(epochs: list[dict], metric: str) -> go.Figure:
    x = [e["epoch"] for e in epochs]
    y = [(e.get("val") or {}).get(metric) for e in epochs]
    label = core.metric_label(metric)
    figure = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", name=label))
    figure.update_layout(
        title=f"Validation {label}", xaxis_title="epoch", yaxis_title=label, xaxis_dtick=1
    )
    if metric in BOUNDED_METRICS:
        figure.update_yaxes(range=[0, 1.02])
    if not epochs:
        figure.update_xaxes(range=[0.5, 1.5])
        _placeholder(figure, "drawn after the first epoch")
    return figure


def _placeholder(figure: go.Figure, text: str) -> None:
    """A note in the middle of a figure that has no data yet (instead of bare axes)."""
    figure.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)


def compare_curves(histories: dict[str, list[dict]], metric: str) -> go.Figure:
    """One line per run over epochs: ``train_loss`` or a validation metric."""

    def value(event: dict):
        return (
            event.get("train_loss")
            if metric == "train_loss"
            else (event.get("val") or {}).get(metric)
        )

    rows = [
        {"run": run_id, "epoch": e["epoch"], metric: value(e)}
        for run_id, events in histories.items()
        for e in events
        if e.get("type") == "epoch"
    ]
    frame = pd.DataFrame(rows, columns=["run", "epoch", metric])
    label = "training loss" if metric == "train_loss" else core.metric_label(metric)
    title = "Training loss by epoch" if metric == "train_loss" else f"Validation {label} by epoch"
    figure = px.line(frame, x="epoch", y=metric, color="run", markers=True, title=title)
    figure.update_xaxes(dtick=1)
    figure.update_yaxes(title=label)
    if metric in BOUNDED_METRICS:
        figure.update_yaxes(range=[0, 1.02])
    return figure


# ----------------------------------------------------------------------------- sweep


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


# ----------------------------------------------------------------------------- explanations

# Raises / lowers the explained output: the same two colours in the waterfall and on the words.
POSITIVE_RGB, NEGATIVE_RGB = (26, 152, 80), (215, 48, 39)
POSITIVE, NEGATIVE = f"rgb{POSITIVE_RGB}", f"rgb{NEGATIVE_RGB}"


def importance_order(explanation) -> list[int]:
    """Column positions by mean |SHAP|, largest first."""
    return list(np.argsort(-np.abs(explanation.values).mean(axis=0), kind="stable"))


def importance_bar(explanation, output: str, *, top: int = 20) -> go.Figure:
    """The ``top`` columns by mean |SHAP| as core's importance figure (the report draws the
    same)."""
    order = importance_order(explanation)[:top]
    mean_abs = np.abs(explanation.values).mean(axis=0)
    columns = [explanation.feature_names[j] for j in order]
    return core.importance_figure(
        columns, mean_abs[order], output, title=f"Importance: mean |effect| on {output}"
    )


def _normalised(values: np.ndarray) -> np.ndarray | None:
    """Feature values scaled to 0-1 by rank for the colour scale; None when they are not numbers."""
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if numbers.notna().sum() < max(1, pd.Series(values).notna().sum()):
        return None
    ranks = numbers.rank(pct=True).to_numpy()
    return ranks if np.nanmax(ranks) > np.nanmin(ranks) else np.full(len(ranks), 0.5)


def beeswarm(explanation, output: str, *, top: int = 20, seed: int = 0) -> go.Figure:
    """One point per row and column: x the SHAP value, colour the feature value (numbers only)."""
    order = importance_order(explanation)[:top]
    rng = np.random.default_rng(seed)
    numeric = {"x": [], "y": [], "c": [], "text": []}
    other = {"x": [], "y": [], "text": []}
    for position, j in enumerate(order):
        name, values, data = (
            explanation.feature_names[j],
            explanation.values[:, j],
            explanation.data[:, j],
        )
        jitter = rng.uniform(-0.3, 0.3, len(values))
        hover = [
            f"{name} = {str(v)[:40]}<br>SHAP {s:+.4f}" for v, s in zip(data, values, strict=True)
        ]
        colour = _normalised(data)
        target = numeric if colour is not None else other
        target["x"].extend(values)
        target["y"].extend(position + jitter)
        target["text"].extend(hover)
        if colour is not None:
            target["c"].extend(colour)
    figure = go.Figure()
    figure.add_scattergl(
        x=other["x"],
        y=other["y"],
        text=other["text"],
        hoverinfo="text",
        mode="markers",
        name="category or text",
        marker={"color": "#999999", "size": 5, "opacity": 0.6},
    )
    figure.add_scattergl(
        x=numeric["x"],
        y=numeric["y"],
        text=numeric["text"],
        hoverinfo="text",
        mode="markers",
        name="number",
        marker={
            "color": numeric["c"],
            "colorscale": [[0, "#3b4cc0"], [1, "#d62728"]],
            "cmin": 0,
            "cmax": 1,
            "size": 5,
            "opacity": 0.7,
            "colorbar": {
                "title": "value",
                "tickvals": [0, 1],
                "ticktext": ["low", "high"],
                "len": 0.6,
            },
        },
    )
    figure.add_vline(x=0, line={"color": "grey", "width": 1})
    figure.update_layout(
        title=f"Effect on {output}, one point per row", showlegend=False, xaxis_title="SHAP value"
    )
    figure.update_yaxes(
        tickvals=list(range(len(order))),
        ticktext=[explanation.feature_names[j] for j in order],
        autorange="reversed",
    )
    return figure


def waterfall(explanation, i: int, output: str, *, top: int = 12) -> go.Figure:
    """From the base value to row ``i``'s prediction, columns sorted by |SHAP|; the rest summed."""
    values, data = explanation.values[i], explanation.data[i]
    base = float(np.asarray(explanation.base_values).reshape(-1)[i])
    order = list(np.argsort(-np.abs(values), kind="stable"))
    shown, rest = order[:top], order[top:]
    labels = [f"{explanation.feature_names[j]} = {str(data[j])[:30]}" for j in shown]
    steps = [float(values[j]) for j in shown]
    if rest:
        labels.append(f"{len(rest)} other columns")
        steps.append(float(values[rest].sum()))
    # Drawn bottom-up like shap's waterfall: the largest effect next to the prediction.
    labels, steps = labels[::-1], steps[::-1]
    prediction = base + float(values.sum())
    path = base + np.cumsum([0.0, *steps])
    low, high = float(path.min()), float(path.max())
    pad = 0.2 * (high - low) or 0.05 * max(1.0, abs(base))  # room for the numbers beside the bars
    figure = go.Figure(
        go.Waterfall(
            orientation="h",
            base=base,
            measure=["relative"] * len(steps) + ["total"],
            y=labels + [f"prediction {prediction:.3f}"],
            x=steps + [0.0],
            text=[f"{s:+.3f}" for s in steps] + [f"{prediction:.3f}"],
            textposition="outside",
            increasing={"marker": {"color": POSITIVE}},
            decreasing={"marker": {"color": NEGATIVE}},
            totals={"marker": {"color": "#4c78a8"}},
            connector={"line": {"color": "#bbbbbb"}},
            cliponaxis=False,
        )
    )
    figure.update_xaxes(range=[low - pad, high + pad], title=output)
    figure.add_vline(
        x=base, line={"dash": "dot", "color": "grey"}, annotation_text=f"base {base:.3f}"
    )
    figure.update_layout(
        title=f"Why {output} = {prediction:.3f} for row {explanation.instance_names[i]}",
        showlegend=False,
    )
    return figure


def highlighted_tokens(tokens, values, scale: float) -> str:
    """The text as HTML spans shaded by each token's SHAP value; every token is HTML-escaped.

    ``scale`` is the |SHAP| that gets the strongest shade; each span's tooltip has its value.
    """
    spans = []
    for token, value in zip(tokens, values, strict=True):
        if not token:
            continue  # the tokenizer's start and end markers
        share = min(1.0, abs(float(value)) / scale) if scale > 0 else 0.0
        red, green, blue = POSITIVE_RGB if value > 0 else NEGATIVE_RGB
        spans.append(
            f'<span title="{float(value):+.4f}" style="background: rgba({red}, {green}, {blue}, '
            f'{0.85 * share:.3f}); border-radius: 3px">{html.escape(str(token), quote=True)}</span>'
        )
    return (
        '<div style="white-space: pre-wrap; line-height: 1.9; font-size: 1.05rem">'
        + "".join(spans)
        + "</div>"
    )


def approval_by_group(groups: pd.DataFrame, column: str) -> go.Figure:
    """Approval rate per group of ``column`` with its 95% interval, and the four-fifths line:
    0.8 x the most-approved group's rate (``groups``: core.run_fairness(...).groups)."""
    rows = groups[groups["column"] == column]
    rate = rows["approval_rate"].to_numpy(dtype=float)
    figure = go.Figure(
        go.Bar(
            x=rows["group"].astype(str),
            y=rate,
            marker={"color": "#4c78a8"},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": rows["approval_rate_high"].to_numpy(dtype=float) - rate,
                "arrayminus": rate - rows["approval_rate_low"].to_numpy(dtype=float),
                "color": "#333333",
            },
            customdata=rows["rows"],
            hovertemplate="%{x}: approval %{y:.1%} of %{customdata} rows<extra></extra>",
        )
    )
    if len(rate) and np.isfinite(rate).any():
        line = core.FOUR_FIFTHS * float(np.nanmax(rate))
        figure.add_hline(
            y=line,
            line={"dash": "dash", "color": NEGATIVE},
            annotation_text=f"{core.FOUR_FIFTHS:g} × the most approved ({line:.0%})",
            annotation_position="top left",
        )
    figure.update_yaxes(title="approval rate", tickformat=".0%", rangemode="tozero")
    figure.update_xaxes(title=column, type="category")
    figure.update_layout(title=f"Approval rate by {column}", showlegend=False)
    return figure
