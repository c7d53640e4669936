"""Results: one finished run in depth: scorecard beside the baselines, curves, calibration,
gain and lift, the decision threshold, fairness by group, stability, training curves and test
predictions."""

import pandas as pd
import streamlit as st

import core
from dashboard import charts, formatting, state, tables, widgets


@st.cache_data(max_entries=16, show_spinner="Testing the differences ...")
def against_baselines(run_dir: str, _stamp: float):
    return core.compare_with_baselines(run_dir)


RETRAINED = "results.fairness.retrained"  # what the last "Retrain without" click did


@st.cache_data(max_entries=16, show_spinner=False)
def run_columns(run_dir: str, _stamp: float) -> tuple[list[str], list[str]]:
    """(columns a group can come from, the model's inputs) of a run."""
    inputs = core.model_inputs(run_dir)
    target = core.load_config(run_dir).data.target
    return [str(c) for c in core.test_rows(run_dir, 1).columns if c != target], inputs


@st.cache_data(max_entries=16, show_spinner="Comparing groups ...")
def fairness(run_dir: str, columns: tuple[str, ...], rows: str, _stamp: float):
    return core.run_fairness(run_dir, list(columns), rows=rows)


def retrain_without(summary, column: str) -> None:
    """Button callback: queue the run again without ``column``, and point Compare at both."""
    try:
        run_id = core.retrain_without(state.manager(), summary.path, [column])
    except core.FinTuneError as exc:
        st.session_state[RETRAINED] = ("error", str(exc))
        return
    st.session_state[state.CURRENT_RUN] = run_id
    st.session_state[state.COMPARE_RUNS] = [summary.run_id, run_id]
    st.session_state[RETRAINED] = ("queued", f"{run_id} (without {column})")


st.title("Results")
summary = widgets.pick_finished_run(state.RESULT_RUN)
try:
    metrics = core.read_metrics(summary.path)
    predictions = core.read_predictions(summary.path)
    baselines = core.read_baseline_predictions(summary.path)
    history = core.read_history(summary.path)
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

task, target = metrics.get("task", ""), summary.target
positive = metrics.get("positive_class")
rows = metrics.get("rows", {})
st.caption(
    f"Split: {metrics.get('split', 'not recorded')} · train {rows.get('train', '?')}, "
    f"validation {rows.get('val', '?')}, test {rows.get('test', '?')} rows"
    + (f" · positive class **{positive}**" if positive else "")
    + " · intervals are bootstrap 95%"
)
for warning in metrics.get("warnings", []):
    st.warning(warning["message"], icon=":material/warning:")

report_file = summary.path / core.REPORT_FILE
if st.button(
    "Model report",
    icon=":material/description:",
    key=f"results.report.{summary.run_id}",
    help="One self-contained HTML file for model-risk review: data fingerprint, split, "
    "model, reproducibility, metrics with intervals, calibration, SHAP, stability, "
    "limitations.",
):
    with st.spinner(f"Writing the model report (SHAP on {core.DEFAULT_SHAP_ROWS} test rows) ..."):
        try:
            core.write_model_report(summary.path)
        except core.FinTuneError as exc:
            st.error(str(exc), icon=":material/error:")
if report_file.is_file():
    written = pd.Timestamp(report_file.stat().st_mtime, unit="s")
    st.download_button(
        "Download the model report (HTML)",
        data=report_file.read_bytes,
        mime="text/html",
        file_name=f"{summary.run_id}-model-report.html",
        on_click="ignore",
        icon=":material/download:",
        key=f"results.report.download.{summary.run_id}",
        help=f"Written {written:%Y-%m-%d %H:%M} UTC; press Model report to write it "
        "again (after changing the threshold, say).",
    )

comparison = (
    against_baselines(str(summary.path), (summary.path / "metrics.json").stat().st_mtime)
    if baselines
    else None
)
said = None if comparison is None else core.verdict(comparison, task, n_test_rows=len(predictions))
if said is not None:  # the answer first; the tables below are its evidence
    show = {"better": st.success, "worse": st.warning}.get(said.tone, st.info)
    show(said.text, icon=":material/gavel:")
st.subheader("Scorecard: fine-tuned vs baselines (test)")
if "test_intervals" not in metrics:
    st.info(
        "This run was trained before baselines and intervals were recorded: retrain it to see them."
    )
