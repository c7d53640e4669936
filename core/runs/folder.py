"""The run folder is the contract: everything about a run is written here and read from here.

Layout: ``config.json``, ``status.json`` (written under a file lock; a final state is never
undone), ``heartbeat`` (the worker's sign of life, its own file), ``history.jsonl``, ``data.parquet`` (the input table),
``metrics.json``, ``predictions.csv`` (test rows), ``val_predictions.csv``, ``decision.json``
(binary: the threshold), ``stability.json``, ``baselines/<name>.csv`` (test outputs of each
baseline), ``model/``, and while training ``checkpoint/`` (``model/`` of the best epoch so far
and ``checkpoint.json``; removed once the run succeeds, kept when it is killed or fails). Only this module writes run folders; every
write of a whole file is atomic (temp file + rename), so a reader never sees half a file.

Reading is defensive: each file has one reader that checks what it reads and returns typed values
or raises :class:`DamagedRunError` naming the file and the problem. A folder that fails them is
listed as ``damaged`` with that reason; it never hides or breaks other runs, and FinTune never
rewrites or deletes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..errors import ConfigError, RunError
from ..stats.metrics import headline_metric

# What status.json holds; "damaged" is only ever shown (for a folder whose files cannot be read).
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
DAMAGED = "damaged"
SHOWN_STATES = (*STATES, DAMAGED)  # what a run can be listed as
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted", DAMAGED})
MAX_PID = 2**31 - 1  # pid_t is a 32-bit signed int
HEARTBEAT_S = 5.0
HEARTBEAT_FILE = "heartbeat"  # its own file: the heartbeat thread never rewrites status.json
STALE_AFTER_S = 90.0  # a running status whose heartbeat is older than this and whose pid is gone
DEFAULT_RUNS_DIR = Path("runs")
logger = logging.getLogger(__name__)
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


# --------------------------------------------------------------------------- atomic files


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(Path(path), json.dumps(_json_safe(payload), indent=2).encode())


class DamagedRunError(RunError):
    """A run folder's file is not what FinTune wrote: ``reason`` names the file and the problem."""

    def __init__(self, run_dir: Path, reason: str, message: str | None = None):
        self.run_dir, self.reason = Path(run_dir), reason
        super().__init__(message or f"Run folder {run_dir} is damaged: {reason}. {DAMAGED_FIX}")


DAMAGED_FIX = ("Restore the file from a backup, or move the folder out of the runs folder "
               "(FinTune leaves it as it is).")


def _shown(value) -> str:
    """A JSON value as messages show it: ``'soon'``, ``[]``, ``-3``, ``null`` (40 characters)."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _kind(value) -> str:
    """What a JSON value is, in words: ``a list``, ``a string``, ``a number``."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def _read_object(run_dir: Path, name: str, *, required: bool = False) -> dict:
    """The JSON object in ``run_dir / name``: {} when the file is missing (DamagedRunError when
    it is ``required``), DamagedRunError when it cannot be read or holds anything but an object."""
    run_dir = Path(run_dir)
    try:
        text = (run_dir / name).read_bytes().decode("utf-8")
    except FileNotFoundError:
        if required:
            message = (f"{run_dir} has no {name}: it is not a FinTune run folder, or the file was "
                       "removed; pick a run listed by `fintune runs`.")
            raise DamagedRunError(run_dir, f"{name} is missing", message) from None
        return {}
    except UnicodeDecodeError:
        raise DamagedRunError(run_dir, f"{name} is not text (not UTF-8)") from None
    except OSError as exc:
        raise DamagedRunError(run_dir, f"{name} cannot be read ({exc.strerror or exc})") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = "is empty" if not text.strip() else "is not valid JSON (truncated?)"
        raise DamagedRunError(run_dir, f"{name} {problem}") from exc
    except RecursionError as exc:
        raise DamagedRunError(run_dir, f"{name} is nested too deeply to read") from exc
    if not isinstance(value, dict):
        raise DamagedRunError(run_dir, f"{name} holds {_kind(value)}, not a JSON object")
    return value


