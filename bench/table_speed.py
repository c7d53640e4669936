"""Whole-process speed on tables (issue 16): FinTune's default against the first version's default
and against the Hugging Face Trainer fine-tuning the same backbone on rows serialised as text.

    python -m bench.table_speed                       # FinTune default vs HF Trainer, German credit
    python -m bench.table_speed --with-old            # also the first version's default (~450 s+)
    python -m bench.table_speed --repeats 3 --json build/table_speed.json
    python -m bench.table_speed --large               # 30,000 x 24 synthetic table, default fit
    python -m bench.table_speed --max-rows 200 --epochs 1      # smoke run: code paths only

Targets checked (PASS / FAIL lines at the end):

(a) FinTune's default at least 10x faster than the first version's default (rows serialised as
    text, ``model.table_encoding=row_text``, ``model.freeze_depth=0``, no trees; 451 s recorded)
    at equal or better test ROC AUC; measured with ``--with-old`` (or ``--sides``).
(b) at least 5x faster than fine-tuning the same backbone with the Hugging Face Trainer on the
    rows serialised as text, at no worse test ROC AUC.
(c) a 30,000-row, 24-column table trains with the defaults in under 10 minutes (``--large``).

Fairness. All sides read the same frame and the same stratified train / validation / test rows,
computed once with core's own split (``split_rows`` with ``default_config``'s data settings and
seed), and are scored by the same metric (``core.stats.metrics.classification_metrics``) on the
same test rows. Each side runs in a fresh ``python -m bench.table_speed --side NAME`` process,
timed from spawn to exit: interpreter start, imports, reading the data, loading the backbone,
tokenising, training, validation and scoring the test rows all count, and no side inherits a warm
cache from another. Repeats interleave the sides; medians are reported.

The Trainer reference is held at its best, as a skilled user would run it: every feature column
written as ``column: value, column: value, ...`` (numbers as their values: the Trainer has no
numeric channel), ``AutoModelForSequenceClassification`` on the same local backbone with nothing
frozen (its classifier reads BERT's pooler, which trains too), dynamic padding with
length-grouped batches, max_length by FinTune's own rule (95th percentile of training token
lengths, capped at 256), batch 32, lr 5e-5, weight decay 0.01, 10% linear warmup, evaluation
every epoch on the same validation rows, the best epoch by validation ROC AUC restored at the end
(``load_best_model_at_end``), early stopping after 2 epochs without improvement, the same
precision FinTune picks on this machine (bf16 on CPUs with native bf16 and on GPUs). No class
weights: German credit's rarer class is 30% of rows, where FinTune's ``class_weights=auto`` uses
none either.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
CREDIT_FILE, CREDIT_TARGET = "credit_risk.csv", "credit_risk"
LARGE_TARGET = "default_next_month"
LARGE_ROWS = 30_000

SIDES = {
    "fintune": "FinTune default",
    "first-version": "first version default",
    "trainer": "HF Trainer, rows as text",
}
# The first version's default: each whole row serialised as one text, the whole backbone trained,
# the network alone (no LightGBM blend).
FIRST_VERSION = {"table_encoding": "row_text", "freeze_depth": 0, "trees": "off"}

SPEEDUP_OLD = 10.0  # (a)
SPEEDUP_TRAINER = 5.0  # (b)
LARGE_LIMIT_S = 600.0  # (c)
RECORDED_OLD_S = 451.0  # the first version's default on German credit, as recorded in issue 16

RESULT_MARK = "BENCH_RESULT "  # a side's one result line on its stdout

TRAINER_DEFAULTS = {
    "epochs": 5,
    "batch_size": 32,
    "lr": 5e-5,
    "weight_decay": 0.01,
    "warmup": 0.1,
    "patience": 2,
    "max_length": "auto",
    "max_length_cap": 256,
}


# --------------------------------------------------------------------------- data


def synthetic_credit_card_default(n_rows: int = LARGE_ROWS, seed: int = 0) -> pd.DataFrame:
    """A SYNTHETIC table shaped like UCI's "default of credit card clients" (Taiwan, 2005).

    Not real data: every value is drawn here from a fixed seed. 24 columns: credit limit, sex,
    education, marriage, age, six monthly repayment statuses (categorical: "no consumption",
    "paid in full", "revolving credit", "delay N months"), six bill amounts, six amounts paid
    (September back to April) and the binary target ``default_next_month`` (0 / 1), drawn from a
    logistic model of the recent repayment statuses, credit use, payments, limit and a few
    demographics, plus noise (about 22% defaults, as in the original table).
    """
    rng = np.random.default_rng(seed)
    n = n_rows
    months = ("sep", "aug", "jul", "jun", "may", "apr")
    age = np.clip(np.round(21 + rng.gamma(3.0, 5.0, size=n)), 21, 79).astype(int)
    sex = rng.choice(["female", "male"], size=n, p=[0.6, 0.4])
    education = rng.choice(
        ["graduate school", "university", "high school", "others"],
        size=n,
        p=[0.35, 0.47, 0.16, 0.02],
    )
    p_married = np.clip(0.1 + 0.018 * (age - 21), 0.1, 0.8)
    draw = rng.uniform(size=n)
    marriage = np.where(
        draw < 0.015, "others", np.where(draw < 0.015 + p_married, "married", "single")
    )
    edu_boost = pd.Series(education).map(
        {"graduate school": 0.35, "university": 0.0, "high school": -0.3, "others": 0.0}
    )
    log_limit = (
        np.log(120_000) + edu_boost.to_numpy() + 0.012 * (age - 35) + rng.normal(0, 0.65, size=n)
    )
    limit = np.clip(np.round(np.exp(log_limit), -4), 10_000, 1_000_000)

    risk = rng.normal(size=n)  # each client's lasting propensity to pay late
    level = 1.0 * risk + rng.normal(0, 0.6, size=n)
    statuses, bills, paid = [], [], []
    for _ in months:  # September first, each month a drift of the client's level
        level = 0.75 * level + 0.25 * risk + rng.normal(0, 0.55, size=n)
        status = np.where(
            level < -1.35,
            -2,
            np.where(
                level < -0.55, -1, np.where(level < 0.75, 0, 1 + np.floor((level - 0.75) * 1.6))
            ),
        ).astype(int)
        statuses.append(np.clip(status, -2, 8))
        use = np.clip(0.45 + 0.22 * level + rng.normal(0, 0.2, size=n), -0.02, 1.1)
        bill = np.where(status == -2, 0.0, np.round(limit * use))
        bills.append(bill)
        share = np.select(
            [status == -2, status == -1, status == 0],
            [0.0, 1.0, rng.uniform(0.03, 0.15, size=n)],
            rng.uniform(0.0, 0.04, size=n),
        )
        paid.append(np.round(np.clip(bill, 0, None) * share * rng.lognormal(0, 0.3, size=n)))

    recent, previous = np.clip(statuses[0], 0, None), np.clip(statuses[1], 0, None)
    utilisation = np.clip(bills[0] / limit, -0.1, 1.2)
    paid_share = np.clip(paid[0] / np.maximum(bills[0], 1.0), 0, 1)
    logit = (
        -2.1
        + 0.55 * recent
        + 0.25 * previous
        + 0.45 * (statuses[0] >= 2)
        + 0.35 * utilisation
        - 0.45 * paid_share
        - 0.3 * np.log(limit / 140_000)
        + 0.12 * (sex == "male")
        + 0.1 * (education == "high school")
        + 0.004 * np.abs(age - 38)
        + rng.normal(0, 0.6, size=n)
    )
    default = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)

    def status_words(codes: np.ndarray) -> np.ndarray:
        words = {-2: "no consumption", -1: "paid in full", 0: "revolving credit"}
        words.update({k: f"delay {k} month" + ("s" if k > 1 else "") for k in range(1, 9)})
        return pd.Series(codes).map(words).to_numpy()

    columns: dict[str, object] = {
        "limit_balance": limit.astype(int),
        "sex": sex,
        "education": education,
        "marriage": marriage,
        "age": age,
    }
    for month, codes in zip(months, statuses, strict=True):
        columns[f"pay_status_{month}"] = status_words(codes)
    for month, bill in zip(months, bills, strict=True):
        columns[f"bill_amount_{month}"] = bill.astype(int)
    for month, amount in zip(months, paid, strict=True):
        columns[f"paid_amount_{month}"] = amount.astype(int)
    columns[LARGE_TARGET] = default
    return pd.DataFrame(columns)


def dataset_target(dataset: str) -> str:
    return LARGE_TARGET if dataset == "large" else CREDIT_TARGET


def load_frame(dataset: str, max_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The benchmark's table: German credit or the synthetic large one; ``max_rows`` takes a
    stratified sample (smoke runs). Deterministic, so every side process rebuilds the same frame."""
    if dataset == "large":
        frame = synthetic_credit_card_default()
    else:
        from core.data.read import read_table

        frame = read_table(SAMPLES / CREDIT_FILE)
    target = dataset_target(dataset)
    if max_rows is not None and max_rows < len(frame):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(
            np.arange(len(frame)), train_size=max_rows, random_state=seed, stratify=frame[target]
        )
        frame = frame.iloc[np.sort(keep)].reset_index(drop=True)
    return frame


