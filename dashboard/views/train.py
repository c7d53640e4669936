"""Train: start a background fine-tuning job and watch it; every tab sees the same jobs."""

import streamlit as st

import core
from dashboard import components as ui
from dashboard import state

st.title("Train")
jobs = state.manager()

try:
    name, frame, config, spec = state.validated()
except LookupError:
    st.info("Load a table and choose its target on the Data page first.")
    spec = None
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    spec = None

if spec is not None:
    m, t = config.model, config.train
    budget = f"{t.epochs} epoch{'s' if t.epochs > 1 else ''}" + (f", at most {t.max_steps} steps" if t.max_steps else "")
    st.markdown(f"**{name}** → predict **{spec.target}** ({spec.task}) with **{m.backbone}**, "
                f"freeze depth {m.freeze_depth}, {budget}, batch {t.batch_size}, lr {t.lr:g}.")
    if st.button("Start fine-tuning", type="primary", icon=":material/play_arrow:"):
        try:
            st.session_state[state.CURRENT_RUN] = jobs.submit(config, frame, source=name)
        except core.FinTuneError as exc:
            st.error(str(exc), icon=":material/error:")


@st.fragment(run_every=1.0)
def progress() -> None:
    run_id = state.current_run_id()
    if run_id is None:
        st.caption("No runs yet: start one above.")
        return
    snap = jobs.snapshot(run_id)
    head, cancel = st.columns([5, 1])
    head.subheader(f"Run {run_id}")
    # The engine reports phases up to tokenising; after that the step events tell the story.
    activity = "" if snap.finished else (f"training, epoch {snap.epoch}" if snap.steps else snap.phase)
    head.markdown(f"State: **{ui.STATE_ICONS.get(snap.state, '')} {snap.state}**"
                  + (f" · {activity}" if activity else ""))
    if not snap.finished and cancel.button("Cancel", icon=":material/stop:", key=f"cancel.{run_id}"):
        jobs.cancel(run_id)
        st.toast(f"Cancelling {run_id} ...")
    if snap.state in ("failed", "interrupted", "cancelled") and snap.message:
        (st.error if snap.state == "failed" else st.warning)(snap.message)
    step_text = f"step {snap.step} of {snap.total_steps}" if snap.total_steps else snap.phase or snap.state
    st.progress(snap.progress, text=step_text)
    c = st.columns(4)
    c[0].metric("Epoch", snap.epoch or "–")
    c[1].metric("Loss", "–" if snap.loss is None else f"{snap.loss:.4f}")
    c[2].metric("Samples/s", "–" if snap.samples_per_s is None else f"{snap.samples_per_s:.1f}")
    c[3].metric("ETA" if not snap.finished else "Elapsed", ui.duration(snap.elapsed_s if snap.finished else snap.eta_s))
    left, right = st.columns(2)
    with left:
        ui.plot(ui.loss_curve(snap.steps), key=f"loss.{run_id}")
    with right:
        val = (snap.epochs[-1].get("val") or {}) if snap.epochs else {}
        metric = ui.headline_metric("regression" if "rmse" in val else "classification")
        ui.plot(ui.validation_curve(snap.epochs, metric), key=f"val.{run_id}")
    st.subheader("All runs")
    ui.runs_table(jobs.list_runs())


progress()
