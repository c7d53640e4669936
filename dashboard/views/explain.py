"""Explain: SHAP values of a finished run for a set of rows, per column and per word, in one
view."""

import hashlib

import numpy as np
import streamlit as st

import core
from dashboard import charts, decisions, formatting, state, widgets


@st.cache_data(max_entries=4, show_spinner="Reading the file ...")
def read_upload(file_id: str, name: str, _raw: bytes):
    return core.read_table(_raw, filename=name)


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def about(seconds: float) -> str:
    return "under a second" if seconds < 1 else f"about {formatting.duration(seconds)}"


@st.fragment(run_every=1.0)
def progress(key: tuple) -> None:
    job = state.explain_jobs().get(key)
    snap = job.snapshot() if job is not None else None
    if snap is None or snap.finished:
        st.rerun()  # the whole page draws the result, or the error
    bar, cancel = st.columns([5, 1])
    if snap.state == "queued" and snap.position:
        text = f"{ordinal(snap.position)} in the queue, after {snap.after}"
    elif snap.state == "queued":
        text = "starting the explainer"
    else:
        text = f"{snap.fraction:.0%} of {job.n_rows} rows"
        if snap.rows_per_s:
            text += f" · {snap.rows_per_s:,.1f} rows/s"
        if snap.eta_s is not None:
            text += f" · {about(snap.eta_s)} left"
    bar.progress(snap.fraction, text=text)
    if cancel.button("Cancel", icon=":material/stop:", key="explain.cancel"):
        job.cancel()
        st.toast("Cancelling the explanation ...")


@st.fragment(run_every=1.0)
def await_speed(run_dir) -> None:
    if state.explain_jobs().speed(run_dir) is not None:
        st.rerun()  # the page states the estimate
    st.caption("Timing a few rows of this run to estimate how long it takes here ...")


st.title("Explain")
summary = widgets.pick_finished_run(state.EXPLAIN_RUN)
jobs = state.explain_jobs()
# Loads the run in the explainer process and times a few rows, while this page loads it too.
speed = jobs.speed(summary.path)
try:
    spec = core.load_model(summary.path).spec_
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

left, middle, right = st.columns(3)
source = left.radio(
    "Rows to explain",
    ["held_out", "upload"],
    key=state.EXPLAIN_SOURCE,
    horizontal=True,
    persist_state=state.PERSIST,
    format_func={"held_out": "the run's held-out rows", "upload": "rows of a file"}.get,
    help="Held-out rows: the run's test rows, then its validation rows when N is more than the "
    "test rows.",
)
state.init_widget(state.EXPLAIN_ROWS, core.DEFAULT_EXPLAIN_ROWS)
n_rows = int(
    middle.number_input(
        "How many (the first N)",
        min_value=1,
        max_value=core.MAX_EXPLAIN_ROWS,
        key=state.EXPLAIN_ROWS,
        persist_state=state.PERSIST,
        help="Time grows with every row.",
    )
)
if spec.task == "multiclass":
    if st.session_state.get(state.EXPLAIN_CLASS) not in spec.classes:
        st.session_state[state.EXPLAIN_CLASS] = spec.classes[-1]
    label = right.selectbox(
        "Class whose probability is explained",
        list(spec.classes),
        key=state.EXPLAIN_CLASS,
        persist_state=state.PERSIST,
    )
elif spec.task == "regression":
    label = None
    right.caption(f"Explains the predicted **{spec.target}**, in its units.")
else:
    label = spec.positive_class
    other = next(c for c in spec.classes if c != label)
    right.caption(
        f"Explains the probability of **{label}** (the positive class; "
        f"the other class, {other}, moves the opposite way)."
    )

try:
    if source == "held_out":
        rows, n_test = core.held_out_rows(summary.path, n_rows)
        rows_key = ("held_out", n_rows)
        chosen = (
            f"the run's {n_test} test rows and {len(rows) - n_test} of its validation rows"
            if n_test < len(rows)
            else "the run's test rows"
        ) + (": all it holds out" if len(rows) < n_rows else "")
    else:
        upload = st.file_uploader(
            "File with the run's columns (CSV or Parquet)",
            type=["csv", "parquet", "pq"],
            key="explain.upload",
        )
        if upload is None:
            st.info("Upload a file whose rows to explain.")
            st.stop()
        raw = upload.getvalue()
        rows = read_upload(upload.file_id, upload.name, raw).head(n_rows)
        rows_key = ("upload", hashlib.sha256(raw).hexdigest(), n_rows)
        chosen = f"the first rows of {upload.name}"
        core.load_model(summary.path).preprocessor_.check_columns(rows)  # the missing columns, now
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

