"""The model report's fairness section: the decision's outcomes per group of the model inputs
that look like protected attributes, with intervals, and the disparities between groups.
"""

from __future__ import annotations

from ...evaluation.fairness import (
    FOUR_FIFTHS,
    GAP_NAMES,
    Fairness,
    group_fairness,
    likely_protected,
)
from ...stats.intervals import N_BOOTSTRAP
from ...stats.metrics import format_interval, format_number
from .. import facts as f
from ..page import Html, code, esc, items, p, table


def fairness_section(run: f.RunFacts) -> list:
    """Per group of each likely protected input: outcomes at the threshold, approval ratios and
    gaps, each with its interval; or why there is nothing to show."""
    if run.task != "binary":
        return [p(f"Fairness by group compares approve/flag decisions: this run is {run.task}.")]
    if run.decision is None:
        return [p("No decision threshold is saved for this run: nothing to compare.", "warn")]
    columns = likely_protected(run.spec.feature_columns)
    how = Html(
        f"<p>To group by other columns: {code(f'fintune fairness {run.path} --by COLUMN')}.</p>"
    )
    if not columns:
        return [
            p(
                "No model input looks like a protected attribute (sex, age, race, nationality, "
                "marital status, ...), so no groups are compared here."
            ),
            how,
        ]
    positive = run.decision.positive_class
    result = group_fairness(
        run.frame.loc[run.predictions["row"], columns].reset_index(drop=True),
        f.test_labels(run) == positive,
        run.predictions[f"prob_{positive}"].to_numpy(dtype=float),
        run.decision.threshold,
        positive_class=positive,
        reference=run.frame[columns],
    )
    parts: list = [
        p(
            f"The model inputs whose names suggest a protected attribute ({', '.join(columns)}), "
            f"on the {result.rows:,} test rows at the saved threshold "
            f"{run.decision.threshold:.4f}: a row is flagged (predicted {positive}) at or above "
            "it and approved below it. Brackets: bootstrap 95% intervals "
            f"({N_BOOTSTRAP:,} resamples within each group). An approval ratio is a group's "
            f"approval rate over the most-approved group's; under {FOUR_FIFTHS} fails the "
            "four-fifths rule, clearly so only when its whole interval is under it. Gaps are the "
            "largest minus the smallest rate across groups; p is how often shuffled group labels "
            "give a gap as large."
        ),
        how,
    ]
    for column in result.columns:
        parts += _column_part(result, column)
    if result.notes:
        parts.append(items(list(result.notes), "limits"))
    return parts


def _column_part(result: Fairness, column: str) -> list:
    groups = result.groups[result.groups["column"] == column]
    if groups.empty:
        return []
    ratios = result.disparities[result.disparities["column"] == column]
    gaps = result.gaps[result.gaps["column"] == column]

    def cell(row, metric: str) -> str:
        return format_interval(row[metric], [row[f"{metric}_low"], row[f"{metric}_high"]], 3)

    group_rows = [
        [
            row["group"],
            int(row["rows"]),
            int(row["positives"]),
            cell(row, "approval_rate"),
            cell(row, "tpr"),
            cell(row, "fpr"),
            cell(row, "roc_auc"),
            f"{cell(row, 'mean_predicted')} vs {cell(row, 'observed_rate')}",
        ]
        for _, row in groups.iterrows()
    ]
    ratio_rows = [
        [
            row["group"],
            "reference (most approved)"
            if row["group"] == row["reference"]
            else format_interval(
                row["approval_ratio"],
                [row["approval_ratio_low"], row["approval_ratio_high"]],
                3,
            ),
            Html(f'<span class="warn">{esc(row["finding"])}</span>') if row["finding"] else "",
        ]
        for _, row in ratios.iterrows()
    ]
    gap_rows = [
        [
            GAP_NAMES[row["measure"]],
            format_interval(row["value"], [row["low"], row["high"]], 3),
            format_number(row["p_value"], 3),
        ]
        for _, row in gaps.iterrows()
    ]
    return [
        Html(f"<h3>{esc(column)}</h3>"),
        table(
            [
                "group",
                "rows",
                f"{result.positive_class} (positives)",
                "approval rate",
                "true positive rate",
                "false positive rate",
                "ROC AUC",
                "mean predicted vs observed",
            ],
            group_rows,
            classes="metrics",
        ),
        table(["group", "approval ratio", "finding"], ratio_rows, classes="metrics"),
        table(["gap", "value", "p (shuffled groups)"], gap_rows, classes="metrics"),
    ]
