"""The model report's decisions section: the reason codes of the test rows a binary run's decision
declines, which inputs they name most often, and for a few declined rows the smallest changes that
would approve them.

:func:`find_decisions` does the work (reason codes, counterfactual searches) before the page is
written, so its cost shows in the report's progress; :func:`decisions_section` draws the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import FinTuneError
from ...evaluation.fairness import likely_protected
from .. import facts as f
from ..page import Html, code, esc, facts, items, p, share, table

REASON_ROWS = 200  # test rows given reason codes at most: about 1 s on a cells run
N_EXAMPLES = 3  # declined rows whose changes are searched: about 1 s each
MAX_ACTIONABLE = 8  # columns the search may change; pairs of them are tried
MAX_CHANGES = 2
N_RESULTS = 3
ACTIONABLE_ROLES = ("numeric", "categorical")


@dataclass(frozen=True)
class Example:
    """One declined test row: its reasons and what would change its decision."""

    row: object  # its label in the table
    probability: float  # of the positive class, from predictions.csv
    reasons: list[str]
    changes: object  # Counterfactuals, or why the search failed (str)


@dataclass(frozen=True)
class Decisions:
    """What :func:`find_decisions` found on the run's first test rows."""

    rows: int  # test rows given reason codes
    test_rows: int  # test rows in all
    declined: int
    reference: str  # what the declined rows were compared with
    n_reasons: int  # reasons per row at most
    columns: list[tuple[str, int, int]]  # input, times reason 1, times among the top reasons
    actionable: list[str]
    protected: list[str]  # numeric and categorical inputs left out of the search
    examples: list[Example]
    seconds: float


def find_decisions(
    run: f.RunFacts, progress: Callable[[str], None], *, n_rows: int = REASON_ROWS
) -> Decisions | str | None:
    """Reason codes of the run's first ``n_rows`` test rows and counterfactuals of the most
    confidently declined; None where the section has nothing to compute (a run that is not binary
    or has no saved decision), a sentence when ``n_rows`` is 0 or the work fails."""
    if run.task != "binary" or run.decision is None:
        return None
    if n_rows == 0:
        return (
            "Skipped: this report was written with --shap-rows 0, and reason codes are SHAP "
            "values of the declined rows."
        )
    try:
        return _find(run, progress, n_rows)
    except FinTuneError as exc:  # the rest of the report is still worth having
        return f"Reason codes could not be computed: {exc}"


def _find(run: f.RunFacts, progress: Callable[[str], None], n_rows: int) -> Decisions:
    import numpy as np

    from ...explain.counterfactual import counterfactuals
    from ...explain.reasons import DEFAULT_REASONS, reason_codes
    from ...runs import folder as runs

    started = time.perf_counter()
    decision = run.decision
    rows = runs.test_rows(run.path, n_rows)
    # The stored probabilities, so the declined rows are those predictions.csv declines.
    probability = run.predictions[f"prob_{decision.positive_class}"].head(len(rows))
    progress(f"Finding the reason codes of {len(rows)} test rows")
    n_reasons = DEFAULT_REASONS
    codes = reason_codes(
        run.path,
        rows,
        decision=decision,
        n_reasons=n_reasons,
        probabilities=probability.to_numpy(dtype=float),
    )
    declined = np.flatnonzero(codes.frame["declined"].to_numpy())  # explanation's rows, in order
    names = list(codes.explanation.feature_names)
    values = np.asarray(codes.explanation.values, dtype=float)  # (D, M)
    first, top = np.zeros(len(names), dtype=int), np.zeros(len(names), dtype=int)
    for row_values in values:
        # As reason_codes ranks them: the positive values, largest first.
        order = [c for c in np.argsort(-row_values, kind="stable") if row_values[c] > 0]
        if order:
            first[order[0]] += 1
        top[order[:n_reasons]] += 1
    ranked = sorted(range(len(names)), key=lambda c: (-first[c], -top[c], c))
    columns = [(names[c], int(first[c]), int(top[c])) for c in ranked if top[c]]

    changeable = [c for c in range(len(names)) if run.spec.roles.get(names[c]) in ACTIONABLE_ROLES]
    protected = set(likely_protected(names[c] for c in changeable))
    # The inputs named most often among the reasons are the likeliest levers.
    changeable = sorted(
        (c for c in changeable if names[c] not in protected), key=lambda c: (-top[c], c)
    )
    actionable = [names[c] for c in changeable[:MAX_ACTIONABLE]]

    order = np.argsort(-codes.frame["probability"].to_numpy()[declined], kind="stable")
    examples = []
    for n, position in enumerate(declined[order[:N_EXAMPLES]], 1):
        line = codes.frame.iloc[position]
        if not actionable:
            changes: object = "No numeric or categorical input is free to change."
        else:
            progress(f"Searching what would change the decision of declined row {n}")
            try:
                changes = counterfactuals(
                    run.path,
                    rows.iloc[[position]],
                    actionable,
                    max_changes=MAX_CHANGES,
                    n_results=N_RESULTS,
                    decision=decision,
                )
            except FinTuneError as exc:
                changes = f"The search failed: {exc}"
        reasons = [line[f"reason_{k}"] for k in range(1, n_reasons + 1) if line[f"reason_{k}"]]
        examples.append(Example(rows.index[position], float(line["probability"]), reasons, changes))
    return Decisions(
        rows=len(rows),
        test_rows=len(run.predictions),
        declined=len(declined),
        reference=codes.reference,
        n_reasons=n_reasons,
        columns=columns,
        actionable=actionable,
        protected=sorted(protected, key=names.index),
        examples=examples,
        seconds=time.perf_counter() - started,
    )