def make_splits(frame: pd.DataFrame, target: str) -> dict[str, list[int]]:
    """Train / validation / test row positions, exactly as a default FinTune run splits them."""
    from core.config import default_config
    from core.data.schema import describe_table
    from core.data.split import split_rows

    config = default_config(target)
    spec = describe_table(frame, config.data)
    splits = split_rows(frame, spec, config.data, config.train.seed)
    return {name: [int(i) for i in rows] for name, rows in splits.items()}


# --------------------------------------------------------------------------- rows as text


def value_text(value) -> str:
    """A cell as a skilled user writes it into text: '' for missing, 1169 not 1169.0, 2.5 not
    2.500000, whitespace collapsed."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        if float(value).is_integer():
            return str(int(value))
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    return " ".join(str(value).split())


def row_texts(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Each row as ``column: value, column: value, ...`` (names as core's ``pretty_name`` writes
    them; missing cells left out). Numbers are written as their values: unlike FinTune's
    ``row_text`` (``Preprocessor.texts``), which sends numbers to its numeric encoder, a plain text
    classifier has no other way to see them."""
    from core.data.preprocess import pretty_name

    parts: list[list[str]] = [[] for _ in range(len(frame))]
    for column in columns:
        label = pretty_name(column)
        for row, value in enumerate(frame[column].tolist()):
            text = value_text(value)
            if text:
                parts[row].append(f"{label}: {text}")
    return [", ".join(p) for p in parts]


