"""The Explain page's answers for one row: its decision and the reasons behind a decline, a
what-if editor that rescores the edited row at once, and the smallest changes that would flip the
decision. Drawing only: the scoring, wording and search live in ``core``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import core
from dashboard import charts, formatting, state

# The search's default number of columns changed at once (1-3; each more multiplies the work).
DEFAULT_MAX_CHANGES = 2


@st.cache_data(max_entries=64, show_spinner="Finding the reasons ...")
def _reasons(run_dir: str, _stamp: float, row_key: str, _row: pd.DataFrame):
    # _stamp: decision.json's time, so a new threshold gives new reasons.
    return core.reason_codes(run_dir, _row)


@st.cache_data(max_entries=64, show_spinner=False)
def _what_if(run_dir: str, _stamp: float, row_key: str, _row: pd.DataFrame):
    scored = core.score_rows(run_dir, _row)
    explanation = core.explain_rows(run_dir, _row)
    return scored, explanation


@st.cache_data(max_entries=32, show_spinner="Searching the training data's values ...")
def _counterfactuals(
    run_dir: str, _stamp: float, row_key: str, actionable: tuple, max_changes: int, _row
):
    return core.counterfactuals(run_dir, _row, list(actionable), max_changes=max_changes)


@st.cache_data(max_entries=8, show_spinner=False)
def _choices(run_dir: str, _stamp: float) -> dict[str, list]:
    return core.value_choices(run_dir)


def _stamp(run_dir) -> float:
    decision = run_dir / "decision.json"
    return decision.stat().st_mtime if decision.is_file() else 0.0


def _key(row: pd.DataFrame) -> str:
    """The row's values as text: what the caches above are keyed on."""
    return row.to_json(orient="split", date_format="iso", default_handler=str)


def reasons(summary, spec, row: pd.DataFrame) -> None:
    """The row's decision at the run's threshold and, when declined, its principal reasons."""
    if spec.task != "binary":
        return
    try:
        found = _reasons(str(summary.path), _stamp(summary.path), _key(row), row)
    except core.FinTuneError as exc:
        st.info(f"No reason codes for this row: {exc}")
        return
    line = found.frame.iloc[0]
    decision = found.decision
    positive = formatting.literal(decision.positive_class)
    said = (
        f"P({positive}) = {line['probability']:.3f} against the threshold {decision.threshold:.3f}"
    )
    if not line["declined"]:
        st.success(
            f"**Approved**: {said}. Approved rows get no adverse-action reasons.",
            icon=":material/check_circle:",
        )
        return
    listed = [line[c] for c in found.frame.columns if c.startswith("reason_") and line[c]]
    protected = set(core.likely_protected(spec.feature_columns))
    flagged = [r for r in listed if core.reason_column(r, spec.feature_columns) in protected]
    st.error(
        f"**Declined** ({positive}): {said}. Principal reasons:\n"
        + "\n".join(
            f"{i}. {formatting.literal(text)}{' (protected attribute)' if text in flagged else ''}"
            for i, text in enumerate(listed, 1)
        ),
        icon=":material/gavel:",
    )
    if flagged:
        st.warning(
            "An input named like a protected attribute is among this row's reasons. A notice of "
            "decline usually may not give it as a reason: check the Fairness tab on the Results "
            "page, or retrain without it.",
            icon=":material/balance:",
        )
    st.caption(
        f"Reasons are the inputs that moved this row furthest toward {positive}, "
        f"compared with {found.reference}; as in adverse-action notices, each names the value "
        "and where it stands among the training rows."
    )


def _edited(original: pd.DataFrame, edited: pd.DataFrame) -> dict:
    """{column: new value} for the cells the user changed."""
    changes = {}
    for column in original.columns:
        old, new = original[column].iloc[0], edited[column].iloc[0]
        if (pd.isna(old) and pd.isna(new)) or old == new:
            continue
        changes[column] = new
    return changes


