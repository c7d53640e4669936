"""Everything written about a freshly trained model, beside it in the run folder.

Test metrics with bootstrap intervals, the reliability and gain / lift tables, the decision
threshold (chosen on validation rows, judged on test rows), the baselines fitted on the same
split, population stability between train and test, and leakage warnings. Baselines, stability
and leakage are extras: if one fails its error is recorded and the run still succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.split import describe_split, resolve_split
from ..evaluation.scorecard import diagnostics, evaluate, metrics_of, positive_scores
from ..stats.thresholds import choose_threshold, outcome_at
from ..training.estimator import FineTuner, predictions_table
from . import folder as runs
from .files import write_json

logger = logging.getLogger(__name__)


def _labels(tuner: FineTuner, frame: pd.DataFrame) -> np.ndarray:
    """Encoded class ids, or the target's values in its own units."""
    if tuner.spec_.task == "regression":
        return pd.to_numeric(frame[tuner.spec_.target], errors="coerce").to_numpy(dtype=float)
    return tuner.preprocessor_.encode_target(frame)


def score_of(spec, predictions: np.ndarray) -> np.ndarray:
    """The one number per row whose stability is tracked: P(positive), the top probability, or the
    value."""
    if spec.task == "regression":
        return np.asarray(predictions, dtype=float)
    if spec.task == "binary":
        return predictions[:, spec.positive_index]
    return predictions.max(axis=1)


def write_report(
    run_dir: Path, tuner: FineTuner, frame: pd.DataFrame, phase: Callable[[str], None]
) -> dict:
    """Evaluate ``tuner`` on its own split of ``frame``; write every file; return metrics.json."""
    spec = tuner.spec_
    parts = {name: frame.iloc[rows] for name, rows in tuner.splits_.items()}
    phase("Evaluating on the validation and test splits")
    network = {name: tuner.split_network_outputs(name, parts[name]) for name in ("val", "test")}
    predictions = {
        name: tuner.outputs_to_predictions(tuner.blend_outputs(parts[name], network[name]))
        for name in ("val", "test")
    }
    labels = {name: _labels(tuner, parts[name]) for name in ("val", "test")}

    decision = None
    if spec.task == "binary":
        decision = choose_threshold(
            *positive_scores(spec, labels["val"], predictions["val"]), spec.positive_class
        )
        write_json(Path(run_dir) / "decision.json", decision.to_dict())
    for name, file in (("val", "val_predictions.csv"), ("test", "predictions.csv")):
        runs.write_table(
            run_dir, file, predictions_table(spec, parts[name], predictions[name], decision)
        )

    phase("Bootstrapping metric intervals")
    test = evaluate(spec, labels["test"], predictions["test"])
    metrics = {
        "task": spec.task,
        "classes": list(spec.classes),
        "positive_class": spec.positive_class,
        "split": describe_split(spec, tuner.config.data),
        "val": metrics_of(spec, labels["val"], predictions["val"]),
        "test": test["metrics"],
        "test_intervals": test["intervals"],
        "diagnostics": diagnostics(spec, labels["test"], predictions["test"]),
        "rows": {name: len(rows) for name, rows in tuner.splits_.items()},
    }
    if decision is not None:
        metrics["decision"] = decision.to_dict()
        metrics["at_threshold"] = outcome_at(
            *positive_scores(spec, labels["test"], predictions["test"]), decision
        )

    if tuner.blend_ is not None:
        # What each part of the blend brings, on the same test rows as the model they make up.
        metrics["parts"] = {
            "blend_weight": tuner.blend_["weight"],
            **{
                name: metrics_of(spec, labels["test"], tuner.outputs_to_predictions(outputs))
                for name, outputs in tuner.part_outputs(parts["test"], network["test"]).items()
            },
        }
    phase("Fitting baselines on the same split")
    metrics["baselines"] = _baselines(run_dir, spec, parts, labels, decision)
    phase("Checking stability and leakage")
    metrics["stability"] = _stability(run_dir, tuner, parts, predictions)
    metrics["warnings"] = _leakage(tuner, frame)
    return metrics


def _baselines(run_dir: Path, spec, parts: dict, labels: dict, decision) -> dict:
    from ..evaluation.baselines import fit_baselines

    try:
        fitted = fit_baselines(spec, parts)
    except Exception as exc:  # a baseline must never cost the user the fine-tuned model
        logger.exception("baselines failed")
        return {"error": f"{type(exc).__name__}: {exc}"}
    results = {}
    for name, outputs in fitted.items():
        test = evaluate(spec, labels["test"], outputs["test"])
        results[name] = {
            "val": metrics_of(spec, labels["val"], outputs["val"]),
            "test": test["metrics"],
            "test_intervals": test["intervals"],
            "error": None,
        }
        runs.write_table(
            run_dir,
            runs.baseline_file(name),
            predictions_table(spec, parts["test"], outputs["test"], decision),
        )
    return results


def _stability(run_dir: Path, tuner: FineTuner, parts: dict, predictions: dict) -> dict:
    """PSI of every input (test against train) and of the score (test against validation);
    references saved for new files.

    The score's reference is the validation rows' scores, already computed: rows the weights were
    not fitted on (training rows' scores are flattered by the fit, so new rows would look shifted
    against them), and no second pass over training rows at the end of every run.
    """
    from ..evaluation.stability import (
        Reference,
        psi_chance_level,
        stability_reference,
        stability_report,
        with_score,
    )

    try:
        train = parts["train"]
        val_scores = score_of(tuner.spec_, predictions["val"])
        references = stability_reference(train, tuner.spec_)
        score_reference = Reference.fit(val_scores, kind="numeric")
        report = with_score(
            stability_report(references, parts["test"], n_reference=len(train)),
            score_reference,
            score_of(tuner.spec_, predictions["test"]),
            n_reference=len(val_scores),
        )
    except Exception as exc:  # stability is advice: its failure must not fail the run
        logger.exception("stability failed")
        return {"error": f"{type(exc).__name__}: {exc}"}
    write_json(
        Path(run_dir) / "stability.json",
        {
            "references": {name: ref.to_dict() for name, ref in references.items()},
            "score_reference": score_reference.to_dict(),
            "rows": {"inputs": len(train), "score": len(val_scores)},
        },
    )
    return {
        "inputs": report.to_dict("records"),  # the model score first, then each input, worst first
        "chance_level": psi_chance_level(len(train), len(parts["test"])),
    }


def _leakage(tuner: FineTuner, frame: pd.DataFrame) -> list[dict]:
    from ..data.leakage import find_leakage

    split = resolve_split(tuner.spec_, tuner.config.data)
    try:
        found = find_leakage(
            frame,
            tuner.spec_,
            tuner.splits_,
            time_column=split[5:] if split.startswith("time:") else None,
        )
    except Exception as exc:
        logger.exception("leakage check failed")
        return [
            {
                "kind": "error",
                "column": None,
                "message": f"The leakage check failed: {exc}",
                "value": None,
            }
        ]
    return [
        {"kind": w.kind, "column": w.column, "message": w.message, "value": w.value} for w in found
    ]
