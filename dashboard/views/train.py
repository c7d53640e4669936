"""Train: start a background fine-tuning job and watch it; every tab sees the same jobs."""

import json
from concurrent.futures import Future, ThreadPoolExecutor

import streamlit as st

import core
from core.training import distributed
from dashboard import charts, live, state

PRESET = "train.preset"  # the preset control; derived from the settings on every run
SUGGESTED = "train.preset_suggested"  # the preset was pre-selected once for this tab


@st.cache_resource(show_spinner=False)
def _estimates() -> tuple[ThreadPoolExecutor, dict[tuple, Future]]:
    # One measuring thread per process: the page shows "measuring ..." instead of waiting.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="estimate"), {}


def estimate(config: core.RunConfig, frame, spec) -> Future:
    """The run's time estimate (core measures this backbone here), computed once per config."""
    pool, futures = _estimates()
    key = (st.session_state.get(state.DATA_DIGEST), json.dumps(config.to_dict(), default=str))
    if key not in futures:
        futures[key] = pool.submit(core.estimate_run, config, frame, spec)
    return futures[key]


def apply_preset(choices: dict[str, dict]) -> None:
    """Set the Model page's settings to the chosen preset's (they show there)."""
    for section, values in choices.get(st.session_state.get(PRESET), {}).items():
        for field, value in values.items():
            st.session_state[f"{section}.{field}"] = value


@st.fragment(run_every=1.0)
def waiting_for(future: Future) -> None:
    if future.done():
        st.rerun()  # the whole page: the estimate may pre-select a preset
    st.caption(":material/speed: Estimated run time: measuring this machine's speed ...")


def preset_and_estimate(frame, config: core.RunConfig, spec) -> None:
    """The preset control and the estimated run time of the chosen settings."""
    layers = core.describe_backbone(config.model.backbone).n_layers
    choices = core.presets(spec, layers, config.model)
    balanced = estimate(config.replace(**choices["Balanced"]), frame, spec)
    if not st.session_state.get(SUGGESTED) and balanced.done() and not balanced.exception():
        st.session_state[SUGGESTED] = True
        if core.matching_preset(config, spec, layers) == "Balanced":  # nothing chosen yet
            device = "cpu" if balanced.result().device == "CPU" else "gpu"
            st.session_state[PRESET] = core.suggested_preset(balanced.result().seconds, device)
            apply_preset(choices)
            st.rerun()  # the lines above show the preset's settings
    st.session_state[PRESET] = core.matching_preset(config, spec, layers)
    st.segmented_control(
        "Preset", core.PRESETS, key=PRESET, on_change=apply_preset, args=(choices,)
    )
    chosen = st.session_state[PRESET]
    st.caption(
        core.preset_note(chosen, spec, layers, config.model)
        if chosen
        else "Custom: settings changed on the Model page (a preset sets freeze depth, epochs and "
        "patience; choose one to go back to it)."
    )
    future = estimate(config, frame, spec)
    if not future.done():
        waiting_for(future)
    elif future.exception() is not None:
        st.caption(f":material/speed: No estimate: {future.exception()}")
    else:
        st.markdown(f":material/speed: Estimated run time: {future.result().describe()}.")


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
    depth = m.freeze_depth
    try:
        layers = core.describe_backbone(m.backbone).n_layers
        if depth == "auto":
            depth = f"{core.resolve_freeze_depth(m, spec, layers)} (auto)"
        auto_epochs = t.epochs == "auto"
        t = t.resolved(head_only=core.trains_head_only(m, spec, layers))
    except core.FinTuneError:  # a backbone that cannot be read: Start says why
        auto_epochs = False
    budget = (
        f"up to {t.epochs} epochs" + (" (auto)" if auto_epochs else "")
        if t.epochs != 1
        else "1 epoch"
    ) + (f", at most {t.max_steps} steps" if t.max_steps else "")
    tuning = f"freeze depth {depth}" + (
        f", LoRA r{m.lora_rank} (alpha {m.lora_scale:g}, "
        f"{', '.join(m.lora_targets or ['all linear layers'])})"
        if m.lora_rank
        else ""
    )
    st.markdown(
        f"**{name}** → predict **{spec.target}** ({spec.task}) with **{m.backbone}**, "
        f"{tuning}, {budget}, batch {t.batch_size}, lr {t.lr:g}."
    )
    try:
        preset_and_estimate(frame, config, spec)
    except core.FinTuneError as exc:  # a backbone that cannot be read: Start says why
        st.caption(f"No presets or estimate: {exc}")
    gpus = distributed.gpu_count()
    if gpus > 1:
        n_gpus = st.number_input(
            "Launch on N GPUs",
            min_value=1,
            max_value=gpus,
            value=gpus,
            step=1,
            key="train.gpus",
            help=f"This machine has {gpus} GPUs. Each GPU runs one process (DDP under Hugging Face "
            f"Accelerate) and takes its share of every batch of {t.batch_size} rows, so "
            "results match a one-GPU run.",
        )
        if n_gpus > 1:
            try:
                config = config.replace(train={"num_processes": int(n_gpus), "device": "auto"})
            except core.FinTuneError as exc:
                st.error(str(exc), icon=":material/error:")
                config = None
    start, sweep = st.columns([1, 2])
    # A second click while this tab's run is going would queue a duplicate behind it; the live
    # view redraws the page when the run ends, which enables the button again.
    current = state.current_run_id()
    busy = current is not None and not jobs.snapshot(current).finished
    if start.button(
        "Start fine-tuning",
        type="primary",
        icon=":material/play_arrow:",
        disabled=config is None or busy,
        help=f"Run {current} is still going: wait for it, or cancel it below." if busy else None,
    ):
        try:
            st.session_state[state.CURRENT_RUN] = jobs.submit(config, frame, source=name)
        except core.FinTuneError as exc:
            st.error(str(exc), icon=":material/error:")
    if sweep.button(
        "Sweep freeze depth",
        icon=":material/stacked_line_chart:",
        disabled=config is None,
        help="One run per freeze depth, from all layers frozen to none, plus LoRA (rank 8), with "
        "these settings; then validation metric, trainable parameters, time and memory per "
        "setting.",
    ):
        try:
            n_layers = core.describe_backbone(config.model.backbone).n_layers
            started = core.start_sweep(jobs, config, frame, n_layers, source=name)
            st.session_state[state.CURRENT_RUN] = started.run_ids[0]
            st.toast(f"Sweep queued: {len(started.points)} runs.")
        except core.FinTuneError as exc:
            st.error(str(exc), icon=":material/error:")


