"""The freeze-depth sweep: one run per depth, from all layers frozen to none, plus LoRA; then the
curve.

"How deep should I freeze?" is answered by trying every depth: validation metric against depth,
with trainable parameters, wall time and peak memory beside it, and the knee marked — the
cheapest setting that gets most of the way to the best metric. A sweep is a list of ordinary runs
(queued through the job manager like any other) plus one small JSON file that groups them, so a
sweep survives restarts and is seen from every tab. Each frozen run computes its frozen layers
once per row (the prefix cache); runs do not share that cache, because each runs in its own process.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DEFAULT_LORA_RANK, RunConfig
from ..errors import RunError
from ..stats.metrics import HIGHER_IS_BETTER, headline_metric
from . import folder as runs
from .files import DamagedRunError, write_json
from .status import DAMAGED, utc_now

SWEEPS = "sweeps"


@dataclass(frozen=True)
class SweepPoint:
    """One setting of a sweep (a freeze depth or a LoRA rank) and the run that tried it."""

    label: str  # "freeze 4" or "LoRA r8"
    freeze_depth: int
    lora_rank: int
    run_id: str = ""


@dataclass(frozen=True)
class Sweep:
    """A freeze-depth sweep: its points, recorded in runs/sweeps/<id>.json."""

    sweep_id: str
    created: str
    source: str
    points: tuple[SweepPoint, ...]

    @property
    def run_ids(self) -> list[str]:
        return [p.run_id for p in self.points]


def sweep_points(n_layers: int, *, lora_rank: int = DEFAULT_LORA_RANK) -> list[SweepPoint]:
    """All frozen (n_layers) down to none (0), then LoRA on every layer (when ``lora_rank`` > 0)."""
    points = [SweepPoint(f"freeze {d}", d, 0) for d in range(n_layers, -1, -1)]
    if lora_rank > 0:
        points.append(SweepPoint(f"LoRA r{lora_rank}", 0, lora_rank))
    return points


def point_config(base: RunConfig, point: SweepPoint) -> RunConfig:
    """The run config of one sweep point: the base config with its freeze depth and LoRA rank."""
    return base.replace(model={"freeze_depth": point.freeze_depth, "lora_rank": point.lora_rank})


def start_sweep(
    jobs,
    base: RunConfig,
    frame: pd.DataFrame,
    n_layers: int,
    *,
    source: str = "",
    lora_rank: int = DEFAULT_LORA_RANK,
) -> Sweep:
    """Queue one run per point on ``jobs`` (a JobManager) and record the sweep; returns at once."""
    points = []
    for point in sweep_points(n_layers, lora_rank=lora_rank):
        run_id = jobs.submit(point_config(base, point), frame, source=source)
        points.append(SweepPoint(point.label, point.freeze_depth, point.lora_rank, run_id))
    sweep = Sweep(
        f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}", utc_now(), source, tuple(points)
    )
    folder = Path(jobs.runs_dir) / SWEEPS
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / f"{sweep.sweep_id}.json",
        {
            "sweep_id": sweep.sweep_id,
            "created": sweep.created,
            "source": source,
            "points": [p.__dict__ for p in points],
        },
    )
    return sweep


def list_sweeps(runs_dir: str | Path) -> list[Sweep]:
    """Recorded sweeps, newest first."""
    folder = Path(runs_dir) / SWEEPS
    sweeps = []
    for path in sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []:
        try:
            raw = json.loads(path.read_text())
            sweep = Sweep(
                raw["sweep_id"],
                raw.get("created", ""),
                raw.get("source", ""),
                tuple(SweepPoint(**p) for p in raw["points"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue  # a damaged record must not hide the others
        if _well_formed(sweep):
            sweeps.append(sweep)
    return sweeps


def _well_formed(sweep: Sweep) -> bool:
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    return all(isinstance(v, str) for v in (sweep.sweep_id, sweep.created, sweep.source)) and all(
        isinstance(p.label, str)
        and isinstance(p.run_id, str)
        and whole(p.freeze_depth)
        and whole(p.lora_rank)
        for p in sweep.points
    )


def sweep_results(runs_dir: str | Path, sweep: Sweep) -> pd.DataFrame:
    """One row per point: state, validation metric (best epoch), trainable parameters, wall time,
    peak memory."""
    table = pd.DataFrame([_point_row(runs_dir, point) for point in sweep.points])
    table["knee"] = False
    knee = find_knee(table)
    if knee is not None:
        table.loc[knee, "knee"] = True
    return table


def _point_row(runs_dir: str | Path, point: SweepPoint) -> dict:
    """One point's row; a damaged run folder gives state ``damaged``, the reason as message and
    no numbers."""
    row = {
        "label": point.label,
        "freeze_depth": point.freeze_depth,
        "lora_rank": point.lora_rank,
        "run_id": point.run_id,
        "state": "missing",
        "metric": "",
        "val_metric": None,
        "test_metric": None,
        "trainable_parameters": None,
        "wall_s": None,
        "peak_memory_mb": None,
        "message": "",
    }
    try:
        run_dir = runs.run_path(runs_dir, point.run_id)
        if not run_dir.is_dir():
            return {**row, "message": f"Its run folder {run_dir} is gone."}
        _, metrics, status = runs.read_run(run_dir)
        task = metrics.get("task", "")
        metric = headline_metric(task) if task else ""

        def number(*keys: str) -> float | None:
            return runs.metric_number(run_dir, metrics, *keys)

        return {
            **row,
            "state": status["state"],
            "message": status.get("message") or "",
            "metric": metric,
            "val_metric": number("val", metric) if metric else None,
            "test_metric": number("test", metric) if metric else None,
            "trainable_parameters": number("trainable_parameters"),
            "wall_s": number("training_seconds"),
            "peak_memory_mb": number("peak_memory_mb"),
        }
    except DamagedRunError as exc:
        return {**row, "state": DAMAGED, "message": exc.reason}
    except RunError as exc:  # a run id in the sweep record that is not one of ours
        return {**row, "state": DAMAGED, "message": str(exc)}


def find_knee(table: pd.DataFrame) -> int | None:
    """Index of the knee among finished points: on validation metric against trainable parameters
    (normalised, cheapest first), the point farthest above the straight line from the cheapest to
    the best-scoring point (the Kneedle idea); None with fewer than three finished points."""
    done = table.dropna(subset=["val_metric", "trainable_parameters"])
    if len(done) < 3:
        return None
    metric = done["metric"].iloc[0]
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    done = done.assign(score=sign * done["val_metric"].astype(float)).sort_values(
        "trainable_parameters"
    )
    best = done["score"].idxmax()
    cheap = done.index[0]
    curve = done.loc[:best]  # beyond the best point, more parameters only cost
    if len(curve) < 2:
        return int(cheap)
    x = np.log10(curve["trainable_parameters"].astype(float).clip(lower=1.0).to_numpy())
    y = curve["score"].to_numpy()
    x = (x - x[0]) / ((x[-1] - x[0]) or 1.0)
    y = (y - y[0]) / ((y[-1] - y[0]) or 1.0)
    gain = y - x  # height above the chord from (0, 0) to (1, 1)
    return int(curve.index[int(np.argmax(gain))])


def summary_lines(table: pd.DataFrame) -> list[str]:
    """The sweep as text (CLI): one line per point, the knee marked."""
    if table.empty:
        raise RunError("This sweep has no runs.")
    metric = next((m for m in table["metric"] if m), "metric")
    lines = [
        f"{'setting':<14} {'state':<10} {'val ' + metric:>12} {'trainable':>12} {'wall s':>8} "
        f"{'peak MB':>8}"
    ]
    for row in table.itertuples():
        value = "" if pd.isna(row.val_metric) else f"{row.val_metric:.4f}"
        params = "" if pd.isna(row.trainable_parameters) else f"{int(row.trainable_parameters):,}"
        wall = "" if pd.isna(row.wall_s) else f"{row.wall_s:.1f}"
        memory = "" if pd.isna(row.peak_memory_mb) else f"{row.peak_memory_mb:.0f}"
        mark = "  <- knee" if row.knee else ""
        lines.append(
            f"{row.label:<14} {row.state:<10} {value:>12} {params:>12} {wall:>8} {memory:>8}{mark}"
        )
    return lines
