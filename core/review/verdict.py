"""The verdict line: the run's model against its strongest baseline, in one or two sentences.

A scorecard and a DeLong table answer the question only to a reader who knows where to look.
The verdict says it: which model is better, by how much on the headline metric, whether the
difference is significant on these test rows, and what to try next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..stats.metrics import HIGHER_IS_BETTER, headline_metric, metric_label
from .compare import Comparison

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Verdict:
    """``tone`` is "better" (the run's model wins significantly), "worse" or "unclear"."""

    tone: str
    text: str


def verdict(comparison: Comparison, task: str, *, n_test_rows: int | None = None) -> Verdict | None:
    """The run's model (``comparison.models[0]``) against the best of the other models on the
    headline metric; None when there is nothing to compare with."""
    metric = headline_metric(task)
    table = comparison.metrics
    if len(comparison.models) < 2 or metric not in table.columns:
        return None
    values = dict(zip(table["model"], table[metric], strict=True))
    ours_name = comparison.models[0]
    ours = values.get(ours_name, math.nan)
    higher = HIGHER_IS_BETTER.get(metric, True)
    rivals = {m: v for m, v in values.items() if m != ours_name and not math.isnan(v)}
    if math.isnan(ours) or not rivals:
        return None
    rival = (max if higher else min)(rivals, key=rivals.get)
    theirs = rivals[rival]
    label = metric_label(metric)
    ours_ahead = ours > theirs if higher else ours < theirs
    if ours == theirs:
        lead = f"The fine-tuned model and {rival} tie on {label} ({ours:.3f})"
    else:
        winner, loser = (
            ("The fine-tuned model", rival) if ours_ahead else (rival, "the fine-tuned model")
        )
        lead = (
            f"{winner} is ahead of {loser} by {abs(ours - theirs):.3f} {label} "
            f"({ours:.3f} vs {theirs:.3f})"
        )
    rows = f" on the {n_test_rows:,} test rows" if n_test_rows else " on the test rows"
    p_value, test = _p_value(comparison, rival, metric)
    if p_value is None:
        significance = "; the difference was not tested (the models saw different rows)."
        significant = False
    else:
        significant = p_value < SIGNIFICANCE
        significance = (
            f"; the difference is significant at 5% ({test} p = {p_value:.3f})."
            if significant
            else f"; the difference is not significant ({test} p = {p_value:.2f})."
        )
    tone = ("better" if ours_ahead else "worse") if significant else "unclear"
    return Verdict(tone, lead + rows + significance + " " + _next_step(tone, rival))


def _p_value(comparison: Comparison, rival: str, metric: str) -> tuple[float | None, str]:
    """The rival's p-value against the run's model: DeLong for ROC AUC, else the bootstrap."""
    if metric == "roc_auc" and not comparison.delong.empty:
        rows = comparison.delong[comparison.delong["model"] == rival]
        if len(rows):
            return float(rows["p_value"].iloc[0]), "DeLong"
    differences = comparison.differences
    rows = differences[(differences["model"] == rival) & (differences["metric"] == metric)]
    if len(rows) and not math.isnan(rows["p_value"].iloc[0]):
        return float(rows["p_value"].iloc[0]), "bootstrap"
    return None, ""


def _next_step(tone: str, rival: str) -> str:
    if tone == "better":
        return "Next: choose the decision threshold and check calibration before the model is used."
    if tone == "worse":
        return (
            f"Next: keep the trees in the model (Model page), try another freeze depth (Sweep "
            f"freeze depth), or use {rival}: it is simpler and better here."
        )
    return (
        "Next: these test rows cannot tell the two apart, so prefer the simpler model unless "
        "the text columns or the explanations matter; a larger test share or more rows would "
        "settle it."
    )
