"""The live view of a training run on the Train page, and the table of all runs.

The Train page's fragments redraw these every ``LIVE_REFRESH_S`` and ``RUNS_REFRESH_S`` in every
open session, so they read only the job manager's snapshots and stay cheap (bench/load.py).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import core
from dashboard.charts import loss_curve, plot, validation_curve
from dashboard.formatting import STATE_ICONS, duration

# The live view's redraw interval: every open Train page pays it (bench/load.py).
LIVE_REFRESH_S = 2.0
RUNS_REFRESH_S = 10.0  # the all-runs table: states change rarely
LAST_DRAWN = "live.last_drawn"  # (run id, state) the live view last showed in this session


def live_run(jobs, run_id: str | None) -> None:
    """The live view of one run: state, progress, loss and validation curves, all runs.

    Every open Train page redraws this every LIVE_REFRESH_S, so it must stay cheap (bench/load.py).
    """
    if run_id is None:
        st.caption("No runs yet: start one above.")
        return
    snap = jobs.snapshot(run_id)
    # The all-runs table refreshes only every RUNS_REFRESH_S: when the followed run changes state,
    # redraw the whole page once so the table does not contradict this view.
    last = st.session_state.get(LAST_DRAWN)
    st.session_state[LAST_DRAWN] = (run_id, snap.state)
    if last is not None and last[0] == run_id and last[1] != snap.state:
        st.rerun()
    head, cancel = st.columns([5, 1])
    head.subheader(f"Run {run_id}")
    # In the loop the step events tell the story; before and after it (loading, the trees, the
    # report's baselines and checks) the phase says what is happening.
    activity = (
        "" if snap.finished else f"training, epoch {snap.epoch}" if snap.training else snap.phase
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
        f"step {snap.step} of {snap.total_steps}"
        if snap.training or (snap.finished and snap.total_steps)
        else f"training done · {snap.phase}"
        if snap.total_steps and snap.phase
        else snap.phase or snap.state
    )
    st.progress(snap.progress, text=step_text)
    c = st.columns(4)
    c[0].metric("Epoch", snap.epoch or "–")
    c[1].metric("Loss", "–" if snap.loss is None else f"{snap.loss:.4f}")
    c[2].metric("Samples/s", "–" if snap.samples_per_s is None else f"{snap.samples_per_s:.1f}")
    # While the loop runs, its ETA; otherwise the wall time so far, every phase included.
    c[3].metric(
        "ETA (training)" if snap.training else "Elapsed",
        duration(snap.eta_s if snap.training else snap.wall_s),
        help=None
        if snap.training
        else "From the worker's start: loading, training and the "
        "report (baselines, intervals, stability) all count.",
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
