"""The run's split, stored once: ``split.json`` holds the row positions of train, val and test.

It is written when the run is created and read by everything after it (training, the report,
explanations), so no later step re-derives the split and drifts from what training used. The
positions index ``data.parquet`` (``frame.iloc``), in the order training used them. Run folders
made before this file existed have none; :func:`run_split` then rebuilds the split from the config,
as training did.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..errors import FinTuneError
from .files import DamagedRunError, atomic_write_bytes, is_count, read_json

SPLIT_FILE = "split.json"
SPLIT_NAMES = ("train", "val", "test")
logger = logging.getLogger(__name__)


def write_split(run_dir: Path, splits: dict[str, np.ndarray], n_rows: int) -> None:
    """Write ``split.json`` atomically: the positions of each split into a table of ``n_rows``."""
    payload = {
        "n_rows": int(n_rows),
        **{name: [int(i) for i in splits[name]] for name in SPLIT_NAMES},
    }
    # Compact, unlike the other files: one number a row would make a long table a long file.
    text = json.dumps(payload, separators=(",", ":"))
    atomic_write_bytes(Path(run_dir) / SPLIT_FILE, text.encode())


def record_split(run_dir: Path, frame: pd.DataFrame, config: RunConfig) -> None:
    """Split ``frame`` as training will and store it; a table that cannot be split stores nothing,
    and training then raises the same error in the run, as it always has."""
    from ..data.schema import describe_table
    from ..data.split import split_rows

    try:
        spec = describe_table(frame, config.data)
        splits = split_rows(frame, spec, config.data, config.train.seed)
    except (FinTuneError, ValueError) as exc:
        logger.info("%s: no split stored (%s); training will report it", run_dir, exc)
        return
    write_split(run_dir, splits, len(frame))


def _positions(run_dir: Path, raw: dict, name: str, n_rows: int) -> np.ndarray:
    values = raw.get(name)
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise DamagedRunError(run_dir, f"{SPLIT_FILE}: {name} is not a list of row positions")
    positions = np.asarray(values, dtype=np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= n_rows):
        raise DamagedRunError(
            run_dir, f"{SPLIT_FILE}: {name} holds a row outside the table's {n_rows} rows"
        )
    return positions


def read_split(run_dir: Path, *, frame: pd.DataFrame | None = None) -> dict[str, np.ndarray] | None:
    """The stored split as positions by name, None when the run has no split.json (made before it).

    A split.json that is not what FinTune writes (or, given the run's ``frame``, counts a different
    number of rows) raises DamagedRunError.
    """
    run_dir = Path(run_dir)
    if not (run_dir / SPLIT_FILE).exists():
        return None
    raw = read_json(run_dir / SPLIT_FILE)
    n_rows = raw.get("n_rows")
    if not is_count(n_rows):
        raise DamagedRunError(run_dir, f"{SPLIT_FILE}: n_rows is missing or not a number of rows")
    splits = {name: _positions(run_dir, raw, name, n_rows) for name in SPLIT_NAMES}
    every = np.concatenate(list(splits.values()))
    if np.unique(every).size != every.size:
        raise DamagedRunError(run_dir, f"{SPLIT_FILE}: a row is in more than one split (or twice)")
    if frame is not None and len(frame) != n_rows:
        raise DamagedRunError(
            run_dir, f"{SPLIT_FILE} counts {n_rows} rows but data.parquet has {len(frame)}"
        )
    return splits


def run_split(run_dir: Path, frame: pd.DataFrame, spec, config: RunConfig) -> dict[str, np.ndarray]:
    """The split training used: the stored one, or for older folders the one the config rebuilds."""
    stored = read_split(run_dir, frame=frame)
    if stored is not None:
        return stored
    from ..data.split import split_rows

    return split_rows(frame, spec, config.data, config.train.seed)
