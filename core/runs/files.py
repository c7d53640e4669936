"""A run folder's files: atomic writes, and checked reads that name what is damaged.

Every write of a whole file or folder is atomic (temp file + rename), so a reader never sees half
of one. Each JSON file is read through :func:`read_object`, which returns an object or raises
:class:`DamagedRunError` naming the file and the problem.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import RunError


def json_safe(value):
    """``value`` as strict JSON can hold it: NaN and infinity become None, numpy scalars Python."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temp file beside it, flushed, then renamed."""
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
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(Path(path), json.dumps(json_safe(payload), indent=2).encode())


class DamagedRunError(RunError):
    """A run folder's file is not what FinTune wrote: ``reason`` names the file and the problem."""

    def __init__(self, run_dir: Path, reason: str, message: str | None = None):
        self.run_dir, self.reason = Path(run_dir), reason
        super().__init__(message or f"Run folder {run_dir} is damaged: {reason}. {DAMAGED_FIX}")


DAMAGED_FIX = (
    "Restore the file from a backup, or move the folder out of the runs folder "
    "(FinTune leaves it as it is)."
)


def shown(value) -> str:
    """A JSON value as messages show it: ``'soon'``, ``[]``, ``-3``, ``null`` (40 characters)."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def kind_of(value) -> str:
    """What a JSON value is, in words: ``a list``, ``a string``, ``a number``."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def read_object(run_dir: Path, name: str, *, required: bool = False) -> dict:
    """The JSON object in ``run_dir / name``: {} when the file is missing (DamagedRunError when
    it is ``required``), DamagedRunError when it cannot be read or holds anything but an object."""
    run_dir = Path(run_dir)
    try:
        text = (run_dir / name).read_bytes().decode("utf-8")
    except FileNotFoundError:
        if required:
            message = (
                f"{run_dir} has no {name}: it is not a FinTune run folder, or the file was "
                "removed; pick a run listed by `fintune runs`."
            )
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
        raise DamagedRunError(run_dir, f"{name} holds {kind_of(value)}, not a JSON object")
    return value


def read_json(path: Path) -> dict:
    """The JSON object in ``path``: {} when missing; DamagedRunError (a RunError) when not one."""
    path = Path(path)
    return read_object(path.parent, path.name)


def is_number(value) -> bool:
    """Whether a JSON value is a finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value) -> bool:
    """Whether a JSON value is a whole number of zero or more (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def swap_in(run_dir: Path, name: str, write) -> Path:
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
