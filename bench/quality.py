"""Quality benchmark: FinTune's default fine-tuning vs. a classical baseline on the same split.

    python -m bench.quality [--datasets credit,sentiment,fraud,market] [--freeze N] [--epochs N]
    python -m bench.quality --datasets credit --variants default,frozen,numbers-in-text

Prints one table: per sample dataset, our test metric beside LightGBM (tables) or TF-IDF +
logistic regression (text) on the same train/val/test rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from core.config import default_config
from core.data.read import read_table
from core.evaluation.baselines import run_baseline
from core.training.estimator import FineTuner

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
DATASETS = {
    "credit": ("credit_risk.csv", "credit_risk", "random"),
    "sentiment": ("fin_sentiment.csv", "label", "random"),
    "fraud": ("card_fraud.csv", "is_fraud", "random"),
    "market": ("market_daily.csv", "next_day_direction", "time:date"),
}


# Design alternatives to justify the defaults: the backbone frozen (only the head learns), the
# numbers also written into the text (binned) besides the numeric encoder, and for imbalanced
# targets the loss (focal) and the class weights (balanced, none) against the default (auto).
VARIANTS = {
    "default": {},
    "frozen": {"model": {"freeze_depth": 6}},
    "numbers-in-text": {"model": {"numeric_in_text": "always"}},
    "focal": {"train": {"loss": "focal"}},
    "balanced": {"train": {"class_weights": "balanced"}},
    "no-weights": {"train": {"class_weights": "none"}},
}


def run_one(name: str, args: argparse.Namespace, variant: str = "default") -> dict:
    filename, target, split = DATASETS[name]
    frame = read_table(SAMPLES / filename)
    if args.max_rows and len(frame) > args.max_rows:
        # A stratified sample keeps the class balance (and, for time splits, the row order).
        fraction = args.max_rows / len(frame)
        frame = (
            frame.groupby(target, group_keys=False)
            .sample(frac=fraction, random_state=0)
            .sort_index()
        )
    config = default_config(target, split=split)
    model_overrides = dict(VARIANTS[variant].get("model", {}))
    if args.freeze is not None:
        model_overrides["freeze_depth"] = args.freeze
    train_overrides = {"precision": args.precision, **VARIANTS[variant].get("train", {})}
    if args.epochs is not None:
        train_overrides["epochs"] = args.epochs
    config = config.replace(model=model_overrides, train=train_overrides)
    started = time.perf_counter()
    tuner = FineTuner(config).fit(frame)
    seconds = time.perf_counter() - started
    parts = {k: frame.iloc[v] for k, v in tuner.splits_.items()}
    ours = tuner.evaluate(parts["test"])
    baseline_name, baseline = run_baseline(tuner.spec_, parts)
    metric = "rmse" if tuner.spec_.task == "regression" else "roc_auc"
    return {
        "dataset": name,
        "variant": variant,
        "rows": len(frame),
        "task": tuner.spec_.task,
        "split": split,
        "metric": metric,
        "ours": ours[metric],
        "ours_accuracy": ours.get("accuracy"),
        "ours_pr_auc": ours.get("pr_auc"),
        "baseline_pr_auc": baseline["test"].get("pr_auc"),
        "baseline": baseline_name,
        "baseline_value": baseline["test"][metric],
        "baseline_accuracy": baseline["test"].get("accuracy"),
        "epochs_run": len(tuner.history_),
        "freeze_depth": config.model.freeze_depth,
        "train_seconds": seconds,
    }


def _pair(ours, baseline) -> str:
    return "–" if ours is None else f"{ours:.3f}/{baseline:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--freeze", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--variants", default="default", help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--max-rows", type=int, default=None, help="stratified sample of larger datasets"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    header = f"{'dataset':<10} {'variant':<16} {'rows':>6} {'task':<10} {'split':<15} {'metric':<8} {'FinTune':>8} {'baseline':>8}  {'PR AUC ours/base':>16}  {'(which)':<30} {'epochs':>6} {'train s':>8}"
    print(header, flush=True)
    jobs = [
        (d.strip(), v.strip()) for d in args.datasets.split(",") for v in args.variants.split(",")
    ]
    for name, variant in jobs:
        row = run_one(name, args, variant)
        rows.append(row)
        print(
            f"{row['dataset']:<10} {row['variant']:<16} {row['rows']:>6} {row['task']:<10} {row['split']:<15} {row['metric']:<8} "
            f"{row['ours']:>8.4f} {row['baseline_value']:>8.4f}  {_pair(row['ours_pr_auc'], row['baseline_pr_auc']):>16}  "
            f"{row['baseline']:<30} {row['epochs_run']:>6} "
            f"{row['train_seconds']:>8.1f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
