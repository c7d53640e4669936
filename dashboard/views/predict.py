"""Predict: score a new file with a finished run, check it against training, download the result."""

import streamlit as st

import core
from dashboard import charts, formatting, state, widgets


@st.cache_data(max_entries=4, show_spinner="Scoring ...")
def score(run_dir: str, file_id: str, name: str, threshold: float | None, _raw: bytes):
    frame = core.read_table(_raw, filename=name)
    predictions, warnings = core.score_file(run_dir, frame, threshold=threshold)
    return predictions, warnings, core.drift_report(run_dir, frame, predictions)


st.title("Predict")
summary = widgets.pick_finished_run(state.PREDICT_RUN)
st.caption(
    f"The file needs the columns this run was trained on; `{summary.target}` may be missing."
)
try:
    decision = core.read_decision(summary.path)
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
threshold = None
if decision is not None:
    threshold = st.slider(
        f"Flag rows with P({decision.positive_class}) at or above",
        0.0,
        1.0,
        float(decision.threshold),
        0.005,
        format="%.3f",
        key=f"predict.threshold.{summary.run_id}",
        help="Starts at the run's saved threshold (set it on the Results page).",
    )
upload = st.file_uploader(
    "File to score (CSV or Parquet)", type=["csv", "parquet", "pq"], key="predict.upload"
)
if upload is None:
    st.info("Upload a file to score.")
    st.stop()

try:
    predictions, warnings, drift = score(
        str(summary.path), upload.file_id, upload.name, threshold, upload.getvalue()
    )
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

for warning in warnings:
    st.warning(warning)
flagged = ""
if decision is not None:
    share = (predictions["prediction"].astype(str) == decision.positive_class).mean()
    flagged = f" {share:.1%} flagged {decision.positive_class} at threshold {threshold:.3f}."
st.success(f"{len(predictions):,} predictions from run {summary.run_id}.{flagged}")
st.dataframe(predictions, hide_index=True, height=360, width="stretch")
widgets.download_csv(predictions, f"{summary.run_id}-predictions.csv", "Download predictions")

reason_columns = [c for c in predictions.columns if c.startswith("reason_")]
if decision is not None and reason_columns:
    declined = predictions[predictions["prediction"].astype(str) == decision.positive_class]
    st.subheader("Declined rows and their principal reasons")
    st.caption(
        f"{len(declined):,} rows flagged {decision.positive_class}. Each carries the inputs that "
        "pushed it furthest toward the decline, compared with applicants the model approves "
        f"(the {', '.join(reason_columns)} columns of the download)."
    )
    inputs = core.load_model(summary.path).spec_.feature_columns
    about = declined[reason_columns].map(  # the input each reason names, worked out once
        lambda r: core.reason_column(r, inputs) if isinstance(r, str) else None
    )
    named = {
        column: int((about == column).any(axis=1).sum()) for column in core.likely_protected(inputs)
    }
    named = {column: n for column, n in named.items() if n}
    if named:
        st.warning(
            "Inputs named like a protected attribute are among the reasons: "
            + ", ".join(f"{formatting.literal(c)} ({n:,} rows)" for c, n in named.items())
            + ". A notice of decline usually may not give them as reasons, and the model leans "
            "on them: check the Fairness tab on the Results page, or retrain without them.",
            icon=":material/balance:",
        )
    if not declined.empty:
        first = declined.iloc[0]
        listed = [first[c] for c in reason_columns if isinstance(first[c], str) and first[c]]
        st.markdown(
            f"For example, the first declined row (P({decision.positive_class}) = "
            f"{first[f'prob_{decision.positive_class}']:.3f}):\n"
            + "\n".join(f"{i}. {formatting.literal(text)}" for i, text in enumerate(listed, 1))
        )
        st.dataframe(
            declined[[f"prob_{decision.positive_class}", *reason_columns]],
            height=260,
            width="stretch",
        )

if not drift.empty:
    st.subheader("Stability against the training data")
    rows = core.read_metrics(summary.path).get("rows", {}).get("train", 0)
    st.caption(
        "PSI of each input and of the score, this file against the training rows. With "
        f"{len(predictions):,} rows, about {core.psi_chance_level(rows, len(predictions)):.2f} is "
        "reached by chance alone."
    )
    shifted = drift[drift["level"] != "stable"]
    for row in shifted.itertuples():
        st.warning(
            f"{row.input!r} has shifted since training (PSI {row.psi:.3f}: {row.level}); "
            "predictions on these rows may be less reliable than the test metrics say.",
            icon=":material/warning:",
        )
    charts.plot(
        core.psi_figure(drift, "Stability: this file vs training rows"),
        height=max(300, 26 * len(drift.head(25))),
    )
