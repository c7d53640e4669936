"""The run folder is the contract: everything about a run is written here and read from here.

Layout: ``config.json``, ``status.json``, ``history.jsonl``, ``data.parquet`` (the input table),
``metrics.json``, ``predictions.csv`` (test rows), ``val_predictions.csv``, ``decision.json``
(binary: the threshold), ``stability.json``, ``baselines/<name>.csv`` (test outputs of each
baseline), ``model/``, and while training ``checkpoint/`` (``model/`` of the best epoch so far
and ``checkpoint.json``; removed once the run succeeds, kept when it is killed or fails). Only this module writes run folders; every
write of a whole file is atomic (temp file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
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

from .config import RunConfig
from .errors import RunError

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
HEARTBEAT_S = 5.0
STALE_AFTER_S = 90.0  # a running status whose heartbeat is older than this and whose pid is gone
DEFAULT_RUNS_DIR = Path("runs")
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


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is damaged ({exc}): delete the run folder or restore it.") from exc


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
    """A new queued run holding its config and a Parquet copy of the input table."""
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


def load_config(run_dir: Path) -> RunConfig:
    raw = read_json(Path(run_dir) / "config.json")
    if not raw:
        raise RunError(f"{run_dir} has no config.json: it is not a FinTune run folder.")
    raw.pop("source", None)
    return RunConfig.from_dict(raw)


def load_data(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(Path(run_dir) / "data.parquet")


# --------------------------------------------------------------------------- status and history


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_status(run_dir: Path, state: str, **fields) -> dict:
    """Merge ``fields`` into status.json with the new state (atomically)."""
    assert state in STATES, state
    path = Path(run_dir) / "status.json"
    status = read_json(path) if path.exists() else {}
    status.update(fields)
    status["state"] = state
    status["updated"] = _now()
    status["heartbeat"] = time.time()
    if state in FINAL_STATES:
        status.setdefault("finished", _now())
    write_json(path, status)
    return status


def touch_heartbeat(run_dir: Path) -> None:
    path = Path(run_dir) / "status.json"
    status = read_json(path)
    if status.get("state") == "running":
        status["heartbeat"] = time.time()
        write_json(path, status)


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


def read_status(run_dir: Path) -> dict:
    """status.json, with a dead run (its process gone or silent) reported as interrupted."""
    status = read_json(Path(run_dir) / "status.json")
    if not status:
        return {"state": "interrupted", "message": "No status was written: the run never started."}
    state = status.get("state")
    stale = time.time() - float(status.get("heartbeat", 0)) > STALE_AFTER_S
    if state == "running" and (not _pid_alive(status.get("pid")) or stale):
        checkpoint = read_checkpoint(run_dir)
        kept = (f" Its best checkpoint (epoch {checkpoint.get('epoch')}) is kept in {CHECKPOINT}/: score files "
                f"with `fintune predict {Path(run_dir) / CHECKPOINT} FILE`.") if checkpoint else ""
        status = write_status(
            run_dir, "interrupted",
            message=f"The training process stopped without finishing (killed or crashed).{kept}",
        )
    elif state == "queued" and not _pid_alive(status.get("owner_pid")):
        status = write_status(run_dir, "interrupted", message="The app that queued this run stopped before it started.")
    return status


def append_event(run_dir: Path, event: dict) -> None:
    """Append one progress event to history.jsonl (one line, flushed)."""
    line = json.dumps(_json_safe({**event, "time": time.time()})) + "\n"
    with open(Path(run_dir) / "history.jsonl", "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return events


def write_metrics(run_dir: Path, metrics: dict) -> None:
    write_json(Path(run_dir) / "metrics.json", metrics)


def read_metrics(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / "metrics.json")


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
    from .thresholds import Decision

    raw = read_json(Path(run_dir) / "decision.json")
    return Decision.from_dict(raw) if raw else None


def write_decision(run_dir: Path, decision) -> None:
    """Save the decision and relabel the test predictions with it, so every file agrees."""
    from .thresholds import apply_decision

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
    return read_json(Path(run_dir) / CHECKPOINT / "checkpoint.json")


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
            "tuning": self.tuning,
            "test metric": f"{self.test_metric} {value}".strip(),
            "message": self.message,
        }


def summarize(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    raw = read_json(run_dir / "config.json")
    status = read_status(run_dir)
    metrics = read_metrics(run_dir) if (run_dir / "metrics.json").exists() else {}
    task = metrics.get("task") or raw.get("data", {}).get("task") or ""
    metric = "rmse" if task == "regression" else "roc_auc"
    value = metrics.get("test", {}).get(metric)
    return RunSummary(
        run_id=run_dir.name,
        path=run_dir,
        state=status.get("state", "interrupted"),
        created=status.get("created", ""),
        source=raw.get("source", ""),
        target=raw.get("data", {}).get("target", ""),
        task=task,
        backbone=raw.get("model", {}).get("backbone", ""),
        freeze_depth=int(raw.get("model", {}).get("freeze_depth", 0)),
        test_metric=metric if value is not None else "",
        test_value=value,
        message=status.get("message", ""),
        lora_rank=int(raw.get("model", {}).get("lora_rank", 0) or 0),
    )


def list_runs(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[RunSummary]:
    """All runs, newest first; dead running or queued runs show as interrupted."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    folders = sorted((p for p in runs_dir.iterdir() if p.is_dir() and _RUN_ID.match(p.name)), reverse=True)
    summaries = []
    for folder in folders:
        try:
            summaries.append(summarize(folder))
        except RunError:
            continue  # a damaged folder must not hide the others
    return summaries
