"""Fairness of a finished binary run, read from its folder; and retraining it without a column.

:func:`run_fairness` reads the run's decision (decision.json), its scored test rows (and, with
``rows="held_out"``, its validation rows too) and the group columns from data.parquet, and hands
them to :func:`core.evaluation.fairness.group_fairness`. Nothing is loaded but files: no model.
:func:`retrain_without` queues the same run again with some columns' role set to ignore, so the
two runs can be compared on the same test rows.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..data.schema import describe_table, target_labels
from ..errors import ConfigError, DataError, RunError
from ..evaluation.fairness import (
    DEFAULT_BANDS,
    MIN_GROUP_ROWS,
    Fairness,
    group_fairness,
    likely_protected,
)
from ..stats.intervals import N_BOOTSTRAP
from . import folder as runs

ROWS = ("test", "held_out")  # test rows, or test and validation rows (no weight was fitted on them)


def model_inputs(run_dir: str | Path) -> list[str]:
    """The columns the run's model reads (numeric, categorical, text and date roles)."""
    run_dir = Path(run_dir)
    config = runs.load_config(run_dir)
    return describe_table(runs.load_data(run_dir), config.data).feature_columns


def protected_inputs(run_dir: str | Path) -> list[str]:
    """The run's model inputs whose names suggest a protected attribute (sex, age, ...)."""
    return likely_protected(model_inputs(run_dir))


def run_fairness(
    run_dir: str | Path,
    by: Iterable[str] | None = None,
    *,
    rows: str = "test",
    bands: int = DEFAULT_BANDS,
    min_rows: int = MIN_GROUP_ROWS,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Fairness:
    """Outcomes of a finished binary run's decision per group of each column in ``by``.

    ``by`` defaults to the model inputs that look like protected attributes (none: empty tables
    and a note saying how to choose columns). ``rows``: "test" (default) or "held_out" (test and
    validation rows: more rows, narrower intervals). Raises RunError for a run that is not a
    finished binary run with a threshold, DataError for a column that is not in its table or is
    its target.
    """
    run_dir = Path(run_dir)
    if rows not in ROWS:
        raise ConfigError(f"rows={rows!r}: use 'test' or 'held_out' (test and validation rows).")
    metrics = runs.read_metrics(run_dir)
    if metrics.get("task") != "binary":
        task = metrics.get("task") or "not finished"
        raise RunError(
            f"Run {run_dir.name} is not a finished binary run (task: {task}): fairness compares "
            "approve/flag decisions, which need a yes/no target; pick a binary run."
        )
    decision = runs.read_decision(run_dir)
    if decision is None:
        raise RunError(
            f"Run {run_dir.name} has no decision threshold (decision.json): choose one with "
            f"`fintune threshold {run_dir}` first."
        )
    config = runs.load_config(run_dir)
    target = config.data.target
    frame = runs.load_data(run_dir)
    inputs = describe_table(frame, config.data).feature_columns
    notes = []
    if by is None or not list(by):
        columns = likely_protected(inputs)
        if not columns:
            notes.append(
                "No model input looks like a protected attribute (sex, age, nationality, ...). "
                f"Choose columns to group by: `fintune fairness {run_dir} --by COLUMN`."
            )
    else:
        columns = list(dict.fromkeys(str(c) for c in by))
    for column in columns:
        _check_column(run_dir, frame, column, target)
    scored = runs.read_predictions(run_dir)
    if rows == "held_out":
        scored = pd.concat([scored, runs.read_val_predictions(run_dir)], ignore_index=True)
    # target_labels: a label stored as 1.0 in the CSV reads as the class "1"
    is_positive = target_labels(scored[target]).to_numpy(dtype=object) == decision.positive_class
    score = scored[f"prob_{decision.positive_class}"].to_numpy(dtype=float)
    result = group_fairness(
        frame.loc[scored["row"], columns].reset_index(drop=True),
        is_positive,
        score,
        decision.threshold,
        positive_class=decision.positive_class,
        reference=frame[columns],
        bands=bands,
        min_rows=min_rows,
        n_boot=n_boot,
        seed=seed,
    )
    outside = [c for c in columns if c not in inputs]
    if outside:
        notes.append(
            f"Not a model input: {', '.join(outside)}. The model never read "
            f"{'it' if len(outside) == 1 else 'them'}; gaps here come through correlated inputs."
        )
    return dataclasses.replace(result, notes=(*notes, *result.notes), rows_used=rows)


def _check_column(run_dir: Path, frame: pd.DataFrame, column: str, target: str) -> None:
    if column == target:
        raise DataError(
            f"{column!r} is the target of run {run_dir.name}: group by another column, such as "
            "an applicant attribute."
        )
    if column not in frame.columns:
        names = [str(c) for c in frame.columns if c != target]
        close = difflib.get_close_matches(column, names, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise DataError(
            f"Column {column!r} is not in run {run_dir.name}'s table. {hint}Its columns are: "
            f"{', '.join(names)}."
        )


def retrain_without(jobs, run_dir: str | Path, columns: Iterable[str]) -> str:
    """Queue the run again on the same table and settings with ``columns``' role set to ignore.

    ``jobs`` is a :class:`~core.runs.jobs.JobManager`; returns the new run's id. Compare the two
    runs (``fintune compare`` or the Compare page) to see what leaving the columns out costs.
    """
    run_dir = Path(run_dir)
    config, source = runs.read_config(run_dir)
    frame = runs.load_data(run_dir)
    columns = list(dict.fromkeys(str(c) for c in columns))
    if not columns:
        raise ConfigError("No column to leave out: name at least one of the run's inputs.")
    for column in columns:
        _check_column(run_dir, frame, column, config.data.target)
    roles = {**config.data.roles, **dict.fromkeys(columns, "ignore")}
    return jobs.submit(config.replace(data={"roles": roles}), frame, source=source)
