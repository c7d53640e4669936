"""LoRA vs full fine-tuning on the same rows, in one run: accuracy, trainable parameters, time,
memory.

    python -m bench.lora [--rows N] [--epochs N] [--rank 8]

Both fine-tune the bundled MiniLM on the sentiment sample (all 12,424 rows by default) with the
engine's defaults and the same split and seed; each runs in a fresh process so its peak memory
(RSS high-water mark) is its own. Prints test accuracy and macro-F1, trainable parameters (share
of the full fine-tune's), training seconds and samples/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "fin_sentiment.csv"


def run(lora_rank: int, rows: int | None, epochs: int | None) -> dict:
    from core.config import default_config
    from core.data.read import read_table
    from core.model.backbones import count_parameters
    from core.training.estimator import FineTuner

    frame = read_table(SAMPLE)
    if rows:
        frame = frame.sample(n=min(rows, len(frame)), random_state=0).reset_index(drop=True)
    config = default_config("label").replace(
        model={"lora_rank": lora_rank}, train={"epochs": epochs} if epochs else {}
    )
    marks: dict[str, float] = {}

    def on_progress(event: dict) -> None:
        if event["type"] == "phase" and event["phase"] == "Training":
            marks["start"] = time.perf_counter()

    tuner = FineTuner(config).fit(frame, on_progress=on_progress)
    seconds = time.perf_counter() - marks["start"]
    test = frame.iloc[tuner.splits_["test"]]
    metrics = tuner.evaluate(test)
    trainable, total = count_parameters(tuner.model_)
    n_train = len(tuner.splits_["train"])
    return {
        "setting": f"LoRA r{lora_rank}" if lora_rank else "full fine-tune",
        "accuracy": metrics["accuracy"],
        "f1": metrics["f1"],
        "trainable": trainable,
        "total": total,
        "train_s": seconds,
        "samples_per_s": n_train * len(tuner.history_) / seconds,
        "epochs": len(tuner.history_),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def isolated(*args) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(run, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=None, help="a random subset of the sample (default: all)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: the engine's (4, early stopping)"
    )
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = [isolated(0, args.rows, args.epochs), isolated(args.rank, args.rows, args.epochs)]
    full = results[0]
    print(
        f"{'setting':<16} {'accuracy':>9} {'macro F1':>9} {'trainable':>12} {'share':>7} "
        f"{'epochs':>6} {'train s':>8} {'samples/s':>10} {'peak MB':>8}"
    )
    for r in results:
        print(
            f"{r['setting']:<16} {r['accuracy']:>9.4f} {r['f1']:>9.4f} {r['trainable']:>12,} "
            f"{r['trainable'] / full['trainable']:>7.1%} {r['epochs']:>6} {r['train_s']:>8.1f} "
            f"{r['samples_per_s']:>10.1f} {r['peak_mb']:>8.0f}"
        )
    gap = (results[1]["accuracy"] - full["accuracy"]) * 100
    print(
        f"LoRA accuracy minus full fine-tune accuracy: {gap:+.2f} points, with "
        f"{results[1]['trainable'] / full['trainable']:.1%} of its trainable parameters"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