def read_json(path: Path) -> dict:
    """The JSON object in ``path``: {} when missing; DamagedRunError (a RunError) when not one."""
    path = Path(path)
    return _read_object(path.parent, path.name)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --------------------------------------------------------------------------- creating runs


def new_run_id() -> str:
    """Server-made ids: sortable by time, never taken from user input."""
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_path(runs_dir: str | Path, run_id: str) -> Path:
    """The folder of ``run_id``; ids that are not ours (``../x``, absolute paths) are refused."""
    if not _RUN_ID.match(str(run_id)):
        raise RunError(f"{run_id!r} is not a run id: pick one listed by `fintune runs`.")
    return Path(runs_dir) / run_id


def create_run(runs_dir: str | Path, config: RunConfig, frame: pd.DataFrame, *, source: str = "") -> Path:
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
    write_json(run_dir / "config.json", {**config.to_dict(), "source": Path(source).name if source else ""})
    buffer = frame.copy()
    buffer.columns = [str(c) for c in buffer.columns]
    tmp = run_dir / ".data.parquet.tmp"
    buffer.to_parquet(tmp, index=True)
    os.replace(tmp, run_dir / "data.parquet")
    write_status(run_dir, "queued", owner_pid=os.getpid(), created=_now())
    return run_dir


def read_config(run_dir: Path) -> tuple[RunConfig, str]:
    """The run's config and the name of its source file, checked (DamagedRunError otherwise)."""
    run_dir = Path(run_dir)
    raw = _read_object(run_dir, "config.json", required=True)
    source = raw.pop("source", "")
    if not isinstance(source, str):
        raise DamagedRunError(run_dir, f"config.json: source {_shown(source)} is not a file name")
    try:
        return RunConfig.from_dict(raw), source
    except ConfigError as exc:
        raise DamagedRunError(run_dir, f"config.json: {str(exc).rstrip('.')}") from exc


def load_config(run_dir: Path) -> RunConfig:
    return read_config(run_dir)[0]