@st.fragment(run_every=live.LIVE_REFRESH_S)
def progress() -> None:
    live.live_run(jobs, state.current_run_id())


@st.fragment(run_every=live.RUNS_REFRESH_S)
def all_runs() -> None:
    st.subheader("All runs")
    live.runs_table(jobs.list_runs())


@st.fragment(run_every=live.RUNS_REFRESH_S)
def latest_sweep() -> None:
    sweeps = core.list_sweeps(jobs.runs_dir)
    if not sweeps:
        return
    sweep = sweeps[0]
    table = core.sweep_results(jobs.runs_dir, sweep)
    done = int((table["state"] == "succeeded").sum())
    st.subheader("Freeze-depth sweep")
    st.caption(
        f"Sweep {sweep.sweep_id} on {sweep.source or 'the table'}: {done} of {len(table)} runs "
        "finished. The knee (red) is the cheapest setting that gets most of the way to the best "
        "validation score."
    )
    charts.plot(charts.sweep_figure(table), key=f"sweep.{sweep.sweep_id}", height=560)
    number = st.column_config.NumberColumn
    st.dataframe(
        table[
            [
                "label",
                "state",
                "val_metric",
                "test_metric",
                "trainable_parameters",
                "wall_s",
                "peak_memory_mb",
                "knee",
                "run_id",
            ]
        ],
        hide_index=True,
        width="stretch",
        column_config={
            "label": "setting",
            "val_metric": number("validation", format="%.4f"),
            "test_metric": number("test", format="%.4f"),
            "trainable_parameters": number("trainable parameters", format="localized"),
            "wall_s": number("training s", format="%.1f"),
            "peak_memory_mb": number("peak MB", format="%.0f"),
            "run_id": "run",
        },
    )


progress()
latest_sweep()
all_runs()
