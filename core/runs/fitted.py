"""The fitted model of a finished run, loaded once per process and reused."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import RunError
from . import folder as runs
from .status import read_status


@lru_cache(maxsize=4)
def _load(model_path: str, mtime: float):
    from ..training.estimator import FineTuner

    return FineTuner.load(model_path)


def load_model(run_dir: str | Path):
    """The fitted FineTuner of a succeeded run (cached per process)."""
    run_dir = Path(run_dir)
    path = runs.model_dir(run_dir)
    weights = path / "model.safetensors"
    if not weights.is_file():
        state = read_status(run_dir).get("state", "unknown") if run_dir.is_dir() else "missing"
        raise RunError(
            f"Run {run_dir} has no saved model (state: {state}): pick a run that succeeded."
        )
    return _load(str(path.resolve()), weights.stat().st_mtime)
