"""Evaluation cost: our bootstrap of every binary metric vs the same with scikit-learn's metric
functions, DeLong vs a paired bootstrap, and the whole post-training report of a real run.

    python -m bench.evaluation [--repeats 3] [--run runs/<id>]

Each timing is the median of ``--repeats``; both sides run in the same process, one after the
other, on the same data.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.data.schema import TableSpec
from core.evaluation.scorecard import evaluate
from core.stats.intervals import delong_test, paired_differences


def _sklearn_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The reference: the same metrics from scikit-learn's functions (and numpy for ECE)."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        f1_score,
        log_loss,
        roc_auc_score,
        roc_curve,
    )

    score, positive = proba[:, 0], y == 0
    fpr, tpr, _ = roc_curve(positive, score)
    auc = roc_auc_score(positive, score)
    bins = np.minimum((score * 10).astype(int), 9)
    ece = sum(
        abs(positive[bins == b].mean() - score[bins == b].mean()) * np.mean(bins == b)
        for b in np.unique(bins)
    )
    return {
        "roc_auc": auc,
        "gini": 2 * auc - 1,
        "ks": float(np.max(tpr - fpr)),
        "pr_auc": average_precision_score(positive, score),
        "brier": brier_score_loss(positive, score),
        "ece": ece,
        "log_loss": log_loss(y, proba, labels=[0, 1]),
        "accuracy": accuracy_score(y, proba.argmax(1)),
        "f1": f1_score(y, proba.argmax(1), pos_label=0),
    }


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.7).astype(int)  # class 0 ("bad") is the 30% event
    p_bad = np.clip(0.3 + 0.25 * (y == 0) + rng.normal(0, 0.2, n), 0.01, 0.99)
    return y, np.stack([p_bad, 1 - p_bad], axis=1)


def bootstrap_table(repeats: int) -> None:
    from core.stats.intervals import bootstrap_intervals

    spec = TableSpec("y", "binary", {}, ("bad", "good"), positive_class="bad")
    print(
        f"{'rows':>6} {'ours: 1,000-resample bootstrap, 9 metrics':>44} {'sklearn functions':>18} "
        f"{'speed-up':>9}"
    )
    for n in (150, 1500, 4500):
        y, proba = _data(n)
        ours = _median_seconds(lambda y=y, proba=proba: evaluate(spec, y, proba), repeats)
        reference = _median_seconds(
            lambda y=y, proba=proba: bootstrap_intervals(
                lambda i: _sklearn_metrics(y[i], proba[i]), len(y), strata=y
            ),
            repeats,
        )
        print(f"{n:>6} {ours:>42.2f} s {reference:>16.2f} s {reference / ours:>8.1f}x", flush=True)


def delong_table(repeats: int) -> None:
    from core.stats.metrics import binary_ranking_metrics

    print(
        f"\n{'rows':>6} {'DeLong test':>14} {'paired bootstrap of the AUC (1,000)':>38} "
        f"{'speed-up':>9}"
    )
    for n in (150, 1500, 4500):
        y, proba = _data(n)
        other = np.clip(proba[:, 0] + np.random.default_rng(1).normal(0, 0.1, n), 0, 1)
        scores = [proba[:, 0], other]
        ours = _median_seconds(lambda y=y, scores=scores: delong_test(y == 0, scores), repeats)
        reference = _median_seconds(
            lambda y=y, scores=scores: paired_differences(
                lambda i, k: {"auc": binary_ranking_metrics(y[i] == 0, scores[k][i])["roc_auc"]},
                len(y),
                2,
            ),
            repeats,
        )
        print(
            f"{n:>6} {ours * 1000:>11.1f} ms {reference:>36.2f} s {reference / ours:>8.0f}x",
            flush=True,
        )


def report_of_run(run: Path, repeats: int) -> None:
    """The whole post-training report (metrics, intervals, baselines, stability, leakage) of a
    run."""
    from core.runs import folder as runs
    from core.runs.finish import write_report
    from core.runs.split_file import run_split
    from core.training.estimator import FineTuner

    tuner = FineTuner.load(runs.model_dir(run))
    frame = runs.load_data(run)
    tuner.splits_ = run_split(run, frame, tuner.spec_, tuner.config)
    phases: dict[str, list[float]] = {}

    def once():
        with tempfile.TemporaryDirectory() as scratch:
            last = [time.perf_counter(), None]

            def phase(name):
                now = time.perf_counter()
                if last[1] is not None:
                    phases.setdefault(last[1], []).append(now - last[0])
                last[:] = [now, name]

            write_report(Path(scratch), tuner, frame, phase)
            phase(None)
            shutil.rmtree(scratch, ignore_errors=True)

    total = _median_seconds(once, repeats)
    print(
        f"\nreport of run {run.name} ({len(frame)} rows): {total:.1f} s in all (median of "
        f"{repeats})"
    )
    for name, values in phases.items():
        print(f"  {name:<46} {statistics.median(values):>6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--run", type=Path, default=None, help="a finished run folder to time the report on"
    )
    args = parser.parse_args()
    bootstrap_table(args.repeats)
    delong_table(args.repeats)
    if args.run:
        report_of_run(args.run, args.repeats)


if __name__ == "__main__":
    main()