def decisions_section(run: f.RunFacts, found: Decisions | str | None) -> list:
    """How many test rows are declined, the inputs their reasons name most, and for a few of them
    what would change the decision; or why there is nothing to show."""
    if run.task != "binary":
        return [
            p(
                "Reason codes and what would change the decision are for binary runs (a yes/no "
                f"decision at a threshold): this run is {run.task}."
            )
        ]
    if run.decision is None:
        return [p("No decision threshold is saved for this run: nothing is declined.", "warn")]
    if isinstance(found, str):
        return [p(found, "note")]
    assert found is not None  # binary with a decision: find_decisions computed or said why not
    positive, threshold = run.decision.positive_class, run.decision.threshold
    output = f"P({positive})"
    which = (
        f"all {found.rows:,} test rows"
        if found.rows == found.test_rows
        else f"the first {found.rows:,} of {found.test_rows:,} test rows"
    )
    parts: list = [
        p(
            f"A row is declined (flagged as {positive}) when {output} is at or above the saved "
            f"threshold {threshold:.4f}, as in the predictions file. Each declined row's inputs "
            "are explained with SHAP against training rows the model approves, so a value says how "
            "much that input moved the row from approved toward declined; its reasons are the "
            f"inputs with positive values, strongest first, at most {found.n_reasons}."
        ),
        facts(
            [
                ("Rows given reason codes", which),
                (
                    f"Declined at threshold {threshold:.4f}",
                    f"{found.declined:,} ({share(found.declined, found.rows)})",
                ),
                ("Reference (approved rows)", found.reference),
                ("Computed in", f"{found.seconds:.1f} s, the searches below included"),
            ]
        ),
    ]
    if not found.declined:
        parts.append(p("No test row is declined: there are no reasons to give.", "note"))
        return parts
    parts += [
        Html("<h3>The inputs the reasons name</h3>"),
        table(
            [
                "input",
                "principal reason (reason 1)",
                "share of declined rows",
                f"among the top {found.n_reasons} reasons",
                "share of declined rows",
            ],
            [
                [column, first, share(first, found.declined), top, share(top, found.declined)]
                for column, first, top in found.columns
            ],
            classes="metrics",
        ),
        *_protected_reasons(found),
        Html("<h3>What would change the decision</h3>"),
        _search_text(run, found, output),
    ]
    for example in found.examples:
        parts += _example_part(example, output)
    return parts


def _protected_reasons(found: Decisions) -> list:
    named = {column: top for column, _, top in found.columns}
    protected = likely_protected(named)
    if not protected:
        return []
    counts = ", ".join(f"{c} ({named[c]} of {found.declined:,} declined rows)" for c in protected)
    return [
        p(
            f"Inputs whose names suggest a protected attribute are among the reasons: {counts}. "
            "A lender's notice of decline usually may not give them as reasons, and the model "
            "leans on them: see Fairness by group above.",
            "warn",
        )
    ]


def _search_text(run: f.RunFacts, found: Decisions, output: str) -> Html:
    left_out = (
        f" ({', '.join(found.protected)} left out: a protected attribute is never a suggested "
        "change)"
        if found.protected
        else ""
    )
    used = ", ".join(found.actionable) if found.actionable else "none is left"
    text = (
        f"The {len(found.examples)} declined rows with the highest {output}, with the smallest "
        f"changes of at most {MAX_CHANGES} inputs at once that approve them (the "
        f"{N_RESULTS} smallest, each scored again by the model; new values are values seen in "
        "training). This report chose the inputs the search may change: the numeric and "
        f"categorical inputs not named like a protected attribute{left_out}, those the reasons "
        f"name most first, at most {MAX_ACTIONABLE}: {used}. Pick your own on the dashboard's "
        "Explain page or with"
    )
    command = f"fintune whatif {run.path} --data FILE --row N --actionable COLUMN"
    return Html(f"<p>{esc(text)} {code(command)} (--actionable repeated).</p>")


def _example_part(example: Example, output: str) -> list:
    parts: list = [
        Html(f"<h3>Row {esc(example.row)}: {esc(output)} = {example.probability:.3f}</h3>"),
    ]
    if example.reasons:
        parts += [p("Reasons, strongest first:"), items(example.reasons)]
    else:
        parts.append(p("No input pushes this row toward decline."))
    answer = example.changes
    if isinstance(answer, str):
        return [*parts, p(answer, "note")]
    if not answer.results:
        return [*parts, p(answer.message, "note")]
    return [
        *parts,
        table(
            ["change", f"{output} after", "decision after"],
            [[r.phrase, f"{r.probability:.3f}", r.decision] for r in answer.results],
            classes="metrics",
        ),
    ]
