"""``fintune runs``, ``threshold``, ``compare``, ``explain``, ``report`` and ``fairness``: looking
into finished runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, RunError


def cmd_runs(args: argparse.Namespace) -> int:
    """List the runs in a runs folder, damaged ones with why."""
    from ..runs.files import DAMAGED_FIX
    from ..runs.folder import list_runs
    from ..runs.status import DAMAGED

    summaries = list_runs(args.runs_dir)
    if not summaries:
        print(f"no runs in {args.runs_dir}", file=sys.stderr)
        return 0
    for s in summaries:
        line = f"{s.run_id}  {s.state:<11} {s.target:<20} {s.backbone:<24}"
        if s.state == DAMAGED:  # what could be read, then why it is damaged
            print(f"{line} {s.message}")
            continue
        metric = f"{s.test_metric}={s.test_value:.4f}" if s.test_value is not None else ""
        print(f"{line} {s.tuning:<16} {metric}")
    damaged = sum(s.state == DAMAGED for s in summaries)
    if damaged:
        plural = "s" if damaged > 1 else ""
        print(f"{damaged} damaged run folder{plural}: {DAMAGED_FIX}", file=sys.stderr)
    return 0


def cmd_threshold(args: argparse.Namespace) -> int:
    """Choose a binary run's threshold on its validation rows, save it, report it on test rows."""
    from ..review.compare import spec_from_metrics
    from ..runs import folder as runs
    from ..stats.thresholds import choose_threshold, outcome_at, table_scores

    run_dir = Path(args.run_dir)
    metrics = runs.read_metrics(run_dir)
    if metrics.get("task") != "binary":
        raise RunError(
            f"Run {run_dir.name} is not a finished binary run: thresholds are for yes/no targets."
        )
    target = runs.load_config(run_dir).data.target
    spec = spec_from_metrics(metrics, target)

    def scores(table):
        return table_scores(table, target, spec.positive_class)

    decision = choose_threshold(
        *scores(runs.read_val_predictions(run_dir)),
        spec.positive_class,
        cost_fp=args.cost_fp,
        cost_fn=args.cost_fn,
        approval_rate=args.approval_rate,
        threshold=args.threshold,
    )
    runs.write_decision(run_dir, decision)
    test = outcome_at(*scores(runs.read_predictions(run_dir)), decision)
    share = {
        k: "n/a" if v != v else f"{v:.3f}"  # v != v: NaN
        for k, v in test.items()
        if isinstance(v, float)
    }
    print(
        f"threshold {decision.threshold:.4f} ({decision.method}, chosen on validation rows); "
        f"on test rows: TP {test['tp']}, FP {test['fp']}, FN {test['fn']}, TN {test['tn']}, "
        f"precision {share['precision']}, recall {share['recall']}, approval rate "
        f"{share['approval_rate']}, cost per row {share['cost_per_row']}",
        file=sys.stderr,
    )
    print(run_dir / "decision.json")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare finished runs on their test rows; the first is the reference."""
    from ..review.compare import compare_runs

    def show(title: str, table, **options) -> None:
        if not table.empty:
            print(title)
            print(table.to_string(index=False, **options))

    result = compare_runs(args.run_dirs)
    print(result.metrics.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if result.note:
        print(result.note, file=sys.stderr)
    show(
        f"\ndifferences against {result.models[0]} (paired bootstrap, 95% interval):",
        result.differences,
        float_format=lambda v: f"{v:.4f}",
    )
    show("\nDeLong test of ROC AUC differences:", result.delong, float_format=lambda v: f"{v:.4f}")
    show("\nsettings that differ:", result.config)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """SHAP values per input column for the first rows of a file."""
    from tqdm import tqdm

    from ..data.read import read_table
    from ..explain.attributions import explain_rows, explanation_frame
    from ..serving.safe_csv import to_safe_csv

    if args.rows < 1:
        raise ConfigError(f"--rows {args.rows}: explain at least 1 row.")
    rows = read_table(args.data).head(args.rows)
    with tqdm(
        total=len(rows), unit="row", file=sys.stderr, dynamic_ncols=True, desc="explaining"
    ) as bar:
        explanation = explain_rows(
            args.run_dir,
            rows,
            background=args.background,
            class_index=args.label,
            on_progress=lambda fraction: bar.update(round(fraction * len(rows)) - bar.n),
        )
    Path(args.output).write_bytes(to_safe_csv(explanation_frame(explanation)))
    stats = explanation.stats
    print(
        f"wrote SHAP values of {len(rows)} rows ({explanation.output_names}) to {args.output} "
        f"in {stats.seconds:.1f} s, {stats.backbone_passes} backbone passes",
        file=sys.stderr,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write a finished run's model-risk report as one HTML file."""
    from ..review.report import write_model_report

    path = write_model_report(
        args.run_dir,
        args.output,
        shap_rows=args.shap_rows,
        on_progress=lambda message: print(message, file=sys.stderr),
    )
    print(path)
    return 0


