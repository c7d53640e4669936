"""The run folder is the contract: everything about a run is written here and read from here.

Layout: ``config.json``, ``status.json`` and ``heartbeat`` (:mod:`.status`), ``history.jsonl``,
``data.parquet`` (the input table), ``split.json``, ``metrics.json``, ``predictions.csv`` (test
rows), ``val_predictions.csv``, ``decision.json`` (binary: the threshold), ``stability.json``,
``baselines/<name>.csv`` (test outputs of each baseline), ``model/``, and while training
``checkpoint/`` (:mod:`.checkpoint`). Only the runs room writes run folders; every write of a
whole file is atomic (:mod:`.files`), so a reader never sees half a file.

Reading is defensive: each file has one reader that checks what it reads and returns typed values
or raises :class:`DamagedRunError` naming the file and the problem. A folder that fails them is
listed as ``damaged`` with that reason; it never hides or breaks other runs, and FinTune never
rewrites or deletes it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..errors import ConfigError, RunError
from ..stats.metrics import headline_metric
from ..training.events import Event, parse_event
from .files import (
    DamagedRunError,
    atomic_write_bytes,
    is_number,
    json_safe,
    kind_of,
    read_json,
    read_object,
    shown,
    swap_in,
    write_json,
)
from .split_file import record_split
from .status import DAMAGED, read_status, utc_now, write_status

DEFAULT_RUNS_DIR = Path("runs")
logger = logging.getLogger(__name__)
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


# --------------------------------------------------------------------------- creating runs


def new_run_id() -> str:
    """Server-made ids: sortable by time, never taken from user input."""
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_path(runs_dir: str | Path, run_id: str) -> Path:
    """The folder of ``run_id``; ids that are not ours (``../x``, absolute paths) are refused."""
    if not _RUN_ID.match(str(run_id)):
        raise RunError(f"{run_id!r} is not a run id: pick one listed by `fintune runs`.")
    return Path(runs_dir) / run_id


def create_run(
    runs_dir: str | Path, config: RunConfig, frame: pd.DataFrame, *, source: str = ""
) -> Path:
    """A new queued run holding its config and a Parquet copy of the input table.

    Settings the backbone cannot take (a max length beyond its positions) raise ConfigError here,
    before any folder exists: every way of starting a run (CLI, job manager, sweep) comes through.
    """
    from ..model.backbones import check_max_length

    check_max_length(config.model.backbone, config.model.max_length)
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(10):  # two sessions in the same second: the random part differs, or we retry
        run_dir = run_path(runs_dir, new_run_id())
        try:
            run_dir.mkdir(exist_ok=False)
            break
        except FileExistsError:
            continue
    else:
        raise RunError(f"Could not make a new run folder in {runs_dir}: try again.")
    source = Path(source).name if source else ""
    write_json(run_dir / "config.json", {**config.to_dict(), "source": source})
    buffer = frame.copy()
    buffer.columns = [str(c) for c in buffer.columns]
    tmp = run_dir / ".data.parquet.tmp"
    buffer.to_parquet(tmp, index=True)
    os.replace(tmp, run_dir / "data.parquet")
    record_split(run_dir, buffer, config)  # split.json: the split every later step reads
    write_status(run_dir, "queued", owner_pid=os.getpid(), created=utc_now())
    return run_dir


def read_config(run_dir: Path) -> tuple[RunConfig, str]:
    """The run's config and the name of its source file, checked (DamagedRunError otherwise)."""
    run_dir = Path(run_dir)
    raw = read_object(run_dir, "config.json", required=True)
    source = raw.pop("source", "")
    if not isinstance(source, str):
        raise DamagedRunError(run_dir, f"config.json: source {shown(source)} is not a file name")
    try:
        return RunConfig.from_dict(raw), source
    except ConfigError as exc:
        raise DamagedRunError(run_dir, f"config.json: {str(exc).rstrip('.')}") from exc


def record_resolved_config(run_dir: Path, config: RunConfig) -> None:
    """Replace config.json's "auto" settings by what the run resolved them to (the same source).

    Written once the model is built, so that every later reader (report, compare, the runs table)
    sees the freeze depth that trained rather than "auto".
    """
    write_json(run_dir / "config.json", {**config.to_dict(), "source": read_config(run_dir)[1]})


