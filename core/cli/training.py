"""``fintune train`` and ``fintune sweep``: the run's config from the options, training in this
process, on several local processes or as one rank under a launcher, and what the terminal is
told while it runs and when it ends.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..arguments import with_flags
from ..errors import ConfigError
from ..stats.metrics import format_interval, headline_metric


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
    from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig

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

    from ..training.events import EpochEvent, PhaseEvent, StepEvent, parse_event

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
    from ..runs.rank import join_launched_run

    rank = join_launched_run(args.data, args.runs_dir, config)
    if not rank.is_main:
        return {"succeeded": 0, "cancelled": 0}.get(rank.execute(), 1)
    bar, on_progress = _progress_bar()
    state = rank.execute(on_progress)
    bar.close()
    return _report_train(rank.run_dir, state)


def _report_train(run_dir: Path, state: str) -> int:
    from ..runs.folder import read_metrics
    from ..runs.status import read_status

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
    from ..data.read import read_table
    from ..data.schema import describe_table
    from ..runs.folder import create_run
    from ..runs.process import follow_worker
    from ..runs.status import write_status
    from ..runs.worker import execute
    from ..training.distributed import launched_world_size

    config = build_config(args)
    if args.mlflow:
        from ..runs.tracking import SWITCH_ENV

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

    from ..config import default_config
    from ..data.read import read_table
    from ..data.schema import describe_table
    from ..model.backbones import check_max_length, describe_backbone
    from ..runs.jobs import JobManager
    from ..runs.status import FINAL_STATES
    from ..runs.sweep import start_sweep, summary_lines, sweep_results

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
