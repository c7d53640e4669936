"""Train: start a background fine-tuning job and watch it; every tab sees the same jobs."""

import streamlit as st

import core
from core import distributed
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
    gpus = distributed.gpu_count()
    if gpus > 1:
        n_gpus = st.number_input(
            "Launch on N GPUs", min_value=1, max_value=gpus, value=gpus, step=1, key="train.gpus",
            help=f"This machine has {gpus} GPUs. Each GPU runs one process (DDP under Hugging Face Accelerate) and "
                 f"takes its share of every batch of {t.batch_size} rows, so results match a one-GPU run.")
        if n_gpus > 1:
            try:
                config = config.replace(train={"num_processes": int(n_gpus), "device": "auto"})
            except core.FinTuneError as exc:
                st.error(str(exc), icon=":material/error:")
                config = None
    if st.button("Start fine-tuning", type="primary", icon=":material/play_arrow:", disabled=config is None):
        try:
            st.session_state[state.CURRENT_RUN] = jobs.submit(config, frame, source=name)
        except core.FinTuneError as exc:
            st.error(str(exc), icon=":material/error:")


@st.fragment(run_every=ui.LIVE_REFRESH_S)
def progress() -> None:
    ui.live_run(jobs, state.current_run_id())


@st.fragment(run_every=ui.RUNS_REFRESH_S)
def all_runs() -> None:
    st.subheader("All runs")
    ui.runs_table(jobs.list_runs())


progress()
all_runs()
