"""The model report's sections on what to be wary of: what moves the model's output, shifted
inputs and leakage, and the known limitations.
"""

from __future__ import annotations

from .. import facts as f
from .. import figures
from ..page import Figures, Html, esc, items, p, table

NOT_COVERED = (
    "Fairness beyond the inputs named like protected attributes: proxies (a postcode, a job "
    "title) are not searched for; compare groups by any column with fintune fairness RUN --by.",
    "Performance after the end of this table (out-of-time monitoring) and under economic "
    "conditions it does not contain.",
    "Data quality upstream of the file: how the table was extracted, joined and labelled.",
    "Robustness to deliberately manipulated inputs, and the behaviour of texts unlike those seen "
    "in training.",
    "Causality: attributions say what moved this model's output, not what drives the outcome.",
    "Approval: this report gathers evidence for a review; it is not a validation sign-off.",
)


def attributions_section(run: f.RunFacts, found: f.Attributions | str, plot: Figures) -> list:
    """Mean |SHAP| of each column on the first test rows, or why there is none."""
    if isinstance(found, str):
        return [p(found, "note")]
    output = f"P({found.output})" if run.task != "regression" else f"the predicted {found.output}"
    figure = figures.importance_figure(
        [c for c, _, _ in found.importance],
        [v for _, v, _ in found.importance],
        output,
        rows=found.rows,
    )
    return [
        p(
            f"SHAP values (permutation algorithm) of the first {found.rows} test rows, one feature "
            f"per input column (a text column counts as one). The explained output is {output}; "
            f"the reference is {found.background}. Mean |SHAP| ranks how much each column moved "
            "the output on these rows; mean SHAP shows the usual direction."
        ),
        plot(figure, height=120 + 30 * len(found.importance)),
        table(["column", "mean |SHAP|", "mean SHAP"], [list(row) for row in found.importance]),
        p(f"Computed in {found.seconds:.1f} s with {found.backbone_passes:,} backbone passes."),
    ]


def stability_section(run: f.RunFacts) -> list:
    """PSI of each input and of the score, test against train, and the leakage warnings."""
    stability = run.metrics.get("stability") or {}
    parts: list = [Html("<h3>Population stability (PSI), test rows against training rows</h3>")]
    if "inputs" not in stability:
        missing = "No stability report was recorded for this run."
        parts.append(p(stability.get("error", missing), "note"))
    else:
        chance = stability.get("chance_level")
        parts.append(
            p(
                "Under 0.1 stable, 0.1–0.25 watch, 0.25 and above a real shift; a PSI "
                "that chance alone reaches one time in twenty at these split sizes counts "
                "as stable"
                + (f" (with no shift at all, about {chance:.2f} on average)." if chance else ".")
            )
        )
        parts.append(
            table(
                ["input", "PSI", "level"],
                [
                    [row.get("input"), row.get("psi"), _level(row.get("level", ""))]
                    for row in stability["inputs"]
                ],
            )
        )
    parts.append(Html("<h3>Leakage checks</h3>"))
    warnings = run.metrics.get("warnings") or []
    if not warnings:
        parts.append(
            p(
                "No leakage warnings from the four checks: a column that alone predicts "
                "the target, an identifier used as a feature, a date recorded after the "
                "prediction time, and rows repeated across the splits."
            )
        )
    else:
        parts.append(items([w.get("message", "") for w in warnings], "warnings"))
    return parts


def _level(level: str) -> Html:
    return Html(f'<span class="level {esc(level)}">{esc(level)}</span>')


def limitations_section(limits: list[str], found: f.Attributions | str) -> list:
    """The limitations found, then what the report does not cover."""
    scope = (
        []
        if isinstance(found, str)
        else [
            f"Attributions beyond the first {found.rows} test rows: the ranking is of those rows "
            "only, against one summary reference row."
        ]
    )
    return [
        items(limits, "limits")
        if limits
        else p(
            "No check found a limitation in this run's own numbers; what follows still applies."
        ),
        Html("<h3>What this report does not cover</h3>"),
        items([*NOT_COVERED, *scope]),
    ]