# --------------------------------------------------------------------------- settings


def fintune_config(side: str, target: str, *, backbone: str | None = None, epochs=None):
    """The RunConfig a side trains: ``default_config`` (plus the first version's settings)."""
    from core.config import DEFAULT_BACKBONE, default_config

    config = default_config(target, backbone=backbone or DEFAULT_BACKBONE)
    if side == "first-version":
        config = config.replace(model=dict(FIRST_VERSION))
    if epochs is not None:
        config = config.replace(train={"epochs": epochs})
    return config


def trainer_settings(args: argparse.Namespace) -> dict:
    settings = dict(TRAINER_DEFAULTS)
    for key in ("epochs", "batch_size", "lr", "max_length"):
        value = getattr(args, f"trainer_{key}", None)
        if value is not None:
            settings[key] = value
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    settings["backbone"] = args.backbone
    return settings


# --------------------------------------------------------------------------- sides (child)


def _positions(splits: dict[str, list[int]]) -> dict[str, np.ndarray]:
    return {name: np.asarray(rows, dtype=np.int64) for name, rows in splits.items()}


def run_fintune_side(frame: pd.DataFrame, splits: dict, config) -> dict:
    """Fit FinTune on the shared rows, score the test rows; ``settings`` are the config as given
    and ``resolved`` what the fit settled (e.g. freeze_depth "auto")."""
    from core.training.estimator import FineTuner

    val_auc: list[float | None] = []
    marks: dict[str, float] = {}

    def on_progress(event: dict) -> None:
        if event.get("type") == "phase":
            marks.setdefault(event["phase"], time.perf_counter())
        if event.get("type") == "epoch":
            auc = event.get("val", {}).get("roc_auc")
            val_auc.append(auc)
            print(f"epoch {event['epoch']}: val ROC AUC {auc}", flush=True)

    started = time.perf_counter()
    tuner = FineTuner(config).fit(frame, splits=_positions(splits), on_progress=on_progress)
    fit_s = time.perf_counter() - started
    test = frame.iloc[splits["test"]]
    metrics = tuner.evaluate(test)
    parts = {name: m.get("roc_auc") for name, m in tuner.evaluate_parts(test).items()}
    resolved = {
        "freeze_depth": tuner.config.model.freeze_depth,
        "encoding": tuner.preprocessor_.encoding_,
        "reads_row_text": tuner.preprocessor_.reads_row_text,
        "max_length": tuner.max_length_,
        "epochs_run": len(val_auc),
        "blend": tuner.blend_,
        "test_auc_parts": parts,  # a blend's network and trees alone
    }
    return {
        "test_auc": metrics.get("roc_auc"),
        "test_parts_auc": parts,
        "val_auc": val_auc,
        "fit_s": fit_s,
        "settings": config.to_dict(),
        "resolved": resolved,
    }


