"""Training speed, whole process: ``fintune train`` against the Hugging Face Trainer at its best.

    python -m bench.train_speed [--rows 2000] [--depths 0,6] [--epochs 2] [--precision both]
                                [--class-weights none] [--trainer-lr 5e-5] [--repeats 1]
                                [--cpu-isa native|avx2] [--markdown] [--check]

Both sides fine-tune the bundled MiniLM on the same rows of the sentiment sample: FinTune's own
stratified split of the sampled rows (``core.data.split.split_rows``, read back from the run's
``split.json`` to check), max_length 64, batch 32, the same epochs. Each side runs in a fresh
Python process and is timed from the moment it is started to the moment it exits, as a user waits:

- FinTune: ``fintune train`` (``python -m core.cli train``) with its defaults but for the flags
  printed; it keeps its best epoch by validation ROC AUC and ends with its report (test scoring,
  baselines, intervals, PSI, leakage) before the run is finished.
- Reference: ``transformers.Trainer`` with its own standard head (``BertForSequenceClassification``:
  pooler and classifier trainable; the embeddings and the bottom ``freeze`` encoder layers frozen,
  nothing else), its default optimiser (``TrainingArguments.optim``), learning rate 5e-5 (the
  Trainer's default, and ours for the backbone; ``--trainer-lr`` to give it another), the same
  warm-up share and weight decay as ours, dynamic padding, ``group_by_length`` sampling,
  evaluation each epoch on the same validation rows and ``load_best_model_at_end`` by validation
  ROC AUC (the metric ours selects by).

Precision is the same on both sides: ``--precision both`` (the default) runs a bf16 pair where the
machine has native bf16 (``core.training.devices.cpu_has_native_bf16``, or a GPU) and an fp32 pair;
without native bf16 only the fp32 pair. Class weights are the same on both sides: ``none`` (the
default: plain cross-entropy, the Trainer's own loss) or ``auto`` (ours' rule; the Trainer gets the
very weights through ``compute_loss_func``).

A row counts only when the reference learns: its test accuracy must be clearly above the share of
the majority class (by two binomial standard errors of that share); otherwise the row is marked
invalid and ``--check`` exits 1. ``--markdown`` prints the table for docs/benchmarks.md.
``--cpu-isa avx2`` runs both sides as on a CPU without AVX-512 and native bf16 (``bench.cpu_isa``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import cpu_isa

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
TARGET = "label"
MAX_LENGTH, BATCH_SIZE, LR, SEED = 64, 32, 5e-5, 42
# Ours' warm-up share and weight decay (core.config.TrainConfig), given to the Trainer too.
WARMUP_RATIO, WEIGHT_DECAY = 0.1, 0.01
CLEARLY_ABOVE_SE = 2.0  # standard errors above the majority share for the reference to count


# --------------------------------------------------------------------------- shared rows (parent)


def sample_table(rows: int, seed: int = 0):
    """``rows`` random rows of the sentiment sample, as FinTune reads the file."""
    from core.data.read import read_table

    frame = read_table(SAMPLES / "fin_sentiment.csv")
    return frame.sample(n=min(rows, len(frame)), random_state=seed).reset_index(drop=True)


def our_config(class_weights: str, precision: str, depth: int, epochs: int):
    from core.config import default_config

    return default_config(TARGET).replace(
        data={"split": "random"},
        model={"freeze_depth": depth, "max_length": MAX_LENGTH},
        train={
            "epochs": epochs,
            "batch_size": BATCH_SIZE,
            "lr": LR,
            "seed": SEED,
            "precision": precision,
            "class_weights": class_weights,
        },
    )


def shared_split(frame, class_weights: str) -> tuple[dict, list[str], list | None]:
    """FinTune's split of ``frame`` (positions), the classes in ours' order, and ours' class
    weights for those training rows (None: unweighted)."""
    from types import SimpleNamespace

    from core.data.schema import describe_table, target_labels
    from core.data.split import split_rows
    from core.training.estimator import FineTuner

    config = our_config(class_weights, "fp32", 0, 1)
    spec = describe_table(frame, config.data)
    splits = split_rows(frame, spec, config.data, config.train.seed)
    classes = list(spec.classes)
    codes = target_labels(frame[TARGET]).map({c: i for i, c in enumerate(classes)}).to_numpy()
    # The estimator's own rule, applied to the same training rows: the same weights on both sides.
    owner = SimpleNamespace(config=config, spec_=spec)
    weights = FineTuner._class_weights(owner, codes[splits["train"]])
    return splits, classes, None if weights is None else [float(w) for w in weights]


def majority_share(frame, splits: dict) -> tuple[str, float]:
    """The training rows' majority class and its share of the test rows."""
    train, test = frame[TARGET].iloc[splits["train"]], frame[TARGET].iloc[splits["test"]]
    majority = train.value_counts().idxmax()
    return str(majority), float((test == majority).mean())