st.dataframe(tables.scorecard(metrics), hide_index=True, width="stretch")
if task == "binary":
    st.caption(
        "Accuracy and F1 here label each row with its more probable class; at the chosen "
        "threshold they are on the Decision threshold tab. The majority class gives every row "
        "the same probability (the training share), so its calibration error is near 0 by "
        "construction: it ranks no one."
    )
if isinstance(metrics.get("baselines"), dict) and "error" in metrics["baselines"]:
    st.warning(f"The baselines could not be fitted: {metrics['baselines']['error']}")
if baselines:
    if not comparison.delong.empty:
        st.caption(
            "DeLong test of each baseline's ROC AUC against the fine-tuned model (same test rows):"
        )
        st.dataframe(tables.delong_table(comparison), hide_index=True, width="stretch")
    elif not comparison.differences.empty:
        st.dataframe(tables.differences_table(comparison), hide_index=True, width="stretch")

binary = task == "binary" and positive is not None
names = (
    ["Curves", "Calibration", "Gain & lift", "Decision threshold", "Fairness"]
    if binary
    else ["Fit"]
    if task == "regression"
    else ["Curves"]
)
names += ["Stability", "Training", "Predictions"]
tabs = dict(zip(names, st.tabs(names), strict=True))

if binary:
    curves = core.curves_by_model({"Fine-tuned": predictions, **baselines}, positive, target)
    with tabs["Curves"]:
        c1, c2, c3 = st.columns(3)
        with c1:
            charts.plot(core.roc_figure(curves, positive=positive))
        with c2:
            charts.plot(core.pr_figure(curves))
        with c3:
            charts.plot(core.score_figure(predictions, positive, target, metrics["test"].get("ks")))
    diagnostics = metrics.get("diagnostics", {})
    with tabs["Calibration"]:
        c1, c2 = st.columns([3, 2])
        with c1:
            charts.plot(
                core.reliability_figure(
                    diagnostics.get("reliability", []),
                    predicted=f"predicted P({positive})",
                    observed=f"observed share {positive}",
                ),
                height=380,
            )
        with c2:
            st.metric(
                "Expected calibration error",
                formatting.with_interval(
                    metrics["test"].get("ece"), metrics.get("test_intervals", {}).get("ece")
                ),
            )
            st.metric(
                "Brier score",
                formatting.with_interval(
                    metrics["test"].get("brier"), metrics.get("test_intervals", {}).get("brier")
                ),
            )
            st.caption(
                "Points on the diagonal mean a predicted 30% really happens 30% of the "
                "time. Class weights push probabilities towards the rare class: read them "
                "as scores, or check here before using them as probabilities."
            )
    with tabs["Gain & lift"]:
        if diagnostics.get("gain_lift"):
            c1, c2 = st.columns(2)
            with c1:
                charts.plot(core.gain_figure(diagnostics["gain_lift"]))
            with c2:
                charts.plot(core.lift_figure(diagnostics["gain_lift"]))
            st.dataframe(
                tables.gain_lift_table(diagnostics["gain_lift"]),
                hide_index=True,
                width="stretch",
                column_config=tables.GAIN_LIFT_COLUMNS,
            )
    with tabs["Decision threshold"]:
        widgets.decision_panel(summary, metrics, predictions)
    with tabs["Fairness"]:
        stamp = (summary.path / "metrics.json").stat().st_mtime
        choices, inputs = run_columns(str(summary.path), stamp)
        left, right = st.columns([3, 1])
        by = left.multiselect(
            "Group by",
            choices,
            default=core.likely_protected(inputs),
            key=f"results.fairness.by.{summary.run_id}",
            help="Numbers are cut in 4 bands of about equal size; groups under 20 rows are "
            "pooled as 'other'. The default: the model inputs that look like protected "
            "attributes.",
        )
        rows_used = right.radio(
            "Rows",
            ["test", "held_out"],
            key=f"results.fairness.rows.{summary.run_id}",
            format_func={"test": "Test", "held_out": "Test + validation"}.get,
        )
        if not by:
            st.info("Choose columns to compare the decision's outcomes across their groups.")
        else:
            try:
                found = fairness(str(summary.path), tuple(by), rows_used, stamp)
            except core.FinTuneError as exc:
                st.error(str(exc), icon=":material/error:")
                found = None
            if found is not None:
                st.caption(
                    f"{found.rows:,} rows at threshold {found.threshold:.3f}: approved = not "
                    f"flagged as {found.positive_class}. Brackets: bootstrap 95% intervals "
                    "within each group. A ratio under 0.8 fails the four-fifths rule; "
                    "“clearly” only when its whole interval is under 0.8."
                )
                for note in found.notes:
                    st.caption(f":material/info: {note}")
                for column in found.columns:
                    if column not in set(found.groups["column"]):
                        continue
                    st.subheader(column)
                    c1, c2 = st.columns([2, 3])
                    with c1:
                        charts.plot(charts.approval_by_group(found.groups, column))
                    with c2:
                        st.dataframe(tables.fairness_ratio_table(found, column), hide_index=True)
                    st.dataframe(
                        tables.fairness_groups_table(found, column),
                        hide_index=True,
                        width="stretch",
                    )
                if not found.gaps.empty:
                    st.caption(
                        "Gaps: largest minus smallest rate across groups. p: how often shuffled "
                        "group labels give a gap as large (small p: not noise)."
                    )
                    st.dataframe(
                        tables.fairness_gaps_table(found), hide_index=True, width="stretch"
                    )
        for column in [c for c in by if c in inputs]:
            st.button(
                f"Retrain without {column}",
                icon=":material/replay:",
                key=f"results.fairness.retrain.{summary.run_id}.{column}",
                on_click=retrain_without,
                args=(summary, column),
                help=f"Queue this run again with the same settings and {column} left out of the "
                "model (role ignore), then compare the two on the Compare page.",
            )
        said = st.session_state.get(RETRAINED)
        if said and said[0] == "error":
            st.error(said[1], icon=":material/error:")
        elif said:
            st.success(
                f"Queued run {said[1]}: follow it on the Train page, then compare it with this "
                "run on the Compare page once it has finished.",
                icon=":material/compare_arrows:",
            )
            st.page_link("views/compare.py", label="Compare runs", icon=":material/compare_arrows:")
