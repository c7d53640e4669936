"""The command line's words: ``fintune``'s parser, and the flag of each setting.

Core's messages name settings ("batch size"), as the dashboard shows them; on the command line
each setting is a flag, and :func:`with_flags` adds them to a message.
"""

from __future__ import annotations

import argparse
import re

from .config import DEFAULT_EXPLAIN_ROWS, DEFAULT_LORA_RANK

# Settings as core's messages name them, and their flags on this command line.
SETTING_FLAGS = {
    "batch size": "--batch-size",
    "learning rate": "--lr",
    "max length": "--max-length",
    "freeze depth": "--freeze",
    "threshold": "--threshold",
    "the device": "--device",
}


def _freeze_depth(text: str) -> int | str:
    """``--freeze``: a number of layers, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    if text.strip().isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a freeze depth: use auto or 0, 1, 2, ...")


def _epochs(text: str) -> int | str:
    """``--epochs``: a number, or ``auto`` (4; 30 when only the head trains)."""
    if text.strip().lower() == "auto":
        return "auto"
    if text.strip().isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a number of epochs: use auto or 1, 2, ...")


def with_flags(message: str) -> str:
    """``message`` with the command-line flags of the settings it names, e.g. ``--batch-size``."""
    flags = [
        flag
        for setting, flag in SETTING_FLAGS.items()
        if re.search(rf"\b{setting}\b", message, re.IGNORECASE)
    ]
    return f"{message} (command line: {', '.join(flags)})" if flags else message


def parser() -> argparse.ArgumentParser:
    """``fintune``'s parser: one sub-command per task, its options with their help."""
    root = argparse.ArgumentParser(
        prog="fintune", description="Fine-tune pretrained encoders on financial data."
    )
    sub = root.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune on a CSV or Parquet file")
    train.add_argument("data", help="CSV or Parquet file")
    train.add_argument("--target", required=True, help="column to predict")
    train.add_argument("--backbone", default=None, help="registry name, local folder or Hub id")
    train.add_argument(
        "--freeze",
        type=_freeze_depth,
        default=None,
        help="freeze embeddings + bottom N layers, or auto (the default: the whole backbone on "
        "tables, none on text-only data)",
    )
    train.add_argument(
        "--epochs",
        type=_epochs,
        default=None,
        help="epochs at most (early stopping), or auto (the default: 4; 30 when only the head "
        "trains)",
    )
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None, help="backbone learning rate")
    train.add_argument(
        "--max-length", type=int, default=None, help="tokens per row (default: automatic)"
    )
    train.add_argument(
        "--dropout", type=float, default=None, help="dropout in the fusion head (default 0.1)"
    )
    train.add_argument(
        "--table-encoding",
        choices=("auto", "cells", "row_text"),
        default=None,
        help="cells (auto): each categorical value encoded once, numbers embedded per column; "
        "row_text: each whole row read as one text",
    )
    train.add_argument(
        "--trees",
        choices=("auto", "off"),
        default=None,
        help="auto: blend LightGBM with the network when it helps on validation rows",
    )
    train.add_argument(
        "--lora-rank",
        type=int,
        default=None,
        help="train LoRA adapters of this rank (e.g. 8) instead of the backbone's weights",
    )
    train.add_argument(
        "--lora-alpha", type=float, default=None, help="LoRA scale alpha (default: 2 x rank)"
    )
    train.add_argument(
        "--lora-dropout",
        type=float,
        default=None,
        help="dropout on the adapters' input (default 0.05)",
    )
    train.add_argument(
        "--lora-targets",
        default=None,
        help="comma-separated linear layers for "
        "adapters, e.g. query,value (default: all in each block)",
    )
    train.add_argument(
        "--split",
        default=None,
        help="auto (default: by time when there is a date column) | random | time:COLUMN",
    )
    train.add_argument(
        "--embargo",
        type=int,
        default=None,
        help="time split: leave out N dates between train, validation and test",
    )
    train.add_argument(
        "--positive-class",
        default=None,
        help="binary: the event class scored by KS, lift and thresholds (default: the rarer)",
    )
    train.add_argument("--class-weights", choices=["auto", "balanced", "none"], default=None)
    train.add_argument(
        "--loss",
        choices=["cross_entropy", "focal"],
        default=None,
        help="classification loss (focal down-weights easy rows; for rare events)",
    )
    train.add_argument("--task", choices=["binary", "multiclass", "regression"], default=None)
    train.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="COLUMN=ROLE",
        help="override a column role (numeric, categorical, text, datetime, id, ignore)",
    )
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    train.add_argument("--precision", default=None, help="auto | fp32 | bf16 | fp16")
    train.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps")
    train.add_argument(
        "--compile", action="store_true", default=None, help="torch.compile the model"
    )
    train.add_argument(
        "--num-processes",
        type=int,
        default=None,
        help="train on N processes of this machine (one per GPU; gloo on CPU) under "
        "accelerate launch; --batch-size is then the global batch. Several "
        "machines: see docs/distributed.md",
    )
    train.add_argument("--runs-dir", default="runs")
    train.add_argument(
        "--mlflow",
        action="store_true",
        help="also log the run to MLflow: MLFLOW_TRACKING_URI when set, else ./mlruns",
    )

    sweep = sub.add_parser(
        "sweep",
        help="one run per freeze depth (all frozen to none) and LoRA; "
        "validation metric, trainable parameters, time and memory per setting",
    )
    sweep.add_argument("data", help="CSV or Parquet file")
    sweep.add_argument("--target", required=True, help="column to predict")
    sweep.add_argument("--backbone", default=None, help="registry name, local folder or Hub id")
    sweep.add_argument("--epochs", type=_epochs, default=None)
    sweep.add_argument("--batch-size", type=int, default=None)
    sweep.add_argument("--max-length", type=int, default=None)
    sweep.add_argument(
        "--max-steps", type=int, default=None, help="stop each run after N optimiser steps"
    )
    sweep.add_argument(
        "--lora-rank",
        type=int,
        default=DEFAULT_LORA_RANK,
        help=f"rank of the LoRA point (0: no LoRA point; default {DEFAULT_LORA_RANK})",
    )
    sweep.add_argument("--seed", type=int, default=None)
    sweep.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    sweep.add_argument("--runs-dir", default="runs")
    sweep.add_argument(
        "-o", "--output", default=None, help="also write the sweep table to this CSV"
    )

    predict = sub.add_parser("predict", help="score a new file with a finished run")
    predict.add_argument("run_dir")
    predict.add_argument("data")
    predict.add_argument("-o", "--output", required=True)
    predict.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="binary: flag rows whose positive-class probability is at least this "
        "(default: the run's saved threshold)",
    )
    predict.add_argument(
        "--no-reasons",
        dest="reasons",
        action="store_false",
        help="binary: leave out reason_1 .. reason_4, the inputs that pushed each declined row "
        "toward decline (they take seconds per thousand rows)",
    )

    threshold = sub.add_parser(
        "threshold", help="choose and save a binary run's decision threshold"
    )
    threshold.add_argument("run_dir")
    threshold.add_argument(
        "--cost-fp", type=float, default=1.0, help="cost of flagging a row wrongly"
    )
    threshold.add_argument(
        "--cost-fn", type=float, default=1.0, help="cost of missing a positive row"
    )
    threshold.add_argument(
        "--approval-rate",
        type=float,
        default=None,
        help="instead of costs: the share of rows to approve (not flag), e.g. 0.7",
    )
    threshold.add_argument(
        "--threshold", type=float, default=None, help="set the threshold by hand"
    )

    compare = sub.add_parser(
        "compare", help="compare finished runs on their test rows (first = reference)"
    )
    compare.add_argument("run_dirs", nargs="+")

    market = sub.add_parser(
        "market-features",
        help="derive lagged returns, volatility and a "
        "next-period target from a daily price table, without look-ahead",
    )
    market.add_argument("data")
    market.add_argument("-o", "--output", required=True)
    market.add_argument("--date", default=None, help="date column (default: guessed)")
    market.add_argument("--close", default=None, help="closing price column (default: guessed)")
    market.add_argument(
        "--volume", default=None, help="volume column (default: guessed when present)"
    )
    market.add_argument("--group", default=None, help="ticker column for several instruments")
    market.add_argument("--horizon", type=int, default=1, help="periods ahead the target looks")
    market.add_argument("--target", choices=["direction", "return"], default="direction")

    explain = sub.add_parser(
        "explain", help="SHAP values per input column for the first rows of a file"
    )
    explain.add_argument("run_dir")
    explain.add_argument("data")
    explain.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_EXPLAIN_ROWS,
        help=f"explain the first N rows (default {DEFAULT_EXPLAIN_ROWS})",
    )
    explain.add_argument(
        "--class",
        dest="label",
        default=None,
        help="class whose probability is explained (default: the last; binary: the positive)",
    )
    explain.add_argument(
        "--background",
        type=int,
        default=None,
        help="N random training rows as reference (default: 16 on tables read by cells, one "
        "summary row when rows are read as text; slower with more)",
    )
    explain.add_argument("-o", "--output", required=True)

    whatif = sub.add_parser(
        "whatif",
        help="one row's probability and decision, with cells edited at will, and the smallest "
        "changes to actionable columns that would flip a binary run's decision",
    )
    whatif.add_argument("run_dir")
    whatif.add_argument("--data", required=True, help="CSV or Parquet file holding the row")
    whatif.add_argument(
        "--row", type=int, required=True, help="the row's position in the file (0: the first)"
    )
    whatif.add_argument(
        "--actionable",
        action="append",
        default=None,
        metavar="COLUMN",
        help="a column the search may change (repeat for several; numeric or categorical)",
    )
    whatif.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="COLUMN=VALUE",
        help="edit a cell of the row first (repeat for several)",
    )
    whatif.add_argument(
        "--max-changes", type=int, default=2, help="columns changed at once, 1-3 (default 2)"
    )
    whatif.add_argument(
        "--results", type=int, default=5, help="changes to list at most (default 5)"
    )

    export = sub.add_parser(
        "export", help="write a finished run's model as a self-contained folder"
    )
    export.add_argument("run_dir")
    export.add_argument("-o", "--output", required=True, help="a new or empty folder")
    export.add_argument(
        "--onnx", action="store_true", help="also write model.onnx (any batch size and length)"
    )

    from .review.report import DEFAULT_SHAP_ROWS  # standard library only: cheap to import here

    report = sub.add_parser(
        "report", help="write a self-contained HTML model-risk report of a finished run"
    )
    report.add_argument("run_dir")
    report.add_argument(
        "-o", "--output", default=None, help="HTML file to write (default: RUN_DIR/report.html)"
    )
    report.add_argument(
        "--shap-rows",
        type=int,
        default=DEFAULT_SHAP_ROWS,
        help="SHAP attributions on the first N test rows; 0 skips them "
        f"(default {DEFAULT_SHAP_ROWS})",
    )

    fairness = sub.add_parser(
        "fairness",
        help="a finished binary run's approvals, error rates and calibration per group, with "
        "intervals, and the disparities between groups (four-fifths rule)",
    )
    fairness.add_argument("run_dir")
    fairness.add_argument(
        "--by",
        action="append",
        default=None,
        metavar="COLUMN",
        help="a column to group by (repeat for several; each is read on its own; default: the "
        "model inputs that look like protected attributes)",
    )
    fairness.add_argument(
        "--rows",
        choices=["test", "held_out"],
        default="test",
        help="test rows (default), or held_out: test and validation rows (narrower intervals)",
    )
    fairness.add_argument(
        "--bands", type=int, default=4, help="cut number columns in N quantile bands (default 4)"
    )
    fairness.add_argument(
        "-o", "--output", default=None, help="also write the per-group table to this CSV file"
    )

    listing = sub.add_parser("runs", help="list runs")
    listing.add_argument("--runs-dir", default="runs")

    dashboard = sub.add_parser("dashboard", help="start the web dashboard")
    dashboard.add_argument("--port", type=int, default=8501)
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: local only)"
    )
    dashboard.add_argument("--runs-dir", default="runs")

    serve = sub.add_parser(
        "serve", help="a REST scoring service for a finished run (/predict, /explain, /docs)"
    )
    serve.add_argument("run_dir")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: local only; any other needs FINTUNE_API_TOKEN)",
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        help="seconds a request may take before a 503 (default 60, or FINTUNE_REQUEST_TIMEOUT)",
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the inference thread (default: CPUs - 1, at least 1)",
    )
    return root
