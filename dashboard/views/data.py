"""Data: load a table, choose the target, check column roles and the split, look at the profile."""

import streamlit as st

import core
from dashboard import components as ui
from dashboard import state

st.title("Data")

left, right = st.columns([3, 2])
with left:
    upload = st.file_uploader("Upload a CSV or Parquet file", type=["csv", "parquet", "pq"])
with right:
    sample = st.selectbox("Or use a sample dataset", list(state.SAMPLES), key="data.sample_choice")
    if st.button("Load sample", icon=":material/dataset:"):
        state.load_sample(sample)

if upload is not None and upload.file_id != st.session_state.get(state.LAST_UPLOAD):
    try:
        state.load_bytes(upload.getvalue(), upload.name)
        st.session_state[state.LAST_UPLOAD] = upload.file_id
    except core.DataError as exc:
        st.error(str(exc), icon=":material/error:")

loaded = state.table()
if loaded is None:
    st.info("Upload a file or load a sample dataset to begin.")
    st.stop()
name, frame = loaded
st.caption(f"**{name}** · {len(frame):,} rows × {frame.shape[1]} columns")
st.dataframe(frame.head(200), height=230)

columns = list(frame.columns)
c1, c2, c3 = st.columns(3)
target = c1.selectbox("Target column", columns, key=state.TARGET, persist_state=state.PERSIST)
c2.selectbox("Task", ["auto", "binary", "multiclass", "regression"], key=state.TASK, persist_state=state.PERSIST,
             help="auto: inferred from the target column")
inferred = core.infer_roles(frame, target)
split_kind = c3.radio("Split", ["random", "time"], key=state.SPLIT_KIND, persist_state=state.PERSIST, horizontal=True,
                      format_func={"random": "Stratified random", "time": "Chronological"}.get)
if split_kind == "time":
    dates = sorted(inferred, key=lambda c: inferred[c] != "datetime")  # date-like columns first
    if st.session_state.get(state.SPLIT_COLUMN) not in dates:
        st.session_state.pop(state.SPLIT_COLUMN, None)
    c3.selectbox("Date column", dates, key=state.SPLIT_COLUMN, persist_state=state.PERSIST)

overrides = {c: r for c, r in st.session_state.get(state.ROLES, {}).items() if c in inferred}
roles = {**inferred, **overrides}
st.subheader("Column roles")
edited = st.data_editor(
    ui.roles_table(frame, roles), key=f"data.roles_editor.{st.session_state[state.DATA_DIGEST]}.{target}",
    hide_index=True, width="stretch", disabled=["column", "type", "missing", "distinct", "example"],
    column_config={"role": st.column_config.SelectboxColumn("role", options=list(core.ROLES), required=True)},
)
st.session_state[state.ROLES] = {c: r for c, r in zip(edited["column"], edited["role"], strict=True)
                                 if inferred.get(c) != r}

try:
    spec = core.describe_table(frame, state.data_config())
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
for note in spec.warnings:
    st.warning(note)
classes = f" · classes: {', '.join(spec.classes[:10])}{' …' if len(spec.classes) > 10 else ''}" if spec.classes else ""
st.success(f"Task: **{spec.task}** · {len(spec.feature_columns)} feature columns{classes}")

st.subheader("Profile")
p1, p2 = st.columns(2)
with p1:
    ui.plot(ui.class_balance(frame[target], spec.task))
with p2:
    ui.plot(ui.missing_values(frame))
shown = st.multiselect("Distributions of", spec.feature_columns, default=spec.feature_columns[:4])
grid = st.columns(2)
for i, column in enumerate(shown):
    with grid[i % 2]:
        ui.plot(ui.distribution(frame[column], spec.roles[column]))
