"""A run's checkpoint: ``checkpoint/`` holds the model of the best epoch so far.

Written at each better epoch while training (swapped in whole), removed once the run succeeds
(``model/`` then holds the same weights), kept when the run is killed or fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .files import read_object, swap_in, write_json

CHECKPOINT = "checkpoint"


def write_checkpoint(run_dir: Path, save, info: dict) -> Path:
    """``save(folder)`` writes a model; it becomes ``checkpoint/model`` with ``checkpoint.json``."""

    def write(folder: Path) -> None:
        save(folder / "model")
        write_json(folder / "checkpoint.json", info)

    return swap_in(run_dir, CHECKPOINT, write)


def read_checkpoint(run_dir: Path) -> dict:
    """``checkpoint.json`` of the run's last good checkpoint (``{}`` when there is none)."""
    return read_object(run_dir, f"{CHECKPOINT}/checkpoint.json")


def drop_checkpoint(run_dir: Path) -> None:
    """Remove ``checkpoint/`` (once ``model/`` holds the same weights)."""
    shutil.rmtree(Path(run_dir) / CHECKPOINT, ignore_errors=True)