def _precision() -> str:
    """The precision FinTune's ``precision=auto`` picks here, as the Trainer's flag."""
    import torch

    from core.training.devices import autocast_dtype, resolve_device

    dtype = autocast_dtype(resolve_device("auto"), "auto")
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def run_trainer_side(frame: pd.DataFrame, splits: dict, target: str, settings: dict) -> dict:
    """Fine-tune ``AutoModelForSequenceClassification`` with the Trainer on rows as text."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        PrinterCallback,
        Trainer,
        TrainerCallback,
    )

    from core.config import DataConfig
    from core.data.schema import describe_table, target_labels
    from core.model.backbones import resolve
    from core.stats.metrics import classification_metrics
    from core.training.devices import resolve_device

    from .trainer_arguments import best_epoch_arguments

    started = time.perf_counter()
    spec = describe_table(frame, DataConfig(target=target))
    classes, positive = list(spec.classes), spec.positive_index
    labels = target_labels(frame[target]).map({c: i for i, c in enumerate(classes)}).to_numpy()
    texts = row_texts(frame, spec.feature_columns)
    rarer = float(np.bincount(labels[splits["train"]].astype(int)).min() / len(splits["train"]))
    path = resolve(settings["backbone"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(classes))
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]

    max_length = settings["max_length"]
    if max_length == "auto":  # FinTune's rule: 95th percentile of training lengths, capped
        train_texts = [texts[i] for i in splits["train"]]
        lengths = [len(ids) for ids in tokenizer(train_texts, truncation=False)["input_ids"]]
        cap = min(settings["max_length_cap"], model.config.max_position_embeddings)
        max_length = int(min(max(16, np.percentile(lengths, 95)), cap))
    max_length = int(max_length)

    def dataset(part: str) -> list[dict]:
        rows = splits[part]
        encoded = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": int(labels[i])}
            for ids, mask, i in zip(
                encoded["input_ids"], encoded["attention_mask"], rows, strict=True
            )
        ]

    train_ds, val_ds, test_ds = dataset("train"), dataset("val"), dataset("test")

    def probabilities(logits: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()

    def compute_metrics(prediction) -> dict:
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        metrics = classification_metrics(
            np.asarray(prediction.label_ids), probabilities(logits), positive
        )
        return {"roc_auc": metrics["roc_auc"], "log_loss": metrics["log_loss"]}

    val_auc: list[float] = []

    class Report(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            auc = (metrics or {}).get("eval_roc_auc")
            val_auc.append(auc)
            print(f"epoch {state.epoch:.0f}: val ROC AUC {auc:.4f}", flush=True)

    precision = _precision()
    device = resolve_device("auto")
    with tempfile.TemporaryDirectory(prefix="fintune-table-speed-") as output_dir:
        arguments = best_epoch_arguments(
            output_dir,
            batch_size=settings["batch_size"],
            epochs=settings["epochs"],
            lr=settings["lr"],
            weight_decay=settings["weight_decay"],
            warmup=settings["warmup"],
            precision=precision,
            seed=42,
            use_cpu=device.type == "cpu",
            logging="epoch",
        )
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics,
            callbacks=[
                EarlyStoppingCallback(early_stopping_patience=settings["patience"]),
                Report(),
            ],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        best = trainer.state.best_metric
        output = trainer.predict(test_ds)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    test = classification_metrics(np.asarray(output.label_ids), probabilities(logits), positive)
    return {
        "test_auc": test["roc_auc"],
        "val_auc": val_auc,
        "fit_s": time.perf_counter() - started,
        "settings": {
            **settings,
            "text": "column: value, column: value, ... (every feature column; numbers as values)",
            "model": f"AutoModelForSequenceClassification({path}, num_labels={len(classes)})",
            "frozen_parameters": len(frozen),
            "precision": precision,
            "device": str(device),
            "sampling": "group_by_length, dynamic padding",
            "best_model": "load_best_model_at_end by val ROC AUC",
            "class_weights": f"none (rarer class {rarer:.0%} of training rows; FinTune's "
            "auto weights only below 25%)",
        },
        "resolved": {
            "max_length": max_length,
            "epochs_run": len(val_auc),
            "best_val_auc": best,
            "example_text": texts[splits["train"][0]][:300],
        },
    }


def run_side(args: argparse.Namespace) -> dict:
    """What a ``--side`` child process does: rebuild the frame, read the shared split, train."""
    shared = json.loads(Path(args.splits_file).read_text())
    frame = load_frame(args.dataset, args.max_rows)
    if len(frame) != shared["n_rows"]:
        raise SystemExit(f"frame has {len(frame)} rows, the split {shared['n_rows']}")
    target = dataset_target(args.dataset)
    splits = shared["splits"]
    if args.side == "trainer":
        return run_trainer_side(frame, splits, target, trainer_settings(args))
    config = fintune_config(args.side, target, backbone=args.backbone, epochs=args.epochs)
    return run_fintune_side(frame, splits, config)


# --------------------------------------------------------------------------- parent


def child_command(args: argparse.Namespace, side: str, splits_file: Path) -> list[str]:
    command = [sys.executable, "-m", "bench.table_speed", "--side", side]
    command += ["--splits-file", str(splits_file), "--dataset", args.dataset]
    command += ["--backbone", args.backbone]
    for flag, value in (
        ("--max-rows", args.max_rows),
        ("--epochs", args.epochs),
        ("--trainer-epochs", args.trainer_epochs),
        ("--trainer-batch-size", args.trainer_batch_size),
        ("--trainer-lr", args.trainer_lr),
        ("--trainer-max-length", args.trainer_max_length),
    ):
        if value is not None:
            command += [flag, str(value)]
    return command


def spawn_side(command: list[str], side: str) -> tuple[float, dict]:
    """Run one side in a fresh interpreter; whole-process seconds and its result line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no weight-loading bars in the log
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    result, tail = None, []
    for line in process.stdout:
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
            continue
        tail = (tail + [line.rstrip()])[-30:]
        print(f"    {side} | {line.rstrip()}", flush=True)
    code = process.wait()
    seconds = time.perf_counter() - started
    if code != 0 or result is None:
        raise RuntimeError(f"side {side} failed (exit {code}):\n" + "\n".join(tail))
    return seconds, result


