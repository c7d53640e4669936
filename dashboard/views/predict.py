"""Predict: score a new file with a finished run and download the predictions."""

import streamlit as st

import core
from dashboard import components as ui
from dashboard import state


@st.cache_data(max_entries=4, show_spinner="Scoring ...")
def score(run_dir: str, file_id: str, name: str, _raw: bytes):
    return core.score_file(run_dir, core.read_table(_raw, filename=name))


st.title("Predict")
summary = ui.pick_finished_run(state.PREDICT_RUN)
st.caption(f"The file needs the columns this run was trained on; `{summary.target}` may be missing.")
upload = st.file_uploader("File to score (CSV or Parquet)", type=["csv", "parquet", "pq"], key="predict.upload")
if upload is None:
    st.info("Upload a file to score.")
    st.stop()

try:
    predictions, warnings = score(str(summary.path), upload.file_id, upload.name, upload.getvalue())
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

for warning in warnings:
    st.warning(warning)
st.success(f"{len(predictions):,} predictions from run {summary.run_id}.")
st.dataframe(predictions, hide_index=True, height=400, width="stretch")
ui.download_csv(predictions, f"{summary.run_id}-predictions.csv", "Download predictions")