elif task == "regression":
    with tabs["Fit"]:
        left, right = st.columns(2)
        with left:
            charts.plot(core.fit_figure(predictions[target], predictions["prediction"], target))
        with right:
            charts.plot(core.residual_figure(predictions[target], predictions["prediction"]))
else:
    with tabs["Curves"]:
        classes = [str(c) for c in metrics.get("classes", [])]
        curves = core.curves_by_class(predictions, classes, target)
        confusion = core.confusion_table(
            predictions[target].astype(str), predictions["prediction"].astype(str), classes
        )
        c1, c2, c3 = st.columns(3)
        with c1:
            charts.plot(core.confusion_figure(confusion))
        with c2:
            charts.plot(core.roc_figure(curves))
        with c3:
            charts.plot(core.pr_figure(curves))

with tabs["Stability"]:
    stability = metrics.get("stability") or {}
    if "inputs" not in stability:
        st.info(stability.get("error", "No stability report for this run."))
    else:
        report = pd.DataFrame(stability["inputs"])
        chance = stability.get("chance_level")
        st.caption(
            "Population stability index of each input and of the model's score, test rows "
            "against training rows: under 0.1 stable, 0.1-0.25 watch, 0.25 and above a real "
            "shift."
            + (
                f" With these split sizes about {chance:.2f} is reached by chance alone."
                if chance
                else ""
            )
        )
        charts.plot(
            core.psi_figure(report, "Stability: test vs train"),
            height=max(300, 26 * len(report.head(25))),
        )

with tabs["Training"]:
    left, right = st.columns(2)
    with left:
        charts.plot(charts.loss_curve([e for e in history if e.get("type") == "step"]))
    with right:
        charts.plot(
            charts.validation_curve(
                [e for e in history if e.get("type") == "epoch"], core.headline_metric(task)
            )
        )

with tabs["Predictions"]:
    st.dataframe(predictions, hide_index=True, height=320, width="stretch")
    widgets.download_csv(
        predictions, f"{summary.run_id}-test-predictions.csv", "Download test predictions"
    )
