"""Compare: two or more finished runs side by side, tested on the same test rows."""

import streamlit as st

import core
from dashboard import charts, formatting, state, tables


@st.cache_data(max_entries=8, show_spinner="Bootstrapping the differences ...")
def comparison(run_dirs: tuple[str, ...], _stamps: tuple[float, ...]):
    return core.compare_runs(list(run_dirs))


st.title("Compare runs")
done = {s.run_id: s for s in state.manager().list_runs() if s.state == "succeeded"}
if len(done) < 2:
    st.info("Comparing needs two finished runs: train another one on the Train page.")
    st.stop()
state.init_widget(state.COMPARE_RUNS, list(done)[:2])
st.session_state[state.COMPARE_RUNS] = [
    r for r in st.session_state[state.COMPARE_RUNS] if r in done
]
chosen = st.multiselect(
    "Runs (the first is the reference)",
    list(done),
    key=state.COMPARE_RUNS,
    persist_state=state.PERSIST,
    format_func=lambda r: formatting.run_label(done[r]),
)
if len(chosen) < 2:
    st.info("Pick at least two runs.")
    st.stop()

paths = tuple(str(done[r].path) for r in chosen)
try:
    stamps = tuple((done[r].path / "metrics.json").stat().st_mtime for r in chosen)
    result = comparison(paths, stamps)
except (core.FinTuneError, OSError) as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

st.subheader("Metrics (test)")
metric_names = {c: formatting.metric_label(c) for c in result.metrics.columns if c != "model"}
st.dataframe(result.metrics.rename(columns=metric_names), hide_index=True, width="stretch")
if result.note:
    st.warning(result.note)
if not result.delong.empty:
    st.subheader("ROC AUC: DeLong test")
    st.dataframe(tables.delong_table(result), hide_index=True, width="stretch")
if not result.differences.empty:
    st.subheader("Differences with 95% intervals (paired bootstrap)")
    st.dataframe(tables.differences_table(result), hide_index=True, width="stretch")

st.subheader("Settings that differ")
if result.config.empty:
    st.caption("The runs share every setting.")
else:
    st.dataframe(result.config, hide_index=True, width="stretch")

first = core.read_metrics(done[chosen[0]].path)
histories = {r: core.read_history(done[r].path) for r in chosen}
metric = core.headline_metric(first.get("task", ""))
left, right = st.columns(2)
with left:
    if first.get("task") == "binary" and first.get("positive_class") is not None:
        tables = {r: core.read_predictions(done[r].path) for r in chosen}
        positive = str(first["positive_class"])
        curves = core.curves_by_model(tables, positive, done[chosen[0]].target)
        charts.plot(core.roc_figure(curves, positive=positive))
    else:
        charts.plot(charts.compare_curves(histories, "train_loss"))
with right:
    charts.plot(charts.compare_curves(histories, metric))
