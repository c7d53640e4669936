"""``fintune``: train (on one process or several), sweep freeze depths, predict, explain, choose
thresholds, compare runs, derive market features, serve a run over HTTP, write a model report,
export a run (ONNX too), list runs, start the dashboard.

A parser and thin commands over ``core``: runs are created, followed and supervised by
:mod:`core.runs`. Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 anything
else.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from .access import configured_password, is_loopback
from .arguments import parser, with_flags
from .errors import BackboneError, ConfigError, DataError, FinTuneError, RunError
from .stats.metrics import format_interval, headline_metric

BAD_INPUT = (DataError, ConfigError, BackboneError, RunError)


def _parse_roles(pairs: list[str]) -> dict[str, str]:
    roles = {}
    for pair in pairs:
        column, sep, role = pair.rpartition("=")
        if not sep or not column:
            raise ConfigError(
                f"--role {pair!r} is not COLUMN=ROLE: write e.g. --role merchant=text."
            )
        roles[column] = role
    return roles


def _given(**values) -> dict:
    """The options the user gave (argparse leaves the others None: the config's defaults apply)."""
    return {k: v for k, v in values.items() if v is not None}


def build_config(args: argparse.Namespace):
    """The run's config from the ``train`` command's options (defaults for those not given)."""
    from .config import DataConfig, ModelConfig, RunConfig, TrainConfig

    model = _given(
        backbone=args.backbone,
        freeze_depth=args.freeze,
        max_length=args.max_length,
        dropout=args.dropout,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_targets=args.lora_targets,
        table_encoding=args.table_encoding,
        trees=args.trees,
    )
    train = _given(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        max_steps=args.max_steps,
        compile=args.compile,
        class_weights=args.class_weights,
        loss=args.loss,
        num_processes=args.num_processes,
    )
    data = DataConfig(
        target=args.target,
        roles=_parse_roles(args.role),
        task=args.task,
        **_given(split=args.split, embargo=args.embargo, positive_class=args.positive_class),
    )
    return RunConfig(data=data, model=ModelConfig(**model), train=TrainConfig(**train))


def _progress_bar():
    """A tqdm bar fed by run events: phases, steps (with loss and rate) and epoch summaries."""
    from tqdm import tqdm

    from .training.events import EpochEvent, PhaseEvent, StepEvent, parse_event

    bar = tqdm(total=0, unit="step", file=sys.stderr, dynamic_ncols=True, desc="preparing")

    def on_progress(raw: dict) -> None:
        event = parse_event(raw)
        if isinstance(event, PhaseEvent):
            bar.set_description(event.phase[:40])
        elif isinstance(event, StepEvent):
            if bar.total != event.total_steps:
                bar.reset(total=event.total_steps)
            bar.set_description(f"epoch {event.epoch}", refresh=False)
            bar.update(event.step - bar.n)
            processes = f" x{event.processes}" if event.processes else ""
            bar.set_postfix(
                loss=f"{event.loss:.4f}", rate=f"{event.samples_per_s:.0f}/s{processes}"
            )
        elif isinstance(event, EpochEvent):
            metric = headline_metric("regression" if "rmse" in event.val else None)
            value = event.val.get(metric)
            bar.write(
                f"epoch {event.epoch}: train loss {event.train_loss:.4f}, val {metric} "
                f"{value if value is None else round(value, 4)}"
            )

    return bar, on_progress


def _train_as_launched_rank(args: argparse.Namespace, config) -> int:
    """``accelerate launch -m core.cli train ...``: every process runs this; rank 0 reports."""
    from .runs.rank import join_launched_run

    rank = join_launched_run(args.data, args.runs_dir, config)
    if not rank.is_main:
        return {"succeeded": 0, "cancelled": 0}.get(rank.execute(), 1)
    bar, on_progress = _progress_bar()
    state = rank.execute(on_progress)
    bar.close()
    return _report_train(rank.run_dir, state)


def _report_train(run_dir: Path, state: str) -> int:
    from .runs.folder import read_metrics
    from .runs.status import read_status

    status = read_status(run_dir)
    if state != "succeeded":
        print(f"error: {with_flags(status.get('message', state))}", file=sys.stderr)
        print(run_dir)
        return 2 if status.get("kind") in ("data_error", "backbone_error") else 1
    for line in summary_lines(read_metrics(run_dir)):
        print(line, file=sys.stderr)
    print(run_dir)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run: in this process, on N local processes, or as one rank under a launcher."""
    from .data.read import read_table
    from .data.schema import describe_table
    from .runs.folder import create_run
    from .runs.process import follow_worker
    from .runs.status import write_status
    from .runs.worker import execute
    from .training.distributed import launched_world_size

    config = build_config(args)
    if args.mlflow:
        from .runs.tracking import SWITCH_ENV

        os.environ[SWITCH_ENV] = "1"  # read by core.tracking here and in launched workers
    if launched_world_size() > 1:
        return _train_as_launched_rank(args, config)
    frame = read_table(args.data)
    describe_table(frame, config.data)  # bad input fails here, before a run folder exists
    run_dir = create_run(args.runs_dir, config, frame, source=args.data)
    bar, on_progress = _progress_bar()
    if config.train.num_processes > 1:
        state = follow_worker(run_dir, config.train.num_processes, on_progress)
        bar.close()
        return _report_train(run_dir, state)
    try:
        state = execute(run_dir, on_progress=on_progress)
    except KeyboardInterrupt:
        write_status(run_dir, "cancelled", message="Interrupted from the keyboard.")
        bar.close()
        print(f"cancelled: {run_dir}", file=sys.stderr)
        return 1
    bar.close()
    return _report_train(run_dir, state)


def cmd_sweep(args: argparse.Namespace) -> int:
    """One run per freeze depth (and LoRA), queued on a job manager and followed to the end."""
    import time

    from tqdm import tqdm

    from .config import default_config
    from .data.read import read_table
    from .data.schema import describe_table
    from .model.backbones import check_max_length, describe_backbone
    from .runs.jobs import JobManager
    from .runs.status import FINAL_STATES
    from .runs.sweep import start_sweep, summary_lines, sweep_results

    base = default_config(args.target).replace(
        model=_given(backbone=args.backbone, max_length=args.max_length),
        train=_given(
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_steps=args.max_steps,
            seed=args.seed,
            device=args.device,
        ),
    )
    frame = read_table(args.data)
    describe_table(frame, base.data)
    n_layers = describe_backbone(base.model.backbone).n_layers
    check_max_length(base.model.backbone, base.model.max_length)  # before any run or worker starts
    jobs = JobManager(args.runs_dir)
    try:
        sweep = start_sweep(jobs, base, frame, n_layers, source=args.data, lora_rank=args.lora_rank)
        print(
            f"sweep {sweep.sweep_id}: {len(sweep.points)} runs queued in {args.runs_dir}",
            file=sys.stderr,
        )
        with tqdm(total=len(sweep.points), unit="run", file=sys.stderr, desc="sweep") as bar:
            while True:
                table = sweep_results(args.runs_dir, sweep)
                finished = int(table["state"].isin(FINAL_STATES).sum())
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
    """What a finished run tells the terminal: test metrics with 95% intervals, baselines,
    warnings."""
    lines = [
        f"split: {metrics.get('split', '?')}; test rows: {metrics.get('rows', {}).get('test', '?')}"
    ]
    intervals = metrics.get("test_intervals", {})
    lines += [
        f"test {name}: {format_interval(value, intervals.get(name), missing='n/a')}"
        for name, value in metrics.get("test", {}).items()
        if isinstance(value, (int, float))
    ]
    headline = headline_metric(metrics.get("task"))
    for name, entry in metrics.get("baselines", {}).items():
        if isinstance(entry, dict) and entry.get("test"):
            interval = entry.get("test_intervals", {}).get(headline)
            shown = format_interval(entry["test"].get(headline), interval, missing="n/a")
            lines.append(f"baseline {name}: test {headline} {shown}")
    if "at_threshold" in metrics:
        at = {k: ("n/a" if v is None else f"{v:.3f}") for k, v in metrics["at_threshold"].items()}
        lines.append(
            f"threshold {at['threshold']} ({metrics['decision']['method']}, positive "
            f"{metrics['positive_class']!r}): precision {at['precision']}, recall "
            f"{at['recall']}, approval rate {at['approval_rate']}"
        )
    lines += [f"warning: {w['message']}" for w in metrics.get("warnings", [])]
    return lines


def cmd_predict(args: argparse.Namespace) -> int:
    """Score a file with a finished run; warn about inputs that drifted since training."""
    from .data.read import read_table
    from .serving.predict import drift_report, score_file
    from .serving.safe_csv import to_safe_csv

    frame = read_table(args.data)
    predictions, warnings = score_file(args.run_dir, frame, threshold=args.threshold)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    Path(args.output).write_bytes(to_safe_csv(predictions))
    print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    drift = drift_report(args.run_dir, frame, predictions)
    for row in drift[drift["level"] != "stable"].itertuples():
        print(
            f"warning: {row.input!r} has shifted since training (PSI {row.psi:.3f}, {row.level})",
            file=sys.stderr,
        )
    return 0


def cmd_threshold(args: argparse.Namespace) -> int:
    """Choose a binary run's threshold on its validation rows, save it, report it on test rows."""
    from .review.compare import spec_from_metrics
    from .runs import folder as runs
    from .stats.thresholds import choose_threshold, outcome_at, table_scores

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
    from .review.compare import compare_runs

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


def cmd_market_features(args: argparse.Namespace) -> int:
    """Derive market features and a next-period target from a daily price table."""
    from .data.market import derive_market_features, market_columns
    from .data.read import read_table
    from .serving.safe_csv import to_safe_csv

    frame = read_table(args.data)
    guessed = market_columns(frame) or {}
    date, close = args.date or guessed.get("date"), args.close or guessed.get("close")
    if not date or not close:
        raise ConfigError(
            "No date and closing-price columns found: name them with --date and --close."
        )
    derived = derive_market_features(
        frame,
        date=date,
        close=close,
        volume=args.volume or guessed.get("volume"),
        group=args.group,
        horizon=args.horizon,
        target=args.target,
    )
    Path(args.output).write_bytes(to_safe_csv(derived))
    target = f"next_{args.horizon}d_{args.target}"
    print(
        f"wrote {len(derived)} rows to {args.output}; train with --target {target} (the split "
        f"defaults to chronological by {date!r}; add --embargo {args.horizon})",
        file=sys.stderr,
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """SHAP values per input column for the first rows of a file."""
    from tqdm import tqdm

    from .data.read import read_table
    from .explain.attributions import explain_rows, explanation_frame
    from .serving.safe_csv import to_safe_csv

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


def cmd_export(args: argparse.Namespace) -> int:
    """Write a finished run's model as a self-contained folder (ONNX too)."""
    import json

    from .serving.export import EXPORT_FILE, export_run

    out = export_run(args.run_dir, args.output, onnx=args.onnx)
    onnx = json.loads((out / EXPORT_FILE).read_text()).get("onnx")
    if onnx:
        print(
            f"model.onnx written by the {onnx['exporter']} exporter (opset {onnx['opset']})",
            file=sys.stderr,
        )
    print(out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write a finished run's model-risk report as one HTML file."""
    from .review.report import write_model_report

    path = write_model_report(
        args.run_dir,
        args.output,
        shap_rows=args.shap_rows,
        on_progress=lambda message: print(message, file=sys.stderr),
    )
    print(path)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """List the runs in a runs folder, damaged ones with why."""
    from .runs.files import DAMAGED_FIX
    from .runs.folder import list_runs
    from .runs.status import DAMAGED

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


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start the web dashboard (a password first when it is reachable from other machines)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, FINTUNE_RUNS_DIR=str(Path(args.runs_dir).resolve()))
    if not is_loopback(args.host):
        if configured_password(root) is None:
            raise ConfigError(
                f"--host {args.host} makes the app reachable from other machines: set a password "
                'first (password = "..." in .streamlit/secrets.toml, or FINTUNE_PASSWORD), or '
                "keep 127.0.0.1."
            )
        env["FINTUNE_REQUIRE_PASSWORD"] = "1"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(root / "dashboard" / "app.py"),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--server.enableXsrfProtection",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    print(f"FinTune dashboard: http://{args.host}:{args.port}", file=sys.stderr)
    # From the project root, so that .streamlit/config.toml (upload limit, theme) applies.
    server = subprocess.Popen(command, env=env, cwd=root)
    # Stopping this command stops the server (and with it the runs it started: they watch it).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: server.send_signal(number))
    while True:
        try:
            return server.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the server too; wait for it to finish
            continue


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a finished run over HTTP (a token first when reachable from other machines)."""
    try:
        import uvicorn

        from .serving.service import TOKEN_ENV, create_app
    except ImportError as exc:
        raise ConfigError(
            f"fintune serve needs {exc.name or exc}: pip install fastapi uvicorn python-multipart."
        ) from exc

    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and token is None:
        raise ConfigError(
            f"--host {args.host} makes the service reachable from other machines: "
            f"set {TOKEN_ENV} first (clients then send 'Authorization: Bearer "
            "<token>'), or keep 127.0.0.1."
        )
    app = create_app(
        args.run_dir, token=token, request_timeout=args.request_timeout, threads=args.threads
    )  # loads the run now: a run without a model fails here
    print(
        f"FinTune scoring service: http://{args.host}:{args.port} (API docs at /docs)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, server_header=False, log_level="info")
    return 0


HANDLERS = {
    "train": cmd_train,
    "sweep": cmd_sweep,
    "predict": cmd_predict,
    "explain": cmd_explain,
    "runs": cmd_runs,
    "dashboard": cmd_dashboard,
    "threshold": cmd_threshold,
    "compare": cmd_compare,
    "market-features": cmd_market_features,
    "export": cmd_export,
    "serve": cmd_serve,
    "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command, return its exit code (2: bad input)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = HANDLERS[args.command](args)
    except BAD_INPUT as exc:
        print(f"error: {with_flags(str(exc))}", file=sys.stderr)
        code = 2
    except FinTuneError as exc:
        print(f"error: {with_flags(str(exc))}", file=sys.stderr)
        code = 1
    from .training.distributed import exit_rank

    return exit_rank(code)


if __name__ == "__main__":
    sys.exit(main())
