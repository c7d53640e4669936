"""Results: metrics, diagnostic charts, training curves and test predictions of finished runs."""

import streamlit as st

import core
from dashboard import components as ui
from dashboard import state

st.title("Results")
runs_dir = state.runs_dir()
done = {s.run_id: s for s in state.manager().list_runs() if s.state == "succeeded"}
if not done:
    st.info("No finished runs yet: start one on the Train page.")
    st.stop()

current = st.session_state.get(state.CURRENT_RUN)
state.init_widget(state.RESULT_RUNS, [current if current in done else next(iter(done))])
st.session_state[state.RESULT_RUNS] = [r for r in st.session_state[state.RESULT_RUNS] if r in done]
chosen = st.multiselect("Runs (pick several to compare)", list(done), key=state.RESULT_RUNS, persist_state=state.PERSIST,
                        format_func=lambda r: ui.run_label(done[r]))
if not chosen:
    st.info("Pick at least one run.")
    st.stop()

try:
    metrics = {r: core.read_metrics(core.run_path(runs_dir, r)) for r in chosen}
    histories = {r: core.read_history(core.run_path(runs_dir, r)) for r in chosen}
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

st.subheader("Metrics")
st.dataframe(ui.metrics_table(metrics), hide_index=True, width="stretch")

st.subheader("Training curves")
left, right = st.columns(2)
first = metrics[chosen[0]]
metric = ui.headline_metric(first.get("task", ""))
with left:
    if len(chosen) == 1:
        ui.plot(ui.loss_curve([e for e in histories[chosen[0]] if e.get("type") == "step"]))
    else:
        ui.plot(ui.compare_curves(histories, "train_loss"))
with right:
    if len(chosen) == 1:
        ui.plot(ui.validation_curve([e for e in histories[chosen[0]] if e.get("type") == "epoch"], metric))
    else:
        ui.plot(ui.compare_curves(histories, metric))

run_id = chosen[0] if len(chosen) == 1 else st.selectbox("Details for", chosen, format_func=lambda r: ui.run_label(done[r]))
summary, result = done[run_id], metrics[run_id]
try:
    predictions = core.read_predictions(summary.path)
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

st.subheader(f"Test set: {run_id}")
actual = predictions[summary.target]
if result.get("task") == "regression":
    left, right = st.columns(2)
    with left:
        ui.plot(ui.predicted_vs_actual(actual, predictions["prediction"]))
    with right:
        ui.plot(ui.residuals(actual, predictions["prediction"]))
else:
    classes = [str(c) for c in result.get("classes", [])]
    labels = actual.astype(str)
    positives = classes[1:] if len(classes) == 2 else classes  # binary: the class roc_auc scores
    curves = {c: core.roc_pr_curves(labels == c, predictions[f"prob_{c}"]) for c in positives}
    c1, c2, c3 = st.columns(3)
    with c1:
        ui.plot(ui.confusion(core.confusion_table(labels, predictions["prediction"].astype(str), classes)))
    with c2:
        ui.plot(ui.roc({c: v["roc"] for c, v in curves.items()}))
    with c3:
        ui.plot(ui.precision_recall({c: v["pr"] for c, v in curves.items()}))

st.dataframe(predictions, hide_index=True, height=300, width="stretch")
ui.download_csv(predictions, f"{run_id}-test-predictions.csv", "Download test predictions")