key = (str(summary.path), *rows_key, label)
job = jobs.get(key)
snap = job.snapshot() if job is not None else None
if snap is not None and snap.state == "failed":
    if not isinstance(snap.error, core.FinTuneError):
        raise snap.error  # a bug: let it surface
    st.error(str(snap.error), icon=":material/error:")
elif snap is not None and snap.state == "cancelled":
    st.warning("The explanation was cancelled.", icon=":material/cancel:")
if snap is None or snap.state in ("failed", "cancelled"):
    st.caption(
        f"{len(rows)} rows ({chosen}), each compared with random training rows (16 on a "
        "table read by its cells; one summary row of the training data when whole rows are read "
        "as text)."
    )
    if speed is None:
        await_speed(summary.path)
    elif (seconds := speed.seconds(len(rows))) is not None:
        st.caption(
            f"Computing takes {about(seconds)} here, in a separate process (estimated from "
            f"{speed.basis}); other jobs queued before it run first."
        )
    if not st.button("Compute explanations", type="primary", icon=":material/play_arrow:"):
        st.stop()
    job = jobs.start(key, summary.path, rows, class_index=label)
    snap = job.snapshot()
if not snap.finished:
    progress(key)
    st.stop()

explanation = snap.explanation
output = formatting.output_label(explanation, spec.task)
stats = explanation.stats
st.caption(
    f"{len(rows)} rows explained in {stats.seconds:.1f} s ({chosen}): "
    f"{stats.backbone_passes:,} backbone passes, {stats.model_rows:,} model rows "
    f"({stats.precision}); reference: {explanation.background.description}. Each bar and "
    f"point is on the scale of {output}."
)

st.subheader("Global importance")
left, right = st.columns(2)
height = 120 + 22 * min(20, len(explanation.feature_names))
with left:
    charts.plot(charts.importance_bar(explanation, output), height=height)
with right:
    charts.plot(charts.beeswarm(explanation, output), height=height)
widgets.download_csv(
    core.explanation_frame(explanation), f"{summary.run_id}-shap.csv", "Download SHAP values (CSV)"
)

st.subheader("One row: columns and words")
names = list(explanation.instance_names)
predictions = np.asarray(explanation.base_values).reshape(-1) + explanation.values.sum(axis=1)
if st.session_state.get(state.EXPLAIN_ROW) not in names:
    st.session_state[state.EXPLAIN_ROW] = names[0]
picked = st.selectbox(
    "Row",
    names,
    key=state.EXPLAIN_ROW,
    persist_state=state.PERSIST,
    format_func=lambda r: f"row {r} · {output} = {predictions[names.index(r)]:.3f}",
)
i = names.index(picked)
with st.container(border=True):
    charts.plot(
        charts.waterfall(explanation, i, output),
        height=140 + 28 * min(13, len(explanation.feature_names)),
    )
    scale = float(np.abs(explanation.values[i]).max())
    for column in spec.columns("text"):
        text = rows.at[picked, column]
        if not isinstance(text, str) or not text.strip():
            st.caption(f"`{column}`: no text in this row.")
            continue
        try:
            with st.spinner(f"Explaining the words of {column} ..."):
                words = jobs.tokens(
                    key + (picked, column),
                    summary.path,
                    rows.loc[[picked]],
                    column,
                    class_index=label,
                )
        except core.FinTuneError as exc:
            st.error(str(exc), icon=":material/error:")
            continue
        values, tokens = words.values[0], words.data[0]
        start = float(np.asarray(words.base_values).reshape(-1)[0])
        st.markdown(f"**{column}**")
        strongest = float(np.abs(values).max())
        st.html(charts.highlighted_tokens(tokens, values, strongest))
        # Shaded relative to the strongest word, so the words stay readable; the numbers say how
        # that compares with the columns above, in the same units.
        st.caption(
            f"Green words raise {output}, red ones lower it; the darkest moves it by "
            f"{strongest:.3f} (the largest column above: {scale:.3f}). With every word masked "
            f"{output} is {start:.3f}; the words bring it to {start + float(values.sum()):.3f}. "
            "Hover a word for its value."
        )

row = rows.loc[[picked]]
if spec.task == "binary":
    st.subheader("Decision and reasons")
    decisions.reasons(summary, spec, row)
st.subheader("What if")
decisions.what_if(summary, spec, row, output)
if spec.task == "binary":
    st.subheader("What would change the decision")
    decisions.counterfactuals(summary, spec, row)
