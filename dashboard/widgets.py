"""Interactive pieces the pages share: the finished-run picker, a safe CSV download button, and
the decision-threshold panel of the Results page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import core
from dashboard import state
from dashboard.charts import plot
from dashboard.formatting import run_label


def pick_finished_run(key: str):
    """A picker over succeeded runs (defaulting to this tab's current run); stops the page if
    none."""
    done = {s.run_id: s for s in state.manager().list_runs() if s.state == "succeeded"}
    if not done:
        st.info("No finished runs yet: train one on the Train page first.")
        st.stop()
    if st.session_state.get(key) not in done:
        # The run this tab just trained; else the newest trained on the file loaded now (a
        # credit file is not scored against a sentiment model); else the newest of all.
        current = st.session_state.get(state.CURRENT_RUN)
        loaded = st.session_state.get(state.DATA_NAME)
        same_file = [r for r, s in done.items() if loaded and s.source == loaded]
        st.session_state[key] = (
            current if current in done else same_file[0] if same_file else next(iter(done))
        )
    run_id = st.selectbox(
        "Run",
        list(done),
        key=key,
        persist_state=state.PERSIST,
        format_func=lambda r: run_label(done[r]),
    )
    return done[run_id]


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