def cmd_fairness(args: argparse.Namespace) -> int:
    """A finished binary run's outcomes per group, with intervals, and the disparities."""
    import pandas as pd

    from ..evaluation.fairness import GAP_NAMES
    from ..runs.fairness import run_fairness
    from ..serving.safe_csv import to_safe_csv
    from ..stats.metrics import format_interval, format_number

    result = run_fairness(args.run_dir, args.by, rows=args.rows, bands=args.bands)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.groups.empty:
        return 0
    rows = "test rows" if result.rows_used == "test" else "test and validation rows"
    print(
        f"{result.rows:,} {rows} at threshold {result.threshold:.4f}: flagged = predicted "
        f"{result.positive_class}, approved = not flagged; brackets: bootstrap 95% intervals"
    )

    def cell(row, metric: str) -> str:
        return format_interval(row[metric], [row[f"{metric}_low"], row[f"{metric}_high"]], 3)

    for column in result.groups["column"].unique():
        groups = result.groups[result.groups["column"] == column]
        ratios = result.disparities[result.disparities["column"] == column]
        gaps = result.gaps[result.gaps["column"] == column]
        shown = pd.DataFrame(
            {
                "group": groups["group"],
                "rows": groups["rows"],
                result.positive_class: groups["positives"],
                "approval rate": [cell(r, "approval_rate") for _, r in groups.iterrows()],
                "approval ratio": [
                    "reference"
                    if r["group"] == r["reference"]
                    else format_interval(
                        r["approval_ratio"],
                        [r["approval_ratio_low"], r["approval_ratio_high"]],
                        3,
                    )
                    for _, r in ratios.iterrows()
                ],
                "TPR": [cell(r, "tpr") for _, r in groups.iterrows()],
                "FPR": [cell(r, "fpr") for _, r in groups.iterrows()],
                "ROC AUC": [cell(r, "roc_auc") for _, r in groups.iterrows()],
                "mean predicted": [cell(r, "mean_predicted") for _, r in groups.iterrows()],
                "observed": [cell(r, "observed_rate") for _, r in groups.iterrows()],
            }
        )
        print(f"\n{column}")
        print(shown.to_string(index=False))
        for _, r in ratios[ratios["finding"] != ""].iterrows():
            print(f"  {r['group']}: approval ratio {r['approval_ratio']:.3f}, {r['finding']}")
        for _, r in gaps.iterrows():
            value = format_interval(r["value"], [r["low"], r["high"]], 3)
            print(
                f"  {GAP_NAMES[r['measure']]}: {value}, p (shuffled groups) "
                f"{format_number(r['p_value'], 3)}"
            )
    if args.output:
        table = result.groups.merge(
            result.disparities.drop(columns="approval_rate"), on=["column", "group"]
        )
        Path(args.output).write_bytes(to_safe_csv(table))
        print(f"wrote the per-group table to {args.output}", file=sys.stderr)
    return 0
