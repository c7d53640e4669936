"""Score new rows with a finished run, using the run's saved preprocessing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, RunError
from ..runs import folder as runs
from ..runs.fitted import load_model


def decision_for(run_dir: str | Path, tuner, threshold: float | None = None):
    """The run's saved decision, with ``threshold`` (when given) replacing its cut-off."""
    from ..stats.thresholds import Decision

    decision = runs.read_decision(Path(run_dir))
    if threshold is None:
        return decision
    if tuner.spec_.task != "binary":
        raise ConfigError(
            f"A threshold is for binary runs; this run is {tuner.spec_.task}: leave it out."
        )
    base = decision or Decision(tuner.spec_.positive_class, 0.5)
    return Decision(base.positive_class, float(threshold), "manual", base.cost_fp, base.cost_fn)


def score_file(
    run_dir: str | Path,
    frame: pd.DataFrame,
    *,
    threshold: float | None = None,
    reasons: bool = True,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Predictions (and class probabilities) for every row; warnings for ignored extra columns.

    Binary labels use the run's saved decision threshold, or ``threshold`` when given. A binary
    run's predictions also get ``reason_1`` .. ``reason_4``: for each row the decision declines,
    the inputs that pushed it most toward decline (:func:`core.explain.reasons.reason_codes`),
    empty strings for approved rows; ``reasons=False`` leaves them out, and other tasks have none.
    ``on_progress(fraction)`` follows the reasons, the slow part.
    """
    tuner = load_model(run_dir)
    decision = decision_for(run_dir, tuner, threshold)
    warnings = tuner.preprocessor_.check_columns(frame)
    predictions = tuner.predictions_frame(frame, decision=decision)
    if reasons and tuner.spec_.task == "binary":
        from ..explain.reasons import reason_codes

        spec = tuner.spec_
        positive = decision.positive_class if decision is not None else spec.positive_class
        try:
            codes = reason_codes(
                run_dir,
                frame,
                decision=decision,
                probabilities=predictions[f"prob_{positive}"].to_numpy(),
                on_progress=on_progress,
            )
        except RunError as exc:  # e.g. no approved training row: the predictions still count
            warnings = [*warnings, f"no reason codes: {exc}"]
        else:
            for column in codes.frame.columns:
                if column.startswith("reason_"):
                    predictions[column] = codes.frame[column].to_numpy()
    return predictions, warnings


def drift_report(
    run_dir: str | Path, frame: pd.DataFrame, predictions: pd.DataFrame
) -> pd.DataFrame:
    """PSI of each input and of the score between the run's training rows and ``frame``.

    Columns ``input``, ``psi``, ``level``; empty for runs trained before stability was recorded.
    """
    from ..evaluation.stability import Reference, stability_report, with_score
    from ..runs.finish import score_of

    saved = runs.read_stability(Path(run_dir))
    if not saved:
        return pd.DataFrame(columns=["input", "psi", "level"])
    tuner = load_model(run_dir)
    references = {
        name: Reference.from_dict(raw) for name, raw in saved.get("references", {}).items()
    }
    sizes = saved.get("rows", {})
    report = stability_report(references, frame, n_reference=sizes.get("inputs", 0))
    if "score_reference" in saved:
        spec = tuner.spec_
        if spec.task == "regression":
            values = predictions["prediction"].to_numpy(dtype=float)
        else:
            values = score_of(
                spec, predictions[[f"prob_{c}" for c in spec.classes]].to_numpy(dtype=float)
            )
        report = with_score(
            report,
            Reference.from_dict(saved["score_reference"]),
            values,
            n_reference=sizes.get("score", 0),
        )
    return report
