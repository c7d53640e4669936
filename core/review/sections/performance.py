"""The model report's sections on how well the model does: test metrics beside the baselines
(with the decision threshold or the confusion matrix), and calibration.
"""

from __future__ import annotations

import math
import numbers

from ...stats.metrics import format_interval, format_number, metric_label
from .. import facts as f
from .. import figures
from ..page import Figures, Html, bold, p, share, table
from ..page import facts as pairs_table


def metrics_section(run: f.RunFacts) -> list:
    """Test metrics with intervals beside the baselines; the threshold or the confusion matrix."""
    from ...stats.intervals import N_BOOTSTRAP
    from ...stats.metrics import HEADLINE_METRICS, HIGHER_IS_BETTER

    models = f.model_scores(run.metrics)
    test = run.metrics.get("test", {})
    headline = HEADLINE_METRICS.get(run.task, [])
    rows = []
    for metric in [m for m in headline if m in test] + [m for m in test if m not in headline]:
        higher = HIGHER_IS_BETTER.get(metric, True)
        finite = [
            v
            for values, _ in models.values()
            if isinstance(v := values.get(metric), numbers.Real) and math.isfinite(v)
        ]
        best = (max if higher else min)(finite) if len(finite) > 1 else None
        row = [f"{metric_label(metric)} {'↑' if higher else '↓'}"]
        for values, intervals in models.values():
            text = format_interval(values.get(metric), intervals.get(metric))
            row.append(bold(text) if best is not None and values.get(metric) == best else text)
        rows.append(row)
    rows_test = run.metrics.get("rows", {}).get("test", len(run.predictions))
    parts: list = [
        p(
            f"On the {rows_test:,} test rows. Brackets: bootstrap 95% intervals ({N_BOOTSTRAP:,} "
            "resamples"
            + (", stratified by class" if run.task != "regression" else "")
            + "). Bold: the best value of a row. Baselines are fitted on the same training rows "
            "and judged on the same test rows."
        ),
        table(["metric", *models], rows, classes="metrics"),
    ]
    if run.task == "binary":
        parts.append(
            p(
                "Accuracy and F1 here label each row with its more probable class; at the "
                "decision threshold they are below.",
                "note",
            )
        )
    baselines = run.metrics.get("baselines")
    if isinstance(baselines, dict) and isinstance(baselines.get("error"), str):
        parts.append(p(f"The baselines could not be fitted: {baselines['error']}", "warn"))
    if run.task == "binary":
        parts += _threshold_part(run)
    elif run.task == "multiclass":
        parts += _confusion_part(run)
    return parts


def _threshold_part(run: f.RunFacts) -> list:
    decision, positive = run.decision, run.spec.positive_class
    parts: list = [Html("<h3>Decision threshold</h3>")]
    if decision is None:
        return parts + [
            p("No decision threshold is saved for this run (decision.json is missing).", "warn")
        ]
    negative = next(c for c in run.spec.classes if c != positive)
    outcome = f.threshold_outcome(run)
    method = {
        "cost": "least expected cost on validation rows (false positive "
        f"{decision.cost_fp:g}, false negative {decision.cost_fn:g})",
        "approval_rate": f"approve {format_number(decision.approval_rate, 2)} of validation rows",
        "manual": "set by hand",
    }[decision.method]
    approval = outcome["approval_rate"]
    parts.append(
        pairs_table(
            [
                ("Threshold on P(" + positive + ")", format_number(decision.threshold)),
                ("Chosen by", method),
                (
                    "Precision / recall (test)",
                    f"{format_number(outcome['precision'], 3)} / "
                    f"{format_number(outcome['recall'], 3)}",
                ),
                ("Approval rate (test)", share(approval, 1) if math.isfinite(approval) else "–"),
                ("Expected cost per row (test)", format_number(outcome["cost_per_row"])),
            ]
        )
    )
    parts.append(
        p(
            "Confusion matrix of the test rows at this threshold (rows flagged when "
            f"P({positive}) ≥ {decision.threshold:.4f}):"
        )
    )
    parts.append(
        table(
            ["actual \\ predicted", f"{positive} (flagged)", f"{negative} (approved)"],
            [
                [f"{positive}", f"{outcome['tp']:,} (TP)", f"{outcome['fn']:,} (FN)"],
                [f"{negative}", f"{outcome['fp']:,} (FP)", f"{outcome['tn']:,} (TN)"],
            ],
            classes="confusion",
        )
    )
    return parts


def _confusion_part(run: f.RunFacts) -> list:
    from ...stats.metrics import confusion_table

    classes = list(run.spec.classes)
    predicted = [classes[i] for i in f.probabilities(run).argmax(axis=1)]
    counts = confusion_table(f.test_labels(run), predicted, classes)
    return [
        Html("<h3>Confusion matrix (test, most probable class)</h3>"),
        table(
            ["actual \\ predicted", *classes],
            [[c, *counts.loc[c].tolist()] for c in classes],
            classes="confusion",
        ),
    ]


def calibration_section(run: f.RunFacts, plot: Figures) -> list:
    """Reliability of the probabilities; for a regression, predictions against actual values."""
    import numpy as np

    intervals, test = run.metrics.get("test_intervals", {}), run.metrics.get("test", {})
    if run.task == "regression":
        actual = run.predictions[run.target].to_numpy(dtype=float)
        predicted = run.predictions["prediction"].to_numpy(dtype=float)
        error = predicted - actual
        return [
            p(
                "Probabilities do not apply to a regression; instead, how predictions sit against "
                "the actual values."
            ),
            pairs_table(
                [
                    ("Mean error (bias, predicted − actual)", float(error.mean())),
                    ("Median absolute error", float(np.median(np.abs(error)))),
                    ("90th percentile of absolute error", float(np.quantile(np.abs(error), 0.9))),
                ]
            ),
            plot(figures.fit_figure(actual, predicted, run.target), height=420),
        ]
    binary = run.task == "binary"
    bins = f.reliability_bins(run)
    ece, brier = f.recomputed_calibration(run)
    positive = run.spec.positive_class
    what = f"P({positive})" if binary else "the probability of the most probable class"
    figure = figures.reliability_figure(
        bins,
        predicted=f"predicted P({positive})" if binary else "top-class probability",
        observed="observed rate" if binary else "share correct",
    )
    return [
        p(
            f"Test rows binned by {what} in tenths; each point compares the mean predicted "
            "probability with how often it came true (marker size: rows in the bin). Points on the "
            "diagonal mean a predicted 30% happens 30% of the time."
        ),
        pairs_table(
            [
                (
                    "Expected calibration error (ECE)",
                    format_interval(test.get("ece"), intervals.get("ece")),
                ),
                ("Brier score", format_interval(test.get("brier"), intervals.get("brier"))),
                (
                    "ECE / Brier recomputed from predictions.csv",
                    f"{format_number(ece)} / {format_number(brier)}",
                ),
            ]
        ),
        plot(figure, height=420),
        table(
            ["bin", "rows", "mean predicted", "observed"],
            [
                [
                    f"{b['bin_low']:.1f}–{b['bin_high']:.1f}",
                    int(b["rows"]),
                    b["mean_predicted"],
                    b["observed_rate"],
                ]
                for b in bins
            ],
        ),
    ]