def load_config(run_dir: Path) -> RunConfig:
    """The run's checked config (DamagedRunError otherwise)."""
    return read_config(run_dir)[0]


def load_data(run_dir: Path) -> pd.DataFrame:
    """The run's copy of the input table (``data.parquet``)."""
    return pd.read_parquet(Path(run_dir) / "data.parquet")


# --------------------------------------------------------------------------- history and results


def append_event(run_dir: Path, event: dict) -> None:
    """Append one progress event to history.jsonl (one line, flushed)."""
    line = json.dumps(json_safe({**event, "time": time.time()})) + "\n"
    with open(Path(run_dir) / "history.jsonl", "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


def read_events(run_dir: Path) -> list[Event]:
    """The run's typed events; a line that is not a usable event (one being written right now, or
    a damaged one) is skipped, so one bad line never hides the others."""
    path = Path(run_dir) / "history.jsonl"
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:  # missing, or unreadable: no progress to show
        return []
    events = []
    for line in text.splitlines():
        try:
            event = parse_event(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            continue
        if event is not None:
            events.append(event)
    return events


def read_history(run_dir: Path) -> list[dict]:
    """The run's usable events as dicts (see :func:`read_events`), for views that plot them."""
    return [event.to_dict() for event in read_events(run_dir)]


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """Write metrics.json atomically."""
    write_json(Path(run_dir) / "metrics.json", metrics)


_TASKS = ("binary", "multiclass", "regression")
_METRIC_SECTIONS = (
    "val",
    "test",
    "test_intervals",
    "baselines",
    "rows",
    "decision",
    "at_threshold",
)


def read_metrics(run_dir: Path) -> dict:
    """metrics.json ({} before the run succeeds), its shape checked: DamagedRunError otherwise."""
    run_dir = Path(run_dir)
    metrics = read_object(run_dir, "metrics.json")
    task = metrics.get("task")
    if task is not None and task not in _TASKS:
        raise DamagedRunError(
            run_dir, f"metrics.json: task {shown(task)} is not one of {', '.join(_TASKS)}"
        )
    for key in _METRIC_SECTIONS:
        if metrics.get(key) is not None and not isinstance(metrics[key], dict):
            raise DamagedRunError(
                run_dir, f"metrics.json: {key} is {kind_of(metrics[key])}, not an object"
            )
    for name, entry in (metrics.get("baselines") or {}).items():
        if not isinstance(entry, dict):
            raise DamagedRunError(
                run_dir, f"metrics.json: baseline {shown(name)} is {kind_of(entry)}, not an object"
            )
    warnings = metrics.get("warnings")
    if warnings is not None and not (
        isinstance(warnings, list) and all(isinstance(w, dict) for w in warnings)
    ):
        raise DamagedRunError(run_dir, "metrics.json: warnings is not a list of objects")
    return metrics


def headline(run_dir: Path, metrics: dict, task: str | None) -> tuple[str, float | None]:
    """(name, test value) of the run's headline metric: rmse for regression, else roc_auc."""
    metric = headline_metric(metrics.get("task") or task)
    return metric, metric_number(run_dir, metrics, "test", metric)


def metric_number(run_dir: Path, metrics: dict, *keys: str) -> float | None:
    """``metrics[k1][k2]...`` as a number, None when absent; DamagedRunError when anything else."""
    value = metrics
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None or is_number(value):
        return value
    raise DamagedRunError(run_dir, f"metrics.json: {'.'.join(keys)} {shown(value)} is not a number")


def write_predictions(run_dir: Path, predictions: pd.DataFrame) -> None:
    """Write the test rows' predictions (predictions.csv) atomically."""
    atomic_write_bytes(Path(run_dir) / "predictions.csv", predictions.to_csv(index=False).encode())


def read_predictions(run_dir: Path) -> pd.DataFrame:
    """The test rows' predictions; RunError before the run has them."""
    path = Path(run_dir) / "predictions.csv"
    if not path.exists():
        raise RunError(f"Run {Path(run_dir).name} has no predictions yet: wait until it succeeds.")
    return pd.read_csv(path)


def write_table(run_dir: Path, name: str, frame: pd.DataFrame) -> None:
    """Write ``frame`` as CSV at ``run_dir / name`` (``name`` is ours, never user input)."""
    atomic_write_bytes(Path(run_dir) / name, frame.to_csv(index=False).encode())


def read_val_predictions(run_dir: Path) -> pd.DataFrame:
    """The validation rows' predictions (thresholds are chosen on them)."""
    path = Path(run_dir) / "val_predictions.csv"
    if not path.exists():
        raise RunError(
            f"Run {Path(run_dir).name} has no validation predictions: it predates thresholds."
        )
    return pd.read_csv(path)


def baseline_file(name: str) -> str:
    """``baselines/lightgbm.csv`` for "LightGBM": a safe file name for a baseline's outputs."""
    return f"baselines/{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.csv"


def read_baseline_predictions(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Each baseline's test predictions, by baseline name (empty for runs without baselines)."""
    found = {}
    for name, entry in read_metrics(run_dir).get("baselines", {}).items():
        path = Path(run_dir) / baseline_file(name)
        if entry.get("error") is None and path.is_file():
            found[name] = pd.read_csv(path)
    return found


def read_decision(run_dir: Path):
    """The run's saved :class:`~core.thresholds.Decision`, or None (not binary, or none saved)."""
    from ..stats.thresholds import Decision

    raw = read_json(Path(run_dir) / "decision.json")
    return Decision.from_dict(raw) if raw else None


def write_decision(run_dir: Path, decision) -> None:
    """Save the decision with all it decides: decision.json, predictions.csv and metrics.json."""
    from ..stats.thresholds import apply_decision, outcome_at, table_scores

    # The test predictions are relabelled and metrics.json's decision and at_threshold (test rows)
    # rewritten from them, so the three files agree. Everything is read before anything is
    # written (a damaged metrics.json changes nothing), and decision.json, which prediction uses,
    # comes last; saving again mends a save cut short.
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    predictions = read_predictions(run_dir) if (run_dir / "predictions.csv").exists() else None
    if metrics:
        metrics["decision"] = decision.to_dict()
        if predictions is not None:
            target = load_config(run_dir).data.target
            scores = table_scores(predictions, target, decision.positive_class)
            metrics["at_threshold"] = outcome_at(*scores, decision)
    if predictions is not None:
        classes = [c[len("prob_") :] for c in predictions.columns if c.startswith("prob_")]
        probabilities = predictions[[f"prob_{c}" for c in classes]].to_numpy()
        predictions["prediction"] = apply_decision(probabilities, classes, decision)
        write_predictions(run_dir, predictions)
    if metrics:
        write_metrics(run_dir, metrics)
    write_json(run_dir / "decision.json", decision.to_dict())


def read_stability(run_dir: Path) -> dict:
    """stability.json ({} when there is none)."""
    return read_json(Path(run_dir) / "stability.json")


def test_rows(run_dir: Path, n: int | None = None) -> pd.DataFrame:
    """The run's first ``n`` test rows (all when None), indexed by their row in the original
    table."""
    order = read_predictions(run_dir)["row"]
    if not (Path(run_dir) / "data.parquet").is_file():
        raise RunError(
            f"Run {Path(run_dir).name} has no data.parquet: its test rows cannot be read."
        )
    return load_data(run_dir).loc[order.head(n) if n is not None else order]


def held_out_rows(run_dir: Path, n: int) -> tuple[pd.DataFrame, int]:
    """The run's first ``n`` held-out rows and how many of them are test rows: its test rows, then
    its validation rows when there are fewer than ``n`` test rows (a 1,000-row table holds 150
    test rows; global importance reads better on more). No weight was fitted on either set;
    validation rows chose the epoch and the blend weight."""
    test = test_rows(run_dir)
    if len(test) >= n:
        return test.head(n), n
    try:
        order = read_val_predictions(run_dir)["row"]
    except RunError:  # a run from before validation predictions were kept: test rows only
        return test, len(test)
    return pd.concat([test, load_data(run_dir).loc[order.head(n - len(test))]]), len(test)


def model_dir(run_dir: Path) -> Path:
    """The folder of the run's final model."""
    return Path(run_dir) / "model"


def write_model(run_dir: Path, save) -> Path:
    """``save(folder)`` writes the final model; it becomes ``model/`` atomically."""
    return swap_in(run_dir, "model", save)


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class RunSummary:
    """One line of the runs table."""

    run_id: str
    path: Path
    state: str
    created: str
    source: str
    target: str
    task: str
    backbone: str
    freeze_depth: int | str  # "auto" until the run has built its model
    test_metric: str
    test_value: float | None
    message: str
    lora_rank: int = 0

    @property
    def tuning(self) -> str:
        """How the backbone was tuned: ``freeze 4``, or ``LoRA r8`` (``LoRA r8 above 2`` with a
        freeze depth)."""
        if self.lora_rank:
            above = f" above {self.freeze_depth}" if self.freeze_depth else ""
            return f"LoRA r{self.lora_rank}{above}"
        return f"freeze {self.freeze_depth}"

    def as_row(self) -> dict:
        """The summary as a row of the runs table, keyed by column title."""
        value = "" if self.test_value is None else f"{self.test_value:.4f}"
        return {
            "run": self.run_id,
            "state": self.state,
            "data": self.source,
            "target": self.target,
            "backbone": self.backbone,
            "tuning": self.tuning if self.backbone else "",  # blank: the config was unreadable
            "test metric": f"{self.test_metric} {value}".strip(),
            "message": self.message,
        }


def summarize(run_dir: Path) -> RunSummary:
    """The run's line in the runs table; a damaged folder gets state ``damaged``, its reasons as the
    message and whatever else could be read. A dead running or queued run is settled as interrupted
    (only in a folder that is not damaged: a damaged one is never written to)."""
    run_dir = Path(run_dir)
    problems = []
    config, source = None, ""
    try:
        config, source = read_config(run_dir)
    except DamagedRunError as exc:
        problems.append(exc.reason)
    task, metric, value = (config.data.task if config else None) or "", "", None
    try:
        metrics = read_metrics(run_dir)
        task = metrics.get("task") or task
        metric, value = headline(run_dir, metrics, task)
    except DamagedRunError as exc:
        problems.append(exc.reason)
    status = {}
    try:
        status = read_status(run_dir, settle=not problems)
    except DamagedRunError as exc:
        problems.append(exc.reason)
    return RunSummary(
        run_id=run_dir.name,
        path=run_dir,
        state=DAMAGED if problems else status["state"],
        created=status.get("created") or "",
        source=source,
        target=config.data.target if config else "",
        task=task,
        backbone=config.model.backbone if config else "",
        freeze_depth=config.model.freeze_depth if config else 0,
        test_metric=metric if value is not None else "",
        test_value=value,
        message="; ".join(problems) if problems else status.get("message") or "",
        lora_rank=config.model.lora_rank if config else 0,
    )


def read_run(run_dir: Path) -> tuple[RunConfig, dict, dict]:
    """(config, metrics, status) of a run, each checked as the runs list checks them:
    DamagedRunError at the first problem, so every view calls a folder damaged or none does."""
    config = load_config(run_dir)
    metrics = read_metrics(run_dir)
    headline(run_dir, metrics, config.data.task)
    return config, metrics, read_status(run_dir)


def _unreadable(run_dir: Path, exc: Exception) -> RunSummary:
    reason = (
        exc.reason
        if isinstance(exc, DamagedRunError)
        else f"the folder cannot be read ({type(exc).__name__}: {exc})"
    )
    return RunSummary(
        run_id=run_dir.name,
        path=run_dir,
        state=DAMAGED,
        created="",
        source="",
        target="",
        task="",
        backbone="",
        freeze_depth=0,
        test_metric="",
        test_value=None,
        message=reason,
    )


def list_runs(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[RunSummary]:
    """All runs, newest first; dead running or queued runs show as interrupted, damaged folders as
    damaged (with the reason), never hiding the others."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    folders = sorted(
        (p for p in runs_dir.iterdir() if _RUN_ID.match(p.name) and p.is_dir()), reverse=True
    )
    summaries = []
    for folder in folders:
        try:
            summaries.append(summarize(folder))
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with one folder, list the rest
            logger.warning("run folder %s could not be read", folder, exc_info=True)
            summaries.append(_unreadable(folder, exc))
    return summaries
