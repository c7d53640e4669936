"""Reusable rendering for the pages: plotly figures, run and metric tables, downloads.

Figures are built from what ``core`` returns (run-folder events, predictions, metrics); nothing
here computes a metric or trains anything.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import core

STATE_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "interrupted": ":material/warning:",
    "damaged": ":material/broken_image:",
}  # for markdown
BOUNDED_METRICS = ("roc_auc", "accuracy", "f1")


def plot(figure: go.Figure, *, key: str | None = None, height: int = 320) -> None:
    figure.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}, height=height)
    st.plotly_chart(figure, width="stretch", key=key)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h {minutes:02d}m"
        if hours
        else (f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s")
    )


def millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


def download_csv(
    frame: pd.DataFrame, filename: str, label: str = "Download CSV", *, key: str | None = None
) -> None:
    """A download button whose CSV has formula-like cells escaped (core.to_safe_csv)."""
    st.download_button(
        label,
        core.to_safe_csv(frame),
        file_name=filename,
        mime="text/csv",
        key=key,
        icon=":material/download:",
    )


# ----------------------------------------------------------------------------- data profile


def class_balance(target: pd.Series, task: str) -> go.Figure:
    if task == "regression":
        return px.histogram(
            pd.to_numeric(target, errors="coerce"), nbins=40, title=f"Distribution of {target.name}"
        )
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


def distribution(series: pd.Series, role: str) -> go.Figure:
    if role == "numeric":
        return px.histogram(pd.to_numeric(series, errors="coerce"), nbins=30, title=series.name)
    if role == "text":
        words = series.dropna().astype(str).str.split().str.len()
        return px.histogram(words, nbins=30, title=f"{series.name}: words per row")
    counts = (
        series.astype(str).value_counts().head(20).rename_axis("value").reset_index(name="rows")
    )
    figure = px.bar(
        counts, x="rows", y="value", orientation="h", title=f"{series.name} (top 20 values)"
    )
    figure.update_yaxes(autorange="reversed", title=None)
    return figure


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


# ----------------------------------------------------------------------------- training curves


# The live Train page redraws these every second in every open session: plain graph objects,
# not plotly.express, build in a few milliseconds instead of ~25.


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
    return figure


def validation_curve(epochs: list[dict], metric: str) -> go.Figure:
    x = [e["epoch"] for e in epochs]
    y = [(e.get("val") or {}).get(metric) for e in epochs]
    figure = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", name=metric))
    figure.update_layout(
        title=f"Validation {metric}", xaxis_title="epoch", yaxis_title=metric, xaxis_dtick=1
    )
    if metric in BOUNDED_METRICS:
        figure.update_yaxes(range=[0, 1.02])
    return figure


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
    title = "Training loss by epoch" if metric == "train_loss" else f"Validation {metric} by epoch"
    figure = px.line(frame, x="epoch", y=metric, color="run", markers=True, title=title)
    figure.update_xaxes(dtick=1)
    return figure


LIVE_REFRESH_S = (
    2.0  # the live view's redraw interval: every open Train page pays it (bench/load.py)
)
RUNS_REFRESH_S = 10.0  # the all-runs table: states change rarely


def live_run(jobs, run_id: str | None) -> None:
    """The live view of one run: state, progress, loss and validation curves, all runs.

    Every open Train page redraws this every LIVE_REFRESH_S, so it must stay cheap (bench/load.py).
    """
    if run_id is None:
        st.caption("No runs yet: start one above.")
        return
    snap = jobs.snapshot(run_id)
    head, cancel = st.columns([5, 1])
    head.subheader(f"Run {run_id}")
    # The engine reports phases up to tokenising; after that the step events tell the story.
    activity = (
        "" if snap.finished else (f"training, epoch {snap.epoch}" if snap.steps else snap.phase)
    )
    head.markdown(
        f"State: **{STATE_ICONS.get(snap.state, '')} {snap.state}**"
        + (f" · {activity}" if activity else "")
    )
    if not snap.finished and cancel.button(
        "Cancel", icon=":material/stop:", key=f"cancel.{run_id}"
    ):
        jobs.cancel(run_id)
        st.toast(f"Cancelling {run_id} ...")
    if snap.state in ("failed", "interrupted", "cancelled", "damaged") and snap.message:
        (st.error if snap.state == "failed" else st.warning)(snap.message)
    step_text = (
        f"step {snap.step} of {snap.total_steps}" if snap.total_steps else snap.phase or snap.state
    )
    st.progress(snap.progress, text=step_text)
    c = st.columns(4)
    c[0].metric("Epoch", snap.epoch or "–")
    c[1].metric("Loss", "–" if snap.loss is None else f"{snap.loss:.4f}")
    c[2].metric("Samples/s", "–" if snap.samples_per_s is None else f"{snap.samples_per_s:.1f}")
    c[3].metric(
        "ETA" if not snap.finished else "Elapsed",
        duration(snap.elapsed_s if snap.finished else snap.eta_s),
    )
    ranks = snap.steps[-1].get("ranks") if snap.steps else None
    if ranks:
        st.caption(
            f"On {len(ranks)} processes · "
            + " · ".join(
                f"process {r['rank']}: loss {r['loss']:.4f}, {r['samples_per_s']:.1f} rows/s"
                for r in ranks
            )
        )
    left, right = st.columns(2)
    with left:
        plot(loss_curve(snap.steps), key=f"loss.{run_id}")
    with right:
        val = (snap.epochs[-1].get("val") or {}) if snap.epochs else {}
        metric = core.headline_metric("regression" if "rmse" in val else None)
        plot(validation_curve(snap.epochs, metric), key=f"val.{run_id}")


def runs_table(summaries: list) -> None:
    if not summaries:
        st.caption("No runs yet.")
        return
    rows = pd.DataFrame([s.as_row() for s in summaries])
    st.dataframe(rows, hide_index=True, width="stretch")


# ----------------------------------------------------------------------------- results


def metrics_table(metrics_by_run: dict[str, dict]) -> pd.DataFrame:
    """Rows: run and split; columns: metrics."""
    rows = []
    for run_id, metrics in metrics_by_run.items():
        for split in ("val", "test"):
            values = {
                k: v for k, v in (metrics.get(split) or {}).items() if isinstance(v, (int, float))
            }
            rows.append({"run": run_id, "split": split, **values})
    return pd.DataFrame(rows)


def pick_finished_run(key: str):
    """A picker over succeeded runs (defaulting to this tab's current run); stops the page if none."""
    from dashboard import state

    done = {s.run_id: s for s in state.manager().list_runs() if s.state == "succeeded"}
    if not done:
        st.info("No finished runs yet: train one on the Train page first.")
        st.stop()
    if st.session_state.get(key) not in done:
        current = st.session_state.get(state.CURRENT_RUN)
        st.session_state[key] = current if current in done else next(iter(done))
    run_id = st.selectbox(
        "Run",
        list(done),
        key=key,
        persist_state=state.PERSIST,
        format_func=lambda r: run_label(done[r]),
    )
    return done[run_id]


def run_label(summary) -> str:
    metric = (
        f" · {summary.test_metric} {summary.test_value:.3f}"
        if summary.test_value is not None
        else ""
    )
    return f"{summary.run_id} · {summary.target} · {summary.backbone} (freeze {summary.freeze_depth}){metric}"


# ----------------------------------------------------------------------------- explanations

# Raises / lowers the explained output: the same two colours in the waterfall and on the words.
POSITIVE_RGB, NEGATIVE_RGB = (26, 152, 80), (215, 48, 39)
POSITIVE, NEGATIVE = f"rgb{POSITIVE_RGB}", f"rgb{NEGATIVE_RGB}"


def output_label(explanation, task: str) -> str:
    """What the SHAP values add up to: ``P(label)`` for a class, the target's name for regression."""
    name = explanation.output_names
    return name if task == "regression" else f"P({name})"


def importance_order(explanation) -> list[int]:
    """Column positions by mean |SHAP|, largest first."""
    return list(np.argsort(-np.abs(explanation.values).mean(axis=0), kind="stable"))


def importance_bar(explanation, output: str, *, top: int = 20) -> go.Figure:
    """The ``top`` columns by mean |SHAP| as core's importance figure (the report draws the same)."""
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


# ----------------------------------------------------------------------------- decision threshold


def _save_decision(run_dir, decision) -> None:
    try:
        core.write_decision(run_dir, decision)
        st.toast(
            f"Threshold {decision.threshold:.3f} saved: predictions now use it.",
            icon=":material/check:",
        )
    except core.FinTuneError as exc:
        st.toast(str(exc), icon=":material/error:")


def decision_panel(summary, metrics: dict, predictions: pd.DataFrame) -> None:
    """Choose a binary run's threshold by costs, approval rate or hand (on validation rows), see
    what it does on test rows, and save it for every later prediction."""
    positive = str(metrics["positive_class"])
    negative = next(str(c) for c in metrics["classes"] if str(c) != positive)
    try:
        val = core.read_val_predictions(summary.path)
        saved = core.read_decision(summary.path)
    except core.FinTuneError as exc:
        st.info(str(exc))
        return

    def scores(table: pd.DataFrame):
        return core.table_scores(table, summary.target, positive)

    key = f"results.decision.{summary.run_id}"
    saved_method = saved.method if saved else "cost"
    st.session_state.setdefault(f"{key}.method", saved_method)
    method = st.radio(
        "Choose the threshold by",
        ["cost", "approval_rate", "manual"],
        key=f"{key}.method",
        horizontal=True,
        format_func={
            "cost": "Costs of errors",
            "approval_rate": "Target approval rate",
            "manual": "By hand",
        }.get,
    )
    c1, c2 = st.columns(2)
    cost_fp = c1.number_input(
        f"Cost of flagging a row that is not {positive} (false positive)",
        min_value=0.0,
        value=float(saved.cost_fp) if saved else 1.0,
        step=0.5,
        key=f"{key}.cost_fp",
    )
    cost_fn = c2.number_input(
        f"Cost of missing a {positive} row (false negative)",
        min_value=0.0,
        value=float(saved.cost_fn) if saved else 1.0,
        step=0.5,
        key=f"{key}.cost_fn",
    )
    approval_rate = threshold = None
    if method == "approval_rate":
        default = saved.approval_rate if saved and saved.approval_rate is not None else 0.8
        approval_rate = st.slider(
            "Share of rows approved (not flagged)",
            0.0,
            1.0,
            float(default),
            0.01,
            key=f"{key}.approval",
            format="%.2f",
        )
    elif method == "manual":
        threshold = st.slider(
            f"Flag rows with P({positive}) at or above",
            0.0,
            1.0,
            float(saved.threshold) if saved else 0.5,
            0.005,
            key=f"{key}.threshold",
            format="%.3f",
        )
    try:
        decision = core.choose_threshold(
            *scores(val),
            positive,
            cost_fp=cost_fp,
            cost_fn=cost_fn,
            approval_rate=approval_rate,
            threshold=threshold,
        )
    except core.FinTuneError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    test = core.outcome_at(*scores(predictions), decision)
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric("Threshold", f"{decision.threshold:.3f}", help="chosen on the validation rows")
    m2.metric("Expected cost per row (test)", f"{test['cost_per_row']:.3f}")
    m3.metric("Approval rate (test)", f"{test['approval_rate']:.1%}")
    m4.metric(
        f"Precision for {positive}",
        "–" if np.isnan(test["precision"]) else f"{test['precision']:.1%}",
    )
    m5.metric(
        f"Recall for {positive}", "–" if np.isnan(test["recall"]) else f"{test['recall']:.1%}"
    )
    left, right = st.columns(2)
    with left:
        plot(core.threshold_confusion_figure(test, positive, negative))
    with right:
        curve = core.cost_curve(*scores(val), cost_fp, cost_fn)
        plot(core.cost_figure(curve, decision.threshold, "validation rows"))
    current = (
        f"Saved threshold: **{saved.threshold:.3f}** ({saved.method})."
        if saved
        else "No threshold saved."
    )
    st.caption(
        f"{current} Predictions on the Predict page and `fintune predict` use the saved one."
    )
    st.button(
        "Use this threshold for predictions",
        icon=":material/save:",
        key=f"{key}.save",
        on_click=_save_decision,
        args=(summary.path, decision),
        disabled=saved is not None and saved == decision,
    )
