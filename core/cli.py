"""``fintune``: train (on one process or several), sweep freeze depths, predict, explain, choose
thresholds, compare runs, derive market features, serve a run over HTTP, write a model report,
export a run (ONNX too), list runs, start the dashboard.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from .access import configured_password, is_loopback
from .config import DEFAULT_EXPLAIN_ROWS, DEFAULT_LORA_RANK
from .errors import BackboneError, ConfigError, DataError, FinTuneError, RunError
from .stats.metrics import format_interval, headline_metric

BAD_INPUT = (DataError, ConfigError, BackboneError, RunError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fintune", description="Fine-tune pretrained encoders on financial data.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune on a CSV or Parquet file")
    train.add_argument("data", help="CSV or Parquet file")
    train.add_argument("--target", required=True, help="column to predict")
    train.add_argument("--backbone", default=None, help="registry name, local folder or Hub id")
    train.add_argument("--freeze", type=int, default=None, help="freeze embeddings + bottom N layers")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None, help="backbone learning rate")
    train.add_argument("--max-length", type=int, default=None, help="tokens per row (default: automatic)")
    train.add_argument("--dropout", type=float, default=None, help="dropout in the fusion head (default 0.1)")
    train.add_argument("--lora-rank", type=int, default=None,
                       help="train LoRA adapters of this rank (e.g. 8) instead of the backbone's weights")
    train.add_argument("--lora-alpha", type=float, default=None, help="LoRA scale alpha (default: 2 x rank)")
    train.add_argument("--lora-dropout", type=float, default=None, help="dropout on the adapters' input (default 0.05)")
    train.add_argument("--lora-targets", default=None,
                       help="comma-separated linear layers for adapters, e.g. query,value (default: all in each block)")
    train.add_argument("--split", default=None,
                       help="auto (default: by time when there is a date column) | random | time:COLUMN")
    train.add_argument("--embargo", type=int, default=None,
                       help="time split: leave out N dates between train, validation and test")
    train.add_argument("--positive-class", default=None,
                       help="binary: the event class scored by KS, lift and thresholds (default: the rarer)")
    train.add_argument("--class-weights", choices=["auto", "balanced", "none"], default=None)
    train.add_argument("--loss", choices=["cross_entropy", "focal"], default=None,
                       help="classification loss (focal down-weights easy rows; for rare events)")
    train.add_argument("--task", choices=["binary", "multiclass", "regression"], default=None)
    train.add_argument("--role", action="append", default=[], metavar="COLUMN=ROLE",
                       help="override a column role (numeric, categorical, text, datetime, id, ignore)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    train.add_argument("--precision", default=None, help="auto | fp32 | bf16 | fp16")
    train.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps")
    train.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    train.add_argument("--num-processes", type=int, default=None,
                       help="train on N processes of this machine (one per GPU; gloo on CPU) under accelerate "
                            "launch; --batch-size is then the global batch. Several machines: see docs/distributed.md")
    train.add_argument("--runs-dir", default="runs")
    train.add_argument("--mlflow", action="store_true",
                       help="also log the run to MLflow: MLFLOW_TRACKING_URI when set, else ./mlruns")

    sweep = sub.add_parser("sweep", help="one run per freeze depth (all frozen to none) and LoRA; "
                                         "validation metric, trainable parameters, time and memory per setting")
    sweep.add_argument("data", help="CSV or Parquet file")
    sweep.add_argument("--target", required=True, help="column to predict")
    sweep.add_argument("--backbone", default=None, help="registry name, local folder or Hub id")
    sweep.add_argument("--epochs", type=int, default=None)
    sweep.add_argument("--batch-size", type=int, default=None)
    sweep.add_argument("--max-length", type=int, default=None)
    sweep.add_argument("--max-steps", type=int, default=None, help="stop each run after N optimiser steps")
    sweep.add_argument("--lora-rank", type=int, default=DEFAULT_LORA_RANK,
                       help=f"rank of the LoRA point (0: no LoRA point; default {DEFAULT_LORA_RANK})")
    sweep.add_argument("--seed", type=int, default=None)
    sweep.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    sweep.add_argument("--runs-dir", default="runs")
    sweep.add_argument("-o", "--output", default=None, help="also write the sweep table to this CSV")

    predict = sub.add_parser("predict", help="score a new file with a finished run")
    predict.add_argument("run_dir")
    predict.add_argument("data")
    predict.add_argument("-o", "--output", required=True)
    predict.add_argument("--threshold", type=float, default=None,
                         help="binary: flag rows whose positive-class probability is at least this "
                              "(default: the run's saved threshold)")

    threshold = sub.add_parser("threshold", help="choose and save a binary run's decision threshold")
    threshold.add_argument("run_dir")
    threshold.add_argument("--cost-fp", type=float, default=1.0, help="cost of flagging a row wrongly")
    threshold.add_argument("--cost-fn", type=float, default=1.0, help="cost of missing a positive row")
    threshold.add_argument("--approval-rate", type=float, default=None,
                           help="instead of costs: the share of rows to approve (not flag), e.g. 0.7")
    threshold.add_argument("--threshold", type=float, default=None, help="set the threshold by hand")

    compare = sub.add_parser("compare", help="compare finished runs on their test rows (first = reference)")
    compare.add_argument("run_dirs", nargs="+")

    market = sub.add_parser("market-features", help="derive lagged returns, volatility and a next-period "
                                                    "target from a daily price table, without look-ahead")
    market.add_argument("data")
    market.add_argument("-o", "--output", required=True)
    market.add_argument("--date", default=None, help="date column (default: guessed)")
    market.add_argument("--close", default=None, help="closing price column (default: guessed)")
    market.add_argument("--volume", default=None, help="volume column (default: guessed when present)")
    market.add_argument("--group", default=None, help="ticker column for several instruments")
    market.add_argument("--horizon", type=int, default=1, help="periods ahead the target looks")
    market.add_argument("--target", choices=["direction", "return"], default="direction")

    explain = sub.add_parser("explain", help="SHAP values per input column for the first rows of a file")
    explain.add_argument("run_dir")
    explain.add_argument("data")
    explain.add_argument("--rows", type=int, default=DEFAULT_EXPLAIN_ROWS,
                         help=f"explain the first N rows (default {DEFAULT_EXPLAIN_ROWS})")
    explain.add_argument("--class", dest="label", default=None,
                         help="class whose probability is explained (default: the last; binary: the positive)")
    explain.add_argument("--background", type=int, default=None,
                         help="N random training rows as reference (default: one summary row; slower with more)")
    explain.add_argument("-o", "--output", required=True)

    export = sub.add_parser("export", help="write a finished run's model as a self-contained folder")
    export.add_argument("run_dir")
    export.add_argument("-o", "--output", required=True, help="a new or empty folder")
    export.add_argument("--onnx", action="store_true", help="also write model.onnx (any batch size and length)")

    from .review.report import DEFAULT_SHAP_ROWS  # standard library only: cheap to import here

    report = sub.add_parser("report", help="write a self-contained HTML model-risk report of a finished run")
    report.add_argument("run_dir")
    report.add_argument("-o", "--output", default=None, help="HTML file to write (default: RUN_DIR/report.html)")
    report.add_argument("--shap-rows", type=int, default=DEFAULT_SHAP_ROWS,
                        help=f"SHAP attributions on the first N test rows; 0 skips them (default {DEFAULT_SHAP_ROWS})")

    listing = sub.add_parser("runs", help="list runs")
    listing.add_argument("--runs-dir", default="runs")

    dashboard = sub.add_parser("dashboard", help="start the web dashboard")
    dashboard.add_argument("--port", type=int, default=8501)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    dashboard.add_argument("--runs-dir", default="runs")

    serve = sub.add_parser("serve", help="a REST scoring service for a finished run (/predict, /explain, /docs)")
    serve.add_argument("run_dir")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default: local only; any other needs FINTUNE_API_TOKEN)")
    serve.add_argument("--request-timeout", type=float, default=None,
                       help="seconds a request may take before a 503 (default 60, or FINTUNE_REQUEST_TIMEOUT)")
    serve.add_argument("--threads", type=int, default=None,
                       help="torch threads of the inference thread (default: CPUs - 1, at least 1)")
    return parser


def _parse_roles(pairs: list[str]) -> dict[str, str]:
    roles = {}
    for pair in pairs:
        column, sep, role = pair.rpartition("=")
        if not sep or not column:
            raise ConfigError(f"--role {pair!r} is not COLUMN=ROLE: write e.g. --role merchant=text.")
        roles[column] = role
    return roles


def _given(**values) -> dict:
    """The options the user gave (argparse leaves the others None, so the config's defaults apply)."""
    return {k: v for k, v in values.items() if v is not None}


def build_config(args: argparse.Namespace):
    from .config import DataConfig, ModelConfig, RunConfig, TrainConfig

    model = _given(backbone=args.backbone, freeze_depth=args.freeze, max_length=args.max_length, dropout=args.dropout,
                  lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                  lora_targets=args.lora_targets)
    train = _given(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  device=args.device, precision=args.precision, max_steps=args.max_steps, compile=args.compile,
                  class_weights=args.class_weights, loss=args.loss, num_processes=args.num_processes)
    data = DataConfig(target=args.target, roles=_parse_roles(args.role), task=args.task,
                      **_given(split=args.split, embargo=args.embargo, positive_class=args.positive_class))
    return RunConfig(data=data, model=ModelConfig(**model), train=TrainConfig(**train))


def _progress_bar():
    """A tqdm bar fed by run events: phases, steps (with loss and rate) and epoch summaries."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="step", file=sys.stderr, dynamic_ncols=True, desc="preparing")

    def on_progress(event: dict) -> None:
        if event["type"] == "phase":
            bar.set_description(event["phase"][:40])
        elif event["type"] == "step":
            if bar.total != event["total_steps"]:
                bar.reset(total=event["total_steps"])
            bar.set_description(f"epoch {event['epoch']}", refresh=False)
            bar.update(event["step"] - bar.n)
            processes = f" x{event['processes']}" if event.get("processes") else ""
            bar.set_postfix(loss=f"{event['loss']:.4f}", rate=f"{event['samples_per_s']:.0f}/s{processes}")
        elif event["type"] == "epoch":
            metric = headline_metric("regression" if "rmse" in event["val"] else None)
            value = event["val"].get(metric)
            bar.write(f"epoch {event['epoch']}: train loss {event['train_loss']:.4f}, val {metric} "
                      f"{value if value is None else round(value, 4)}")

    return bar, on_progress


def _follow_processes(run_dir: Path, num_processes: int, on_progress) -> str:
    """Train on N local processes under ``accelerate launch``, showing the run's events as they land."""
    import signal
    import time

    from .runs import folder as runs
    from .runs.jobs import CANCEL_GRACE_S, settle_exit, start_worker

    with open(run_dir / "worker.log", "ab") as log:
        process = start_worker(run_dir, num_processes, stdout=log)
    seen, cancelled = 0, False

    def relay() -> None:
        nonlocal seen
        events = runs.read_history(run_dir)
        for event in events[seen:]:
            on_progress(event)
        seen = len(events)

    try:
        while process.poll() is None:
            time.sleep(0.5)
            relay()
    except KeyboardInterrupt:
        cancelled = True
        os.killpg(process.pid, signal.SIGTERM)  # every rank stops at the same step
        try:
            process.wait(timeout=CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    relay()
    settle_exit(run_dir, process.returncode, cancelled=cancelled)
    return runs.read_status(run_dir).get("state", "failed")


def _train_as_launched_rank(args: argparse.Namespace, config) -> int:
    """``accelerate launch -m core.cli train ...``: every process runs this; rank 0 owns the run folder."""
    from .data.read import read_table
    from .data.schema import describe_table
    from .runs import folder as runs
    from .runs.worker import execute
    from .training.distributed import broadcast_text, current_cluster

    cluster = current_cluster(config.train.device)
    config = config.replace(train={"num_processes": cluster.world})
    frame = read_table(args.data)  # every node reads its own copy: the runs folder need not be shared
    describe_table(frame, config.data)
    run_dir = runs.create_run(args.runs_dir, config, frame, source=args.data) if cluster.is_main else None
    run_dir = Path(broadcast_text(cluster, str(run_dir) if run_dir else None))
    if not cluster.is_main:
        state = execute(run_dir, config=config, frame=frame)
        return {"succeeded": 0, "cancelled": 0}.get(state, 1)
    bar, on_progress = _progress_bar()
    state = execute(run_dir, on_progress=on_progress, config=config, frame=frame)
    bar.close()
    return _report_train(run_dir, state)


def _report_train(run_dir: Path, state: str) -> int:
    from .runs import folder as runs

    status = runs.read_status(run_dir)
    if state != "succeeded":
        print(f"error: {status.get('message', state)}", file=sys.stderr)
        print(run_dir)
        return 2 if status.get("kind") in ("data_error", "backbone_error") else 1
    for line in summary_lines(runs.read_metrics(run_dir)):
        print(line, file=sys.stderr)
    print(run_dir)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .data.read import read_table
    from .data.schema import describe_table
    from .runs import folder as runs
    from .runs.worker import execute
    from .training.distributed import launched_world_size

    config = build_config(args)
    if args.mlflow:
        from .runs.tracking import SWITCH_ENV

        os.environ[SWITCH_ENV] = "1"  # read by core.tracking in this process and in launched workers
    if launched_world_size() > 1:
        return _train_as_launched_rank(args, config)
    frame = read_table(args.data)
    describe_table(frame, config.data)  # bad input fails here, before a run folder exists
    run_dir = runs.create_run(args.runs_dir, config, frame, source=args.data)
    bar, on_progress = _progress_bar()
    if config.train.num_processes > 1:
        state = _follow_processes(run_dir, config.train.num_processes, on_progress)
        bar.close()
        return _report_train(run_dir, state)
    try:
        state = execute(run_dir, on_progress=on_progress)
    except KeyboardInterrupt:
        runs.write_status(run_dir, "cancelled", message="Interrupted from the keyboard.")
        bar.close()
        print(f"cancelled: {run_dir}", file=sys.stderr)
        return 1
    bar.close()
    return _report_train(run_dir, state)


def cmd_sweep(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from .config import default_config
    from .data.read import read_table
    from .data.schema import describe_table
    from .model.backbones import check_max_length, describe_backbone
    from .runs import folder as runs
    from .runs.jobs import JobManager
    from .runs.sweep import start_sweep, summary_lines, sweep_results

    base = default_config(args.target).replace(
        model=_given(backbone=args.backbone, max_length=args.max_length),
        train=_given(epochs=args.epochs, batch_size=args.batch_size, max_steps=args.max_steps, seed=args.seed,
                    device=args.device))
    frame = read_table(args.data)
    describe_table(frame, base.data)
    n_layers = describe_backbone(base.model.backbone).n_layers
    check_max_length(base.model.backbone, base.model.max_length)  # before any run or worker starts
    jobs = JobManager(args.runs_dir)
    try:
        sweep = start_sweep(jobs, base, frame, n_layers, source=args.data, lora_rank=args.lora_rank)
        print(f"sweep {sweep.sweep_id}: {len(sweep.points)} runs queued in {args.runs_dir}", file=sys.stderr)
        with tqdm(total=len(sweep.points), unit="run", file=sys.stderr, desc="sweep") as bar:
            while True:
                table = sweep_results(args.runs_dir, sweep)
                finished = int(table["state"].isin(runs.FINAL_STATES).sum())
                running = table[table["state"] == "running"]["label"].tolist()
                bar.set_postfix_str(f"running: {running[0]}" if running else "")
                bar.update(finished - bar.n)
                if finished == len(sweep.points):
                    break
                time.sleep(1.0)
    except KeyboardInterrupt:
        jobs.shutdown()
        print("sweep cancelled", file=sys.stderr)
        return 1
    finally:
        jobs.shutdown()
    for line in summary_lines(table):
        print(line, file=sys.stderr)
    failed = table[table["state"] != "succeeded"]
    for row in failed.itertuples():
        print(f"{row.label}: {row.state}: {row.message}", file=sys.stderr)
    if args.output:
        table.to_csv(args.output, index=False)
    print(Path(args.runs_dir) / "sweeps" / f"{sweep.sweep_id}.json")
    return 0 if failed.empty else 1


def summary_lines(metrics: dict) -> list[str]:
    """What a finished run tells the terminal: test metrics with 95% intervals, baselines, warnings."""
    lines = [f"split: {metrics.get('split', '?')}; test rows: {metrics.get('rows', {}).get('test', '?')}"]
    intervals = metrics.get("test_intervals", {})
    lines += [f"test {name}: {format_interval(value, intervals.get(name), missing='n/a')}"
              for name, value in metrics.get("test", {}).items() if isinstance(value, (int, float))]
    headline = headline_metric(metrics.get("task"))
    for name, entry in metrics.get("baselines", {}).items():
        if isinstance(entry, dict) and entry.get("test"):
            lines.append(f"baseline {name}: test {headline} "
                         f"{format_interval(entry['test'].get(headline), entry.get('test_intervals', {}).get(headline), missing='n/a')}")
    if "at_threshold" in metrics:
        at = {k: ("n/a" if v is None else f"{v:.3f}") for k, v in metrics["at_threshold"].items()}
        lines.append(f"threshold {at['threshold']} ({metrics['decision']['method']}, positive "
                     f"{metrics['positive_class']!r}): precision {at['precision']}, recall {at['recall']}, "
                     f"approval rate {at['approval_rate']}")
    lines += [f"warning: {w['message']}" for w in metrics.get("warnings", [])]
    return lines


def cmd_predict(args: argparse.Namespace) -> int:
    from .data.read import read_table
    from .serving.predict import score_file

    frame = read_table(args.data)
    predictions, warnings = score_file(args.run_dir, frame, threshold=args.threshold)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from .serving.predict import drift_report
    from .serving.safe_csv import to_safe_csv

    Path(args.output).write_bytes(to_safe_csv(predictions))
    print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    drift = drift_report(args.run_dir, frame, predictions)
    for row in drift[drift["level"] != "stable"].itertuples():
        print(f"warning: {row.input!r} has shifted since training (PSI {row.psi:.3f}, {row.level})", file=sys.stderr)
    return 0


def cmd_threshold(args: argparse.Namespace) -> int:
    from .review.compare import spec_from_metrics
    from .runs import folder as runs
    from .stats.thresholds import choose_threshold, outcome_at, table_scores

    run_dir = Path(args.run_dir)
    metrics = runs.read_metrics(run_dir)
    if metrics.get("task") != "binary":
        raise RunError(f"Run {run_dir.name} is not a finished binary run: thresholds are for yes/no targets.")
    target = runs.load_config(run_dir).data.target
    spec = spec_from_metrics(metrics, target)

    def scores(table):
        return table_scores(table, target, spec.positive_class)

    decision = choose_threshold(*scores(runs.read_val_predictions(run_dir)), spec.positive_class, cost_fp=args.cost_fp,
                      cost_fn=args.cost_fn, approval_rate=args.approval_rate, threshold=args.threshold)
    runs.write_decision(run_dir, decision)
    test = outcome_at(*scores(runs.read_predictions(run_dir)), decision)
    share = {k: "n/a" if v != v else f"{v:.3f}" for k, v in test.items() if isinstance(v, float)}  # v != v: NaN
    print(f"threshold {decision.threshold:.4f} ({decision.method}, chosen on validation rows); on test rows: "
          f"TP {test['tp']}, FP {test['fp']}, FN {test['fn']}, TN {test['tn']}, precision {share['precision']}, "
          f"recall {share['recall']}, approval rate {share['approval_rate']}, "
          f"cost per row {share['cost_per_row']}", file=sys.stderr)
    print(run_dir / "decision.json")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .review.compare import compare_runs

    result = compare_runs(args.run_dirs)
    print(result.metrics.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if result.note:
        print(result.note, file=sys.stderr)
    if not result.differences.empty:
        print(f"\ndifferences against {result.models[0]} (paired bootstrap, 95% interval):")
        print(result.differences.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if not result.delong.empty:
        print("\nDeLong test of ROC AUC differences:")
        print(result.delong.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if not result.config.empty:
        print("\nsettings that differ:")
        print(result.config.to_string(index=False))
    return 0


def cmd_market_features(args: argparse.Namespace) -> int:
    from .data.market import derive_market_features, market_columns
    from .data.read import read_table
    from .serving.safe_csv import to_safe_csv

    frame = read_table(args.data)
    guessed = market_columns(frame) or {}
    date, close = args.date or guessed.get("date"), args.close or guessed.get("close")
    if not date or not close:
        raise ConfigError("No date and closing-price columns found: name them with --date and --close.")
    derived = derive_market_features(frame, date=date, close=close, volume=args.volume or guessed.get("volume"),
                                     group=args.group, horizon=args.horizon, target=args.target)
    Path(args.output).write_bytes(to_safe_csv(derived))
    target = f"next_{args.horizon}d_{args.target}"
    print(f"wrote {len(derived)} rows to {args.output}; train with --target {target} "
          f"(the split defaults to chronological by {date!r}; add --embargo {args.horizon})", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .data.read import read_table
    from .explain.attributions import explain_rows, explanation_frame
    from .serving.safe_csv import to_safe_csv

    if args.rows < 1:
        raise ConfigError(f"--rows {args.rows}: explain at least 1 row.")
    rows = read_table(args.data).head(args.rows)
    with tqdm(total=len(rows), unit="row", file=sys.stderr, dynamic_ncols=True, desc="explaining") as bar:
        explanation = explain_rows(args.run_dir, rows, background=args.background, class_index=args.label,
                                   on_progress=lambda fraction: bar.update(round(fraction * len(rows)) - bar.n))
    Path(args.output).write_bytes(to_safe_csv(explanation_frame(explanation)))
    stats = explanation.stats
    print(f"wrote SHAP values of {len(rows)} rows ({explanation.output_names}) to {args.output} in "
          f"{stats.seconds:.1f} s, {stats.backbone_passes} backbone passes", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from .serving.export import EXPORT_FILE, export_run

    out = export_run(args.run_dir, args.output, onnx=args.onnx)
    onnx = json.loads((out / EXPORT_FILE).read_text()).get("onnx")
    if onnx:
        print(f"model.onnx written by the {onnx['exporter']} exporter (opset {onnx['opset']})", file=sys.stderr)
    print(out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .review.report import write_model_report

    path = write_model_report(args.run_dir, args.output, shap_rows=args.shap_rows,
                              on_progress=lambda message: print(message, file=sys.stderr))
    print(path)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runs.folder import DAMAGED, DAMAGED_FIX, list_runs

    summaries = list_runs(args.runs_dir)
    if not summaries:
        print(f"no runs in {args.runs_dir}", file=sys.stderr)
        return 0
    for s in summaries:
        if s.state == DAMAGED:  # what could be read, then why it is damaged
            print(f"{s.run_id}  {s.state:<11} {s.target:<20} {s.backbone:<24} {s.message}")
            continue
        metric = f"{s.test_metric}={s.test_value:.4f}" if s.test_value is not None else ""
        print(f"{s.run_id}  {s.state:<11} {s.target:<20} {s.backbone:<24} {s.tuning:<16} {metric}")
    damaged = sum(s.state == DAMAGED for s in summaries)
    if damaged:
        plural = "s" if damaged > 1 else ""
        print(f"{damaged} damaged run folder{plural}: {DAMAGED_FIX}", file=sys.stderr)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, FINTUNE_RUNS_DIR=str(Path(args.runs_dir).resolve()))
    if not is_loopback(args.host):
        if configured_password(root) is None:
            raise ConfigError(
                f"--host {args.host} makes the app reachable from other machines: set a password first "
                "(password = \"...\" in .streamlit/secrets.toml, or FINTUNE_PASSWORD), or keep 127.0.0.1."
            )
        env["FINTUNE_REQUIRE_PASSWORD"] = "1"
    command = [sys.executable, "-m", "streamlit", "run", str(root / "dashboard" / "app.py"),
               "--server.address", args.host, "--server.port", str(args.port),
               "--server.enableXsrfProtection", "true", "--browser.gatherUsageStats", "false"]
    print(f"FinTune dashboard: http://{args.host}:{args.port}", file=sys.stderr)
    # From the project root, so that .streamlit/config.toml (upload limit, theme) applies.
    return subprocess.call(command, env=env, cwd=root)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .serving.service import TOKEN_ENV, create_app
    except ImportError as exc:
        raise ConfigError(f"fintune serve needs {exc.name or exc}: pip install fastapi uvicorn python-multipart.") from exc

    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and token is None:
        raise ConfigError(f"--host {args.host} makes the service reachable from other machines: set {TOKEN_ENV} "
                          "first (clients then send 'Authorization: Bearer <token>'), or keep 127.0.0.1.")
    app = create_app(args.run_dir, token=token, request_timeout=args.request_timeout,
                     threads=args.threads)  # loads the run now: a run without a model fails here
    print(f"FinTune scoring service: http://{args.host}:{args.port} (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, server_header=False, log_level="info")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handlers = {"train": cmd_train, "sweep": cmd_sweep, "predict": cmd_predict, "explain": cmd_explain, "runs": cmd_runs,
                "dashboard": cmd_dashboard, "threshold": cmd_threshold, "compare": cmd_compare,
                "market-features": cmd_market_features, "export": cmd_export, "serve": cmd_serve,
                "report": cmd_report}
    try:
        code = handlers[args.command](args)
    except BAD_INPUT as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except FinTuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    from .training.distributed import launched_world_size

    if code and launched_world_size() > 1:
        # A failed rank under a launcher: peers may sit in a collective, and an ordinary interpreter exit
        # can hang tearing down the process group. Leave now; the launcher ends the rest.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