def clearly_above(accuracy: float | None, share: float, n_test: int) -> bool:
    """True when ``accuracy`` beats always answering the majority class by two standard errors."""
    if accuracy is None:
        return False
    se = math.sqrt(share * (1 - share) / max(n_test, 1))
    return accuracy >= share + CLEARLY_ABOVE_SE * se


def available_precisions(choice: str) -> tuple[list[str], str]:
    """The precisions to compare, and why: bf16 only where the hardware has it natively."""
    import torch

    from core.training.devices import cpu_has_native_bf16

    native = torch.cuda.is_available() or cpu_has_native_bf16()
    if choice == "fp32":
        return ["fp32"], "fp32 asked for"
    if choice == "bf16":
        note = "bf16 asked for" + ("" if native else " (not native here: emulated and slow)")
        return ["bf16"], note
    if native:
        return ["bf16", "fp32"], "native bf16 here: a bf16 pair and an fp32 pair"
    return ["fp32"], "no native bf16 here (AVX2-class CPU): the fp32 pair only"


# --------------------------------------------------------------------------- reference (child)


def run_trainer_child(spec_file: Path) -> None:
    """The reference in its own process: read the rows, train with the Trainer, score the test rows,
    write the result JSON. Imports nothing of FinTune."""
    marks = {"started": time.time()}
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.metrics import roc_auc_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
    )

    from .trainer_arguments import best_epoch_arguments

    spec = json.loads(Path(spec_file).read_text())
    marks["imported"] = time.time()
    tokenizer = AutoTokenizer.from_pretrained(spec["backbone"])
    model = AutoModelForSequenceClassification.from_pretrained(
        spec["backbone"], num_labels=len(spec["classes"])
    )
    depth = spec["depth"]
    if depth > 0:  # the embeddings and the bottom layers only: the pooler and classifier train
        model.base_model.embeddings.requires_grad_(False)
        for layer in model.base_model.encoder.layer[:depth]:
            layer.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def dataset(part: str) -> list[dict]:
        frame = pd.read_csv(spec["parts"][part], keep_default_na=False)
        ids = tokenizer(frame["text"].tolist(), truncation=True, max_length=spec["max_length"])
        return [
            {"input_ids": i, "attention_mask": m, "labels": int(y)}
            for i, m, y in zip(ids["input_ids"], ids["attention_mask"], frame["y"], strict=True)
        ]

    train_ds, val_ds, test_ds = dataset("train"), dataset("val"), dataset("test")
    marks["loaded"] = time.time()

    def probabilities(logits) -> np.ndarray:
        logits = logits[0] if isinstance(logits, tuple) else logits
        return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()

    def compute_metrics(prediction) -> dict:
        proba = probabilities(prediction.predictions)
        labels = np.asarray(prediction.label_ids)
        return {
            # Macro one-vs-rest, as core.stats.metrics scores ours' validation rows.
            "roc_auc": float(roc_auc_score(labels, proba, multi_class="ovr", average="macro")),
            "accuracy": float((proba.argmax(1) == labels).mean()),
        }

    epoch_starts: list[float] = []
    val_auc: list[float] = []

    class Marks(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks["training"] = time.time()

        def on_epoch_begin(self, args, state, control, **kwargs):
            epoch_starts.append(time.time())

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            val_auc.append((metrics or {}).get("eval_roc_auc"))

    loss_func = None
    if spec["class_weights"] is not None:
        weight = torch.tensor(spec["class_weights"], dtype=torch.float32)

        def loss_func(outputs, labels, num_items_in_batch=None):
            return torch.nn.functional.cross_entropy(outputs.logits.float(), labels, weight=weight)

    with tempfile.TemporaryDirectory(prefix="fintune-bench-trainer-") as output_dir:
        args = best_epoch_arguments(
            output_dir,
            batch_size=spec["batch_size"],
            epochs=spec["epochs"],
            lr=spec["lr"],
            weight_decay=spec["weight_decay"],
            warmup=spec["warmup_ratio"],
            precision=spec["precision"],
            seed=spec["seed"],
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics,
            compute_loss_func=loss_func,
            callbacks=[Marks()],
        )
        trainer.train()
        marks["trained"] = time.time()
        output = trainer.predict(test_ds)
    labels = np.asarray(output.label_ids)
    accuracy = float((probabilities(output.predictions).argmax(1) == labels).mean())
    best_epoch = 1 + int(np.argmax(val_auc)) if val_auc else None
    marks["done"] = time.time()
    result = {
        "accuracy": accuracy,
        "val_roc_auc": val_auc,
        "best_epoch": best_epoch,
        "marks": marks,
        "epoch_starts": epoch_starts,
        "settings": {
            "model": f"{type(model).__name__} (pooler and classifier trainable)",
            "frozen": f"embeddings + bottom {depth} layers" if depth else "nothing",
            "trainable_parameters": trainable,
            "optimiser": f"{getattr(args.optim, 'value', args.optim)} (the Trainer's default), "
            f"lr {args.learning_rate}, "
            f"weight decay {args.weight_decay}, warm-up {spec['warmup_ratio']:.0%}, linear decay",
            "precision": spec["precision"],
            "class_weights": spec["class_weights"] or "none",
            "best_epoch": "load_best_model_at_end by val ROC AUC, eval each epoch",
            "batching": "group_by_length, dynamic padding",
        },
    }
    Path(spec["out"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- running the sides


def _timed(command: list[str], log: Path) -> tuple[float, float, float, int]:
    """Run ``command`` to its end: (start time, end time, peak RSS MB, exit code)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with log.open("w") as out:
        started = time.time()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(process.pid, 0)
        ended = time.time()
    process.returncode = os.waitstatus_to_exitcode(status)
    return started, ended, usage.ru_maxrss / 1024, process.returncode


def _failed(side: str, code: int, log: Path) -> RuntimeError:
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    return RuntimeError(f"{side} exited {code}; the end of its log ({log}):\n{tail}")


def run_reference(work: Path, cell: dict) -> dict:
    """One Trainer run in a fresh process; whole-process seconds and its phases."""
    from core.model.backbones import bundled_minilm_path

    out = work / f"trainer-{cell['tag']}.json"
    spec = {
        "backbone": str(bundled_minilm_path()),
        "classes": cell["classes"],
        "parts": cell["parts"],
        "depth": cell["depth"],
        "epochs": cell["epochs"],
        "precision": cell["precision"],
        "class_weights": cell["class_weight_values"],
        "max_length": MAX_LENGTH,
        "batch_size": BATCH_SIZE,
        "lr": cell["trainer_lr"],
        "weight_decay": WEIGHT_DECAY,
        "warmup_ratio": WARMUP_RATIO,
        "seed": SEED,
        "out": str(out),
    }
    spec_file = work / f"trainer-{cell['tag']}.spec.json"
    spec_file.write_text(json.dumps(spec))
    log = work / f"trainer-{cell['tag']}.log"
    command = [sys.executable, "-m", "bench.train_speed", "--trainer-child", str(spec_file)]
    started, ended, peak_mb, code = _timed(command, log)
    if code != 0 or not out.exists():
        raise _failed("the Trainer", code, log)
    result = json.loads(out.read_text())
    marks = result["marks"]
    starts = result["epoch_starts"]
    epochs = [b - a for a, b in zip(starts, starts[1:] + [marks["trained"]], strict=True)]
    return {
        "whole_s": ended - started,
        "startup_s": marks["training"] - started,
        "loop_s": marks["trained"] - marks["training"],
        "after_s": ended - marks["trained"],
        "epoch_s": epochs,
        "accuracy": result["accuracy"],
        "best_val_roc_auc": max((v for v in result["val_roc_auc"] if v is not None), default=None),
        "best_epoch": result["best_epoch"],
        "peak_mb": peak_mb,
        "settings": result["settings"],
    }


def run_ours(work: Path, cell: dict) -> dict:
    """One ``fintune train`` in a fresh process; whole-process seconds and its phases from the
    run's own events (history.jsonl); checks that it trained on the shared split."""
    import numpy as np

    from core.runs import folder as runs
    from core.runs.split_file import read_split
    from core.training.events import EpochEvent, PhaseEvent

    runs_dir = work / f"runs-{cell['tag']}"
    log = work / f"fintune-{cell['tag']}.log"
    command = [sys.executable, "-m", "core.cli", "train", str(cell["csv"]), "--target", TARGET]
    command += ["--split", "random", "--seed", str(SEED), "--freeze", str(cell["depth"])]
    command += ["--epochs", str(cell["epochs"]), "--batch-size", str(BATCH_SIZE)]
    command += ["--lr", str(LR), "--max-length", str(MAX_LENGTH)]
    command += ["--precision", cell["precision"], "--class-weights", cell["class_weights"]]
    command += ["--runs-dir", str(runs_dir)]
    started, ended, peak_mb, code = _timed(command, log)
    if code != 0:
        raise _failed("fintune train", code, log)
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    split = read_split(run_dir)
    for name, rows in cell["splits"].items():
        if split is None or not np.array_equal(np.sort(split[name]), np.sort(rows)):
            raise RuntimeError(f"{run_dir}: its {name} rows are not the shared split's")
    events = runs.read_events(run_dir)
    training = next(e.time for e in events if isinstance(e, PhaseEvent) and "Training" in e.phase)
    epoch_events = [e for e in events if isinstance(e, EpochEvent)]
    ends = [e.time for e in epoch_events]
    metrics = runs.read_metrics(run_dir)
    aucs = [e.val.get("roc_auc") or math.nan for e in epoch_events]  # None where undefined
    config, _ = runs.read_config(run_dir)
    return {
        "whole_s": ended - started,
        "startup_s": training - started,
        "loop_s": ends[-1] - training,
        "after_s": ended - ends[-1],
        "epoch_s": [b - a for a, b in zip([training] + ends[:-1], ends, strict=True)],
        "accuracy": runs.metric_number(run_dir, metrics, "test", "accuracy"),
        "best_val_roc_auc": float(np.nanmax(aucs)),
        "best_epoch": 1 + int(np.nanargmax(aucs)),
        "peak_mb": peak_mb,
        "settings": {
            "command": f"fintune train {Path(cell['csv']).name} " + " ".join(command[5:-2]),
            "frozen": f"embeddings + bottom {cell['depth']} layers" if cell["depth"] else "nothing",
            "optimiser": f"AdamW, lr {config.train.lr} (backbone) / {config.train.head_lr} "
            f"(head), weight decay {config.train.weight_decay}, warm-up "
            f"{config.train.warmup_ratio:.0%}, linear decay",
            "precision": cell["precision"],
            "class_weights": cell["class_weight_values"] or "none",
            "best_epoch": "best val ROC AUC kept, eval each epoch",
            "cache_frozen_prefix": config.train.cache_frozen_prefix,
        },
    }


NUMBERS = ("whole_s", "startup_s", "loop_s", "after_s", "accuracy", "best_val_roc_auc")


def median_cell(results: list[dict]) -> dict:
    """Medians over repeats (peak memory: the largest)."""
    first = results[0]
    out = {key: statistics.median(r[key] for r in results) for key in NUMBERS}
    out["epoch1_s"] = statistics.median(r["epoch_s"][0] for r in results)
    out["later_epoch_s"] = statistics.median(
        statistics.mean(r["epoch_s"][1:] or r["epoch_s"]) for r in results
    )
    out["peak_mb"] = max(r["peak_mb"] for r in results)
    out["best_epoch"] = first["best_epoch"]
    out["settings"] = first["settings"]
    return out


# --------------------------------------------------------------------------- reporting


COLUMNS = (
    "precision",
    "freeze",
    "side",
    "start-up s",
    "loop s",
    "after s",
    "whole s",
    "epoch 1 s",
    "later epoch s",
    "test acc",
    "peak MB",
    "ours faster (whole)",
    "later epochs",
    "valid",
)


def table_rows(rows: list[dict]) -> list[list[str]]:
    """One line per side per (precision, freeze) pair, the ratios on ours' line."""
    out = []
    for row in rows:
        for side in ("Trainer", "FinTune"):
            cell = row[side]
            ours = side == "FinTune"
            out.append(
                [
                    row["precision"],
                    str(row["depth"]),
                    side,
                    f"{cell['startup_s']:.1f}",
                    f"{cell['loop_s']:.1f}",
                    f"{cell['after_s']:.1f}",
                    f"{cell['whole_s']:.1f}",
                    f"{cell['epoch1_s']:.1f}",
                    f"{cell['later_epoch_s']:.2f}",
                    f"{cell['accuracy']:.3f}",
                    f"{cell['peak_mb']:.0f}",
                    f"{row['speedup']:.2f}x" if ours else "",
                    f"{row['later_speedup']:.1f}x" if ours else "",
                    ("yes" if row["valid"] else "NO: reference at majority") if ours else "",
                ]
            )
    return out


def format_plain(rows: list[dict]) -> str:
    body = table_rows(rows)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(COLUMNS)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def format_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(rows)]
    return "\n".join(lines)


def format_settings(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        for side in ("Trainer", "FinTune"):
            settings = "; ".join(f"{k} {v}" for k, v in row[side]["settings"].items())
            lines.append(f"  {row['precision']} freeze {row['depth']} {side}: {settings}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000, help="rows of the sentiment sample")
    parser.add_argument("--depths", default="0,6", help="freeze depths, comma-separated")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; medians printed")
    parser.add_argument(
        "--precision",
        choices=["both", "bf16", "fp32"],
        default="both",
        help="both (default): a bf16 pair where bf16 is native, and an fp32 pair",
    )
    parser.add_argument(
        "--class-weights",
        choices=["none", "auto"],
        default="none",
        help="the same on both sides: none (default) or ours' auto rule",
    )
    parser.add_argument(
        "--trainer-lr",
        type=float,
        default=LR,
        help="the Trainer's learning rate (default %(default)s: its own default, ours' backbone "
        "rate); a higher one can help its fresh classifier in few steps",
    )
    parser.add_argument(
        "--cpu-isa",
        choices=cpu_isa.CHOICES,
        default="native",
        help="avx2: both sides as on a CPU without AVX-512 and native bf16 (bench.cpu_isa)",
    )
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the reference did not clearly learn"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--trainer-child", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.trainer_child is not None:
        run_trainer_child(args.trainer_child)
        return
    cpu_isa.restrict(args.cpu_isa, "bench.train_speed", argv)
    depths = [int(d) for d in args.depths.split(",") if d.strip()]
    precisions, why = available_precisions(args.precision)
    work = Path(tempfile.mkdtemp(prefix="fintune-train-speed-"))
    frame = sample_table(args.rows)
    csv = work / "sentiment.csv"
    frame.to_csv(csv, index=False)
    from core.data.read import read_table

    frame = read_table(csv)  # exactly what `fintune train` will read
    splits, classes, weights = shared_split(frame, args.class_weights)
    codes = frame[TARGET].map({c: i for i, c in enumerate(classes)})
    parts = {}
    for name, rows in splits.items():
        path = work / f"{name}.csv"
        frame.iloc[rows][["text"]].assign(y=codes.iloc[rows].to_numpy()).to_csv(path, index=False)
        parts[name] = str(path)
    majority, share = majority_share(frame, splits)
    n_test = len(splits["test"])
    print(
        f"sentiment sample: {len(frame)} rows, train/val/test "
        f"{'/'.join(str(len(splits[p])) for p in ('train', 'val', 'test'))} (FinTune's split, "
        f"seed {SEED}); majority class {majority!r}: {share:.3f} of the test rows; a reference "
        f"counts above {share + CLEARLY_ABOVE_SE * math.sqrt(share * (1 - share) / n_test):.3f}"
    )
    print(
        f"MiniLM, max_length {MAX_LENGTH}, batch {BATCH_SIZE}, {args.epochs} epochs; precision: "
        f"{why}; class weights on both sides: {args.class_weights}"
        + (f" {[round(w, 3) for w in weights]}" if weights else "")
        + f"; {cpu_isa.describe(args.cpu_isa)}; {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; logs in {work}",
        flush=True,
    )
    rows = []
    for precision in precisions:
        for depth in depths:
            cell = {
                "csv": csv,
                "parts": parts,
                "splits": splits,
                "classes": classes,
                "depth": depth,
                "epochs": args.epochs,
                "precision": precision,
                "class_weights": args.class_weights,
                "class_weight_values": weights,
                "trainer_lr": args.trainer_lr,
            }
            runs: dict[str, list[dict]] = {"Trainer": [], "FinTune": []}
            for repeat in range(args.repeats):
                cell["tag"] = f"{precision}-{depth}-{repeat}"
                runs["Trainer"].append(run_reference(work, cell))
                runs["FinTune"].append(run_ours(work, cell))
                for side, results in runs.items():
                    r = results[-1]
                    print(
                        f"  {precision} freeze {depth} {side}: whole {r['whole_s']:.1f} s, "
                        f"test accuracy {r['accuracy']:.3f}",
                        flush=True,
                    )
            cells = {side: median_cell(results) for side, results in runs.items()}
            trainer, ours = cells["Trainer"], cells["FinTune"]
            rows.append(
                {
                    "precision": precision,
                    "depth": depth,
                    **cells,
                    "speedup": trainer["whole_s"] / ours["whole_s"],
                    "later_speedup": trainer["later_epoch_s"] / ours["later_epoch_s"],
                    "majority_share": share,
                    "valid": clearly_above(trainer["accuracy"], share, n_test),
                    "ours_above_majority": clearly_above(ours["accuracy"], share, n_test),
                }
            )
    print()
    print(format_plain(rows))
    print(
        "\nwhole s: from starting the process to its exit, as a user waits (start-up: to the first "
        "training step; loop: training with per-epoch validation; after: test scoring, and for "
        "ours its report). ours faster: the Trainer's whole s / ours'. later epochs: the Trainer's "
        "mean epoch after the first / ours'. valid: the Trainer's test accuracy clearly above the "
        f"majority share {share:.3f}."
    )
    print("\nSettings\n" + format_settings(rows))
    if args.markdown:
        print("\n" + format_markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    invalid = [r for r in rows if not r["valid"]]
    if invalid:
        print(
            "\nINVALID: the Trainer did not clearly learn at "
            + ", ".join(f"{r['precision']} freeze {r['depth']}" for r in invalid)
            + ": those rows compare against a model at the majority class."
        )
        if args.check:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