def summarise(runs: dict[str, list[dict]]) -> list[dict]:
    """Per side: median whole-process seconds and test AUC over its repeats, and how many times
    slower than FinTune's default it is (``x_fintune``)."""
    rows = []
    for side, results in runs.items():
        aucs = [r["test_auc"] for r in results if r.get("test_auc") is not None]
        rows.append(
            {
                "side": side,
                "label": SIDES[side],
                "test_auc": statistics.median(aucs) if aucs else None,
                "seconds": statistics.median(r["seconds"] for r in results),
                "repeats": len(results),
                "settings": results[0]["settings"],
                "resolved": results[0].get("resolved", {}),
            }
        )
    base = next((r["seconds"] for r in rows if r["side"] == "fintune"), None)
    for row in rows:
        row["x_fintune"] = row["seconds"] / base if base else None
    return rows


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """The result table: side, test ROC AUC, whole-process seconds, seconds / FinTune's."""
    lines = [f"{'side':<26} {'test ROC AUC':>12} {'seconds':>9} {'x FinTune':>10} {'runs':>5}"]
    for row in rows:
        ratio = "–" if row["x_fintune"] is None else f"{row['x_fintune']:.2f}x"
        lines.append(
            f"{row['label']:<26} {_number(row['test_auc'], 4):>12} "
            f"{_number(row['seconds'], 1):>9} {ratio:>10} {row['repeats']:>5}"
        )
    return "\n".join(lines)