def load_data(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(Path(run_dir) / "data.parquet")


# --------------------------------------------------------------------------- status and history


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def _status_lock(run_dir: Path):
    """One writer of status.json at a time across processes (the worker, the job manager, the CLI).

    The lock is taken on the run folder itself, so no lock file is left in it.
    """
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_status(run_dir: Path, state: str, **fields) -> dict:
    """Merge ``fields`` into status.json with the new state, atomically and under a file lock.

    A final state is never replaced by a non-final one, and only "interrupted" (a guess made when
    a process looked dead) by another final state: a late write cannot undo a finished run. A
    damaged status.json is never merged into and rewritten: DamagedRunError.
    """
    assert state in STATES, state
    path = Path(run_dir) / "status.json"
    with _status_lock(run_dir):
        status = read_status_file(run_dir)
        current = status.get("state")
        if current in FINAL_STATES and (state not in FINAL_STATES or current != "interrupted"):
            if state != current:
                logger.info("%s is already %s: not changed to %s", run_dir, current, state)
            return status
        status.update(fields)
        status["state"] = state
        status["updated"] = _now()
        status["heartbeat"] = time.time()
        if state in FINAL_STATES:
            status.setdefault("finished", _now())
        write_json(path, status)
    return status


def touch_heartbeat(run_dir: Path) -> None:
    """Say the run's process is alive. Its own file, so it never rewrites status.json."""
    atomic_write_bytes(Path(run_dir) / HEARTBEAT_FILE, repr(time.time()).encode())


def last_heartbeat(run_dir: Path, status: dict) -> float:
    """The newest sign of life: the heartbeat file, or the last status write."""
    try:
        beat = float((Path(run_dir) / HEARTBEAT_FILE).read_text())
    except (OSError, ValueError):
        beat = 0.0
    beat = beat if math.isfinite(beat) else 0.0
    return max(beat, float(status.get("heartbeat", 0) or 0))


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STATUS_TEXTS = ("message", "phase", "kind", "created", "updated", "started", "finished")


def read_status_file(run_dir: Path) -> dict:
    """status.json as written, checked field by field ({} when there is none); DamagedRunError
    names the first field that is not what FinTune writes."""
    run_dir = Path(run_dir)
    status = _read_object(run_dir, "status.json")
    if not status:
        if (run_dir / "status.json").exists():
            raise DamagedRunError(run_dir, "status.json has no state")
        return {}

    def damaged(problem: str) -> DamagedRunError:
        return DamagedRunError(run_dir, f"status.json: {problem}")

    state = status.get("state")
    if state is None:
        raise DamagedRunError(run_dir, "status.json has no state")
    if state not in STATES:
        raise damaged(f"state {_shown(state)} is not one of {', '.join(STATES)}")
    if "heartbeat" in status and not _is_number(status["heartbeat"]):
        raise damaged(f"heartbeat {_shown(status['heartbeat'])} is not a time")
    for key in ("pid", "owner_pid"):
        pid = status.get(key)
        if pid is not None and not (_is_count(pid) and 0 < pid <= MAX_PID):
            raise damaged(f"{key} {_shown(pid)} is not a process id")
    if status.get("processes") is not None and not _is_count(status["processes"]):
        raise damaged(f"processes {_shown(status['processes'])} is not a number of processes")
    for key in _STATUS_TEXTS:
        if status.get(key) is not None and not isinstance(status[key], str):
            raise damaged(f"{key} {_shown(status[key])} is not text")
    return status


def read_status(run_dir: Path, *, settle: bool = True) -> dict:
    """status.json, checked (DamagedRunError otherwise). Reading never writes: a dead run (its
    process gone or silent) reads as interrupted, unless ``settle`` is False (then as written);
    :func:`settle_dead_run` is what records it."""
    status = read_status_file(run_dir)
    if not status:
        return {"state": "interrupted", "message": "No status was written: the run never started."}
    if not settle:
        return status
    death = _death(run_dir, status)
    return {**status, "state": "interrupted", "message": death} if death else status


def _death(run_dir: Path, status: dict) -> str | None:
    """Why a running or queued run is dead, or None while it is alive (or finished)."""
    state = status["state"]
    if state == "running":
        stale = time.time() - last_heartbeat(run_dir, status) > STALE_AFTER_S
        if _pid_alive(status.get("pid")) and not stale:
            return None
        try:
            checkpoint = read_checkpoint(run_dir)
            kept = (f" Its best checkpoint (epoch {checkpoint.get('epoch')}) is kept in "
                    f"{CHECKPOINT}/: score files with "
                    f"`fintune predict {Path(run_dir) / CHECKPOINT} FILE`." if checkpoint else "")
        except DamagedRunError as exc:
            kept = f" Its {CHECKPOINT}/ folder is kept, but {exc.reason}."
        return f"The training process stopped without finishing (killed or crashed).{kept}"
    if state == "queued" and not _pid_alive(status.get("owner_pid")):
        return "The app that queued this run stopped before it started."
    return None


def settle_dead_run(run_dir: Path) -> None:
    """Record a dead running or queued run as interrupted (the job manager does this at start)."""
    try:
        status = read_status_file(run_dir)
    except DamagedRunError:
        return  # left as it is; the run is listed as damaged
    death = _death(run_dir, status) if status else None
    if death:
        write_status(run_dir, "interrupted", message=death)


def append_event(run_dir: Path, event: dict) -> None:
    """Append one progress event to history.jsonl (one line, flushed)."""
    line = json.dumps(_json_safe({**event, "time": time.time()})) + "\n"
    with open(Path(run_dir) / "history.jsonl", "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


_EVENT_COUNTS = {"step": ("step", "total_steps", "epoch"),
                 "epoch": ("epoch", "step", "total_steps")}
_EVENT_NUMBERS = {"step": ("loss", "lr", "samples_per_s", "eta_s", "elapsed_s"),
                  "epoch": ("train_loss", "elapsed_s")}


def _usable_event(event) -> bool:
    """Whether a history line is an event the readers can use: an object whose step and epoch
    fields (where it is a step or epoch event) have the types FinTune writes."""
    if not isinstance(event, dict):
        return False
    kind = event.get("type")
    if kind == "epoch" and "epoch" not in event:
        return False
    if not all(event.get(key) is None or _is_count(event[key])
               for key in _EVENT_COUNTS.get(kind, ())):
        return False
    if not all(event.get(key) is None or _is_number(event[key])
               for key in _EVENT_NUMBERS.get(kind, ())):
        return False
    if kind == "epoch" and not isinstance(event.get("val") or {}, dict):
        return False
    ranks = event.get("ranks") if kind == "step" else None
    return ranks is None or (isinstance(ranks, list) and all(
        isinstance(r, dict) and _is_count(r.get("rank")) and _is_number(r.get("loss"))
        and _is_number(r.get("samples_per_s")) for r in ranks))  # the Train page prints them


def read_history(run_dir: Path) -> list[dict]:
    """The run's events; a line that is not a usable event (one being written right now, or a
    damaged one) is skipped, so one bad line never hides the others."""
    path = Path(run_dir) / "history.jsonl"
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:  # missing, or unreadable: no progress to show
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if _usable_event(event):
            events.append(event)
    return events


def write_metrics(run_dir: Path, metrics: dict) -> None:
    write_json(Path(run_dir) / "metrics.json", metrics)


_TASKS = ("binary", "multiclass", "regression")
_METRIC_SECTIONS = ("val", "test", "test_intervals", "baselines", "rows", "decision",
                    "at_threshold")


def read_metrics(run_dir: Path) -> dict:
    """metrics.json ({} before the run succeeds), its shape checked: DamagedRunError otherwise."""
    run_dir = Path(run_dir)
    metrics = _read_object(run_dir, "metrics.json")
    task = metrics.get("task")
    if task is not None and task not in _TASKS:
        raise DamagedRunError(run_dir, f"metrics.json: task {_shown(task)} is not one of "
                                       f"{', '.join(_TASKS)}")
    for key in _METRIC_SECTIONS:
        if metrics.get(key) is not None and not isinstance(metrics[key], dict):
            raise DamagedRunError(run_dir,
                                  f"metrics.json: {key} is {_kind(metrics[key])}, not an object")
    for name, entry in (metrics.get("baselines") or {}).items():
        if not isinstance(entry, dict):
            raise DamagedRunError(run_dir, f"metrics.json: baseline {_shown(name)} is "
                                           f"{_kind(entry)}, not an object")
    warnings = metrics.get("warnings")
    if warnings is not None and not (isinstance(warnings, list)
                                     and all(isinstance(w, dict) for w in warnings)):
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
    if value is None or _is_number(value):
        return value
    raise DamagedRunError(run_dir,
                          f"metrics.json: {'.'.join(keys)} {_shown(value)} is not a number")


def write_predictions(run_dir: Path, predictions: pd.DataFrame) -> None:
    atomic_write_bytes(Path(run_dir) / "predictions.csv", predictions.to_csv(index=False).encode())


def read_predictions(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / "predictions.csv"
    if not path.exists():
        raise RunError(f"Run {Path(run_dir).name} has no predictions yet: wait until it succeeds.")
    return pd.read_csv(path)


def write_table(run_dir: Path, name: str, frame: pd.DataFrame) -> None:
    """Write ``frame`` as CSV at ``run_dir / name`` (``name`` is ours, never user input)."""
    atomic_write_bytes(Path(run_dir) / name, frame.to_csv(index=False).encode())


def read_val_predictions(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / "val_predictions.csv"
    if not path.exists():
        raise RunError(f"Run {Path(run_dir).name} has no validation predictions: it predates thresholds.")
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
    """Save the decision and relabel the test predictions with it, so every file agrees."""
    from ..stats.thresholds import apply_decision

    run_dir = Path(run_dir)
    write_json(run_dir / "decision.json", decision.to_dict())
    predictions = read_predictions(run_dir) if (run_dir / "predictions.csv").exists() else None
    if predictions is not None:
        classes = [c[len("prob_"):] for c in predictions.columns if c.startswith("prob_")]
        predictions["prediction"] = apply_decision(predictions[[f"prob_{c}" for c in classes]].to_numpy(), classes, decision)
        write_predictions(run_dir, predictions)


def read_stability(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / "stability.json")


def test_rows(run_dir: Path, n: int | None = None) -> pd.DataFrame:
    """The run's first ``n`` test rows (all when None), indexed by their row in the original table."""
    order = read_predictions(run_dir)["row"]
    if not (Path(run_dir) / "data.parquet").is_file():
        raise RunError(f"Run {Path(run_dir).name} has no data.parquet: its test rows cannot be read.")
    return load_data(run_dir).loc[order.head(n) if n is not None else order]


def model_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "model"


CHECKPOINT = "checkpoint"


def _swap_in(run_dir: Path, name: str, write) -> Path:
    """Build folder ``name`` beside the old one, then swap it in: a crash or a full disk part-way
    leaves the previous folder whole, and a reader never sees a half-written one."""
    run_dir = Path(run_dir)
    fresh = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{name}-new-"))
    try:
        write(fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    final, old = run_dir / name, run_dir / f".{name}-old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(fresh, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def write_checkpoint(run_dir: Path, save, info: dict) -> Path:
    """``save(folder)`` writes a model; it becomes ``checkpoint/model`` with ``checkpoint.json``."""

    def write(folder: Path) -> None:
        save(folder / "model")
        write_json(folder / "checkpoint.json", info)

    return _swap_in(run_dir, CHECKPOINT, write)


def write_model(run_dir: Path, save) -> Path:
    """``save(folder)`` writes the final model; it becomes ``model/`` atomically."""
    return _swap_in(run_dir, "model", save)


def read_checkpoint(run_dir: Path) -> dict:
    """``checkpoint.json`` of the run's last good checkpoint (``{}`` when there is none)."""
    return _read_object(run_dir, f"{CHECKPOINT}/checkpoint.json")


def drop_checkpoint(run_dir: Path) -> None:
    shutil.rmtree(Path(run_dir) / CHECKPOINT, ignore_errors=True)


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
    freeze_depth: int
    test_metric: str
    test_value: float | None
    message: str
    lora_rank: int = 0

    @property
    def tuning(self) -> str:
        """How the backbone was tuned: ``freeze 4``, or ``LoRA r8`` (``LoRA r8 above 2`` with a freeze depth)."""
        if self.lora_rank:
            return f"LoRA r{self.lora_rank}" + (f" above {self.freeze_depth}" if self.freeze_depth else "")
        return f"freeze {self.freeze_depth}"

    def as_row(self) -> dict:
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
    reason = (exc.reason if isinstance(exc, DamagedRunError)
              else f"the folder cannot be read ({type(exc).__name__}: {exc})")
    return RunSummary(run_id=run_dir.name, path=run_dir, state=DAMAGED, created="", source="",
                      target="", task="", backbone="", freeze_depth=0, test_metric="",
                      test_value=None, message=reason)


def list_runs(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[RunSummary]:
    """All runs, newest first; dead running or queued runs show as interrupted, damaged folders as
    damaged (with the reason), never hiding the others."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    folders = sorted((p for p in runs_dir.iterdir() if _RUN_ID.match(p.name) and p.is_dir()),
                     reverse=True)
    summaries = []
    for folder in folders:
        try:
            summaries.append(summarize(folder))
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with one folder, list the rest
            logger.warning("run folder %s could not be read", folder, exc_info=True)
            summaries.append(_unreadable(folder, exc))
    return summaries