def what_if(summary, spec, row: pd.DataFrame, output: str) -> None:
    """Edit the row's cells and see the new answer, decision and attributions at once."""
    run_dir = str(summary.path)
    stamp = _stamp(summary.path)
    original = row[spec.feature_columns]
    try:
        choices = _choices(run_dir, stamp)
    except core.FinTuneError:  # no training rows to offer (an old run): cells are typed instead
        choices = {}
    config = {
        column: st.column_config.SelectboxColumn(column, options=choices[column])
        for column in spec.feature_columns
        if column in choices
    }
    st.caption(
        "Change any cell (a category from the training data's values, a number, a text); the "
        "row is scored again and explained against the same reference."
    )
    edited = st.data_editor(
        original,
        column_config=config,
        hide_index=True,
        num_rows="fixed",
        key=f"whatif.editor.{summary.run_id}.{row.index[0]}",
        width="stretch",
    )
    changes = _edited(original, edited)
    if not changes:
        st.caption("No cell changed yet.")
        return
    try:
        changed = core.edit_row(run_dir, original, changes)
        before, _ = _what_if(run_dir, stamp, _key(original), original)
        after, explanation = _what_if(run_dir, stamp, _key(changed), changed)
    except core.FinTuneError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    was, now = before.iloc[0], after.iloc[0]
    value = "probability" if "probability" in after.columns else "prediction"
    delta = float(now[value]) - float(was[value])
    left, right = st.columns(2)
    left.metric(
        f"{output} after the change",
        f"{float(now[value]):.3f}",
        f"{delta:+.3f}",
        delta_color="inverse" if spec.task == "binary" else "normal",
    )
    flipped = str(now["decision"]) != str(was["decision"])
    right.metric(
        "Decision",
        str(now["decision"]),
        f"was {was['decision']}" if flipped else "unchanged",
        delta_color="off",
        delta_arrow="off",
    )
    st.caption(
        "Changed: "
        + "; ".join(
            f"{formatting.literal(c)} → {formatting.literal(v)}" for c, v in changes.items()
        )
    )
    charts.plot(
        charts.waterfall(explanation, 0, output),
        height=140 + 28 * min(13, len(explanation.feature_names)),
    )


def counterfactuals(summary, spec, row: pd.DataFrame) -> None:
    """The smallest changes to the columns the user marks as actionable that flip the decision."""
    if spec.task != "binary":
        return
    options = [c for c in spec.feature_columns if spec.roles[c] in ("numeric", "categorical")]
    if not options:
        st.caption("No number or category columns to change.")
        return
    key = f"whatif.actionable.{summary.run_id}"
    state.init_widget(key, [])
    left, right = st.columns([3, 1])
    actionable = left.multiselect(
        "Columns the applicant could change",
        options,
        key=key,
        help="Only these are changed; each new value is one the training data holds (a number "
        "from its quantiles, a category it has).",
    )
    max_changes = right.segmented_control(
        "Changed at once (at most)",
        [1, 2, 3],
        default=DEFAULT_MAX_CHANGES,
        key=f"whatif.max_changes.{summary.run_id}",
    )
    if not actionable:
        st.caption("Mark the columns that could change (amount, duration, savings ...).")
        return
    if not st.button("Find the smallest changes", icon=":material/travel_explore:"):
        return
    try:
        found = _counterfactuals(
            str(summary.path),
            _stamp(summary.path),
            _key(row),
            tuple(actionable),
            int(max_changes or DEFAULT_MAX_CHANGES),
            row[spec.feature_columns],
        )
    except core.FinTuneError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    st.caption(
        f"This row: {formatting.literal(found.decision)} at "
        f"P({formatting.literal(found.positive_class)}) = {found.probability:.3f} "
        f"(threshold {found.threshold:.3f}). Scored {found.n_scored:,} changed rows in "
        f"{found.seconds:.1f} s; each change below was scored again and gives "
        f"{formatting.literal(found.target_decision)}."
    )
    if not found.results:
        st.warning(found.message, icon=":material/search_off:")
        return
    table = found.frame()
    st.dataframe(
        table.drop(columns=["distance"]),
        hide_index=True,
        width="stretch",
        column_config={
            "changes": st.column_config.TextColumn("Changes", width="large"),
            "n_changes": st.column_config.NumberColumn("Columns changed"),
            "probability": st.column_config.NumberColumn(
                f"P({found.positive_class}) after", format="%.3f"
            ),
            "decision": st.column_config.TextColumn("Decision after"),
        },
    )
    if np.isfinite(table["distance"]).all():
        st.caption(
            "Smallest first: fewer columns, then the smaller move (a number's move is measured "
            "in shares of the training rows it passes; a category change counts as one)."
        )