def format_settings(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        lines.append(f"{row['label']} settings: {json.dumps(row['settings'], default=str)}")
        lines.append(f"{row['label']} settled: {json.dumps(row['resolved'], default=str)}")
    return "\n".join(lines)


def check_lines(rows: list[dict], dataset: str, *, smoke: bool = False) -> list[str]:
    """PASS / FAIL against issue 16's targets, with the measured speed ratio and AUC difference."""
    by_side = {row["side"]: row for row in rows}
    ours = by_side.get("fintune")
    note = " [smoke settings: not the target's conditions]" if smoke else ""
    if ours is None:
        return ["no FinTune default side measured: no target checked"]
    lines = []
    if dataset == "large":
        verdict = "PASS" if ours["seconds"] < LARGE_LIMIT_S else "FAIL"
        lines.append(
            f"{verdict} (c) default fit on the {LARGE_ROWS:,}-row, 24-column table: "
            f"{ours['seconds']:.1f} s (target < {LARGE_LIMIT_S:.0f} s), test ROC AUC "
            f"{_number(ours['test_auc'], 4)}{note}"
        )
        return lines
    for side, target, name, wording in (
        ("first-version", SPEEDUP_OLD, "(a)", "equal or better"),
        ("trainer", SPEEDUP_TRAINER, "(b)", "no worse"),
    ):
        other = by_side.get(side)
        if other is None:
            continue
        speedup = other["seconds"] / ours["seconds"]
        diff = (
            None
            if ours["test_auc"] is None or other["test_auc"] is None
            else ours["test_auc"] - other["test_auc"]
        )
        ok = speedup >= target and diff is not None and diff >= 0
        lines.append(
            f"{'PASS' if ok else 'FAIL'} {name} FinTune default {speedup:.1f}x faster than "
            f"{other['label']} (target >= {target:.0f}x) at test ROC AUC "
            f"{_number(ours['test_auc'], 4)} vs {_number(other['test_auc'], 4)} "
            f"(difference {'–' if diff is None else f'{diff:+.4f}'}; target {wording}){note}"
        )
    if "first-version" not in by_side and not smoke:
        lines.append(
            f"INFO (a) first version not measured (--with-old): against its recorded "
            f"{RECORDED_OLD_S:.0f} s FinTune default is {RECORDED_OLD_S / ours['seconds']:.1f}x "
            f"faster (target >= {SPEEDUP_OLD:.0f}x; AUC not compared)"
        )
    return lines or ["no other side measured: targets (a) and (b) not checked"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.table_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sides",
        default=None,
        help=f"comma-separated, from {', '.join(SIDES)} (default: fintune,trainer; with --large: "
        "fintune)",
    )
    parser.add_argument(
        "--with-old",
        action="store_true",
        help="add the first version's default (row_text, freeze_depth 0, no trees; ~450 s+)",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help=f"target (c): the synthetic {LARGE_ROWS:,}-row, 24-column table instead",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per side; medians reported")
    parser.add_argument("--json", type=Path, default=None, help="save every run and the summary")
    parser.add_argument(
        "--max-rows", type=int, default=None, help="stratified sample of the table (smoke runs)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="every side's epochs (smoke runs; default: each's)"
    )
    parser.add_argument("--backbone", default=None, help="every side's backbone (default: core's)")
    parser.add_argument("--trainer-epochs", type=int, default=None)
    parser.add_argument("--trainer-batch-size", type=int, default=None)
    parser.add_argument("--trainer-lr", type=float, default=None)
    parser.add_argument(
        "--trainer-max-length",
        default=None,
        help="auto (95th percentile of training token lengths, capped at 256) or a number",
    )
    # Internal: one side in this (fresh) process.
    parser.add_argument("--side", choices=list(SIDES), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--splits-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--dataset", choices=("credit", "large"), default=None, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    from core.config import DEFAULT_BACKBONE

    args.backbone = args.backbone or DEFAULT_BACKBONE
    args.dataset = args.dataset or ("large" if args.large else "credit")
    if args.trainer_max_length not in (None, "auto"):
        if not str(args.trainer_max_length).isdigit():
            parser.error("--trainer-max-length: use auto or a number of tokens")
        args.trainer_max_length = int(args.trainer_max_length)
    if args.repeats < 1:
        parser.error("--repeats: use 1 or more")
    if args.max_rows is not None and args.max_rows < 50:
        parser.error("--max-rows: use 50 or more rows")
    if args.side is not None and args.splits_file is None:
        parser.error("--side needs --splits-file")
    if args.sides is None:
        sides = ["fintune"] if args.large else ["fintune", "trainer"]
        if args.with_old:
            sides.append("first-version")
    else:
        sides = [s.strip() for s in args.sides.split(",") if s.strip()]
        unknown = [s for s in sides if s not in SIDES]
        if unknown or not sides:
            parser.error(f"--sides: unknown {unknown or '(none)'}; use {', '.join(SIDES)}")
        if args.with_old and "first-version" not in sides:
            sides.append("first-version")
    args.side_list = list(dict.fromkeys(sides))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side is not None:
        result = run_side(args)
        print(RESULT_MARK + json.dumps(result, default=str), flush=True)
        return

    frame = load_frame(args.dataset, args.max_rows)
    target = dataset_target(args.dataset)
    splits = make_splits(frame, target)
    smoke = args.max_rows is not None or args.epochs is not None
    sizes = {name: len(rows) for name, rows in splits.items()}
    print(
        f"{args.dataset}: {len(frame):,} rows x {frame.shape[1]} columns (target {target!r}); "
        f"split {sizes}; sides {', '.join(args.side_list)}; {args.repeats} repeat(s); "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    runs: dict[str, list[dict]] = {side: [] for side in args.side_list}
    with tempfile.TemporaryDirectory(prefix="fintune-table-speed-") as folder:
        splits_file = Path(folder) / "splits.json"
        splits_file.write_text(json.dumps({"n_rows": len(frame), "splits": splits}))
        for repeat in range(args.repeats):
            for side in args.side_list:  # interleaved, so machine noise spreads over all sides
                print(f"-- {SIDES[side]} (repeat {repeat + 1}/{args.repeats})", flush=True)
                seconds, result = spawn_side(child_command(args, side, splits_file), side)
                result["seconds"] = seconds
                runs[side].append(result)
                print(
                    f"   {seconds:.1f} s whole process, test ROC AUC "
                    f"{_number(result['test_auc'], 4)}",
                    flush=True,
                )
    rows = summarise(runs)
    checks = check_lines(rows, args.dataset, smoke=smoke)
    print()
    print(format_table(rows))
    print()
    print(format_settings(rows))
    print()
    print("\n".join(checks))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "rows": len(frame),
                    "columns": frame.shape[1],
                    "split": sizes,
                    "smoke": smoke,
                    "summary": rows,
                    "checks": checks,
                    "runs": runs,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
