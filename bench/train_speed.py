"""Training speed: FinTune's engine vs. the Hugging Face Trainer on the same work, in one process.

    python -m bench.train_speed [--rows 2000] [--depths 0,3,6] [--epochs 2] [--repeats 1]

Both fine-tune the bundled MiniLM on the same rows of the sentiment sample (max_length 64,
batch 32, same learning rates and epochs). The Trainer runs at its best settings here: dynamic
padding and length-grouped sampling (``train_sampling_strategy="group_by_length"``). For each
freeze depth it prints samples/s, seconds per epoch (first and later), test accuracy and peak
memory (RSS high-water mark of a fresh child process per run), and the ratio ours / Trainer.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
MAX_LENGTH, BATCH_SIZE, LR, HEAD_LR = 64, 32, 5e-5, 1e-3


def _data(rows: int, seed: int = 0):
    from sklearn.model_selection import train_test_split

    from core.data.read import read_table

    frame = read_table(SAMPLES / "fin_sentiment.csv")
    frame = frame.sample(n=min(rows, len(frame)), random_state=seed).reset_index(drop=True)
    train, rest = train_test_split(
        frame, test_size=0.25, random_state=seed, stratify=frame["label"]
    )
    val, test = train_test_split(rest, test_size=0.8, random_state=seed, stratify=rest["label"])
    return train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- reference: Trainer


def run_trainer(depth: int, epochs: int, rows: int, precision: str) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from core.model.backbones import bundled_minilm_path, freeze

    train, _, test = _data(rows)
    labels = sorted(train["label"].unique())
    path = bundled_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    freeze(model.bert, depth)

    def encode(frame):
        ids = tokenizer(frame["text"].tolist(), truncation=True, max_length=MAX_LENGTH)
        return [
            {"input_ids": i, "attention_mask": m, "labels": labels.index(y)}
            for i, m, y in zip(ids["input_ids"], ids["attention_mask"], frame["label"], strict=True)
        ]

    train_ds, test_ds = encode(train), encode(test)
    epoch_times: list[float] = []

    class EpochTimer(TrainerCallback):
        def on_epoch_begin(self, *args, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, *args, **kwargs):
            epoch_times.append(time.perf_counter() - self.start)

    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("bert.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("bert.")]
    groups = [{"params": head, "lr": HEAD_LR}] + ([{"params": body, "lr": LR}] if body else [])
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    args = TrainingArguments(
        output_dir="/tmp/fintune-bench-trainer",
        per_device_train_batch_size=BATCH_SIZE,
        per_device_eval_batch_size=BATCH_SIZE * 2,
        num_train_epochs=epochs,
        learning_rate=LR,
        warmup_steps=max(1, int(0.1 * epochs * -(-len(train_ds) // BATCH_SIZE))),
        weight_decay=0.01,
        max_grad_norm=1.0,
        use_cpu=not torch.cuda.is_available(),
        bf16=precision == "bf16",
        train_sampling_strategy="group_by_length",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[EpochTimer()],
        optimizers=(optimizer, None),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    output = trainer.predict(test_ds)
    # Compare with the label_ids the Trainer returns: its row order need not be the input order.
    accuracy = float((np.argmax(output.predictions, axis=1) == output.label_ids).mean())
    return {
        "seconds": seconds,
        "samples_per_s": len(train) * epochs / seconds,
        "epoch_s": epoch_times,
        "accuracy": accuracy,
        "peak_mb": _peak_rss_mb(),
    }


# --------------------------------------------------------------------------- ours


def run_ours(depth: int, epochs: int, rows: int, precision: str) -> dict:
    import numpy as np
    import pandas as pd

    from core.config import default_config
    from core.training.estimator import FineTuner

    train, val, test = _data(rows)
    frame = pd.concat([train, val, test], ignore_index=True)
    n_train, n_val = len(train), len(val)
    splits = {
        "train": np.arange(n_train),
        "val": np.arange(n_train, n_train + n_val),
        "test": np.arange(n_train + n_val, len(frame)),
    }
    config = default_config("label").replace(
        model={"freeze_depth": depth, "max_length": MAX_LENGTH},
        train={
            "epochs": epochs,
            "batch_size": BATCH_SIZE,
            "lr": LR,
            "head_lr": HEAD_LR,
            "patience": epochs + 1,
            "precision": precision,
        },
    )
    epoch_ends: list[float] = []
    marks: dict[str, float] = {}

    def on_progress(event):
        if event["type"] == "phase" and event["phase"] == "Training":
            marks["start"] = (
                time.perf_counter()
            )  # like trainer.train(): loading and tokenising excluded
        if event["type"] == "epoch":
            epoch_ends.append(event["elapsed_s"])

    # The same training rows as the Trainer; ours also scores a small validation split every epoch.
    tuner = FineTuner(config).fit(frame, splits=splits, on_progress=on_progress)
    seconds = time.perf_counter() - marks["start"]
    accuracy = tuner.evaluate(test)["accuracy"]
    epoch_s = [b - a for a, b in zip([0.0] + epoch_ends[:-1], epoch_ends, strict=True)]
    return {
        "seconds": seconds,
        "samples_per_s": len(train) * epochs / seconds,
        "epoch_s": epoch_s,
        "accuracy": accuracy,
        "peak_mb": _peak_rss_mb(),
    }


def isolated(target, *args) -> dict:
    """Run in a fresh process so peak memory and warm caches belong to this run alone."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(target, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=2000, help="rows of the sentiment sample (80%% train)"
    )
    parser.add_argument("--depths", default="0,3,6")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; medians are printed")
    parser.add_argument(
        "--precision",
        default="auto",
        help="ours: auto (bf16 on CPUs with native bf16 and on GPUs), fp32 or bf16",
    )
    parser.add_argument(
        "--trainer-precision", default="fp32", help="the Trainer's: fp32 (its default) or bf16"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print(
        f"{'freeze':>6} {'engine':<8} {'samples/s':>10} {'epoch 1 s':>10} {'later epoch s':>14} "
        f"{'accuracy':>9} {'peak MB':>8} {'ours/Trainer':>13}",
        flush=True,
    )
    results = []
    for depth in map(int, args.depths.split(",")):
        cells = {}
        engines = (
            ("Trainer", run_trainer, args.trainer_precision),
            ("FinTune", run_ours, args.precision),
        )
        for name, target, precision in engines:
            runs = [
                isolated(target, depth, args.epochs, args.rows, precision)
                for _ in range(args.repeats)
            ]
            cells[name] = {
                "samples_per_s": statistics.median(r["samples_per_s"] for r in runs),
                "epoch1_s": statistics.median(r["epoch_s"][0] for r in runs),
                "later_epoch_s": statistics.median(
                    statistics.mean(r["epoch_s"][1:] or r["epoch_s"]) for r in runs
                ),
                "accuracy": statistics.median(r["accuracy"] for r in runs),
                "peak_mb": max(r["peak_mb"] for r in runs),
            }
        ratio = cells["FinTune"]["samples_per_s"] / cells["Trainer"]["samples_per_s"]
        later = cells["Trainer"]["later_epoch_s"] / cells["FinTune"]["later_epoch_s"]
        for name, cell in cells.items():
            print(
                f"{depth:>6} {name:<8} {cell['samples_per_s']:>10.1f} {cell['epoch1_s']:>10.1f} "
                f"{cell['later_epoch_s']:>14.2f} {cell['accuracy']:>9.3f} {cell['peak_mb']:>8.0f} "
                f"{(f'{ratio:.2f}x' if name == 'FinTune' else ''):>13}",
                flush=True,
            )
        print(f"{'':>6} later epochs: FinTune {later:.1f}x faster than the Trainer", flush=True)
        results.append(
            {
                "freeze_depth": depth,
                **{k: v for k, v in cells.items()},
                "ratio": ratio,
                "later_epoch_speedup": later,
            }
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
