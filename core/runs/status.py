"""A run's status: ``status.json`` (state, failure kind and fix, pid) and its heartbeat.

status.json is written under a file lock on the run folder and a final state is never undone; the
heartbeat is the worker's sign of life, in its own file so the heartbeat never rewrites the status.
A running run whose process is gone or silent reads as interrupted; :func:`settle_dead_run`
records it. A damaged status.json is never rewritten: :class:`DamagedRunError` names the field.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from .checkpoint import CHECKPOINT, read_checkpoint
from .files import (
    DamagedRunError,
    atomic_write_bytes,
    is_count,
    is_number,
    read_object,
    shown,
    write_json,
)

# What status.json holds; "damaged" is only ever shown (for a folder whose files cannot be read).
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
DAMAGED = "damaged"
SHOWN_STATES = (*STATES, DAMAGED)  # what a run can be listed as
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted", DAMAGED})
MAX_PID = 2**31 - 1  # pid_t is a 32-bit signed int
HEARTBEAT_S = 5.0
HEARTBEAT_FILE = "heartbeat"  # its own file: the heartbeat thread never rewrites status.json
STALE_AFTER_S = 90.0  # a running status whose heartbeat is older than this and whose pid is gone
logger = logging.getLogger(__name__)


def utc_now() -> str:
    """The time now in UTC, as ISO text to the second (how status.json records times)."""
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
        status["updated"] = utc_now()
        status["heartbeat"] = time.time()
        if state in FINAL_STATES:
            status.setdefault("finished", utc_now())
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
    status = read_object(run_dir, "status.json")
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
        raise damaged(f"state {shown(state)} is not one of {', '.join(STATES)}")
    if "heartbeat" in status and not is_number(status["heartbeat"]):
        raise damaged(f"heartbeat {shown(status['heartbeat'])} is not a time")
    for key in ("pid", "owner_pid"):
        pid = status.get(key)
        if pid is not None and not (is_count(pid) and 0 < pid <= MAX_PID):
            raise damaged(f"{key} {shown(pid)} is not a process id")
    if status.get("processes") is not None and not is_count(status["processes"]):
        raise damaged(f"processes {shown(status['processes'])} is not a number of processes")
    for key in _STATUS_TEXTS:
        if status.get(key) is not None and not isinstance(status[key], str):
            raise damaged(f"{key} {shown(status[key])} is not text")
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
            kept = (
                f" Its best checkpoint (epoch {checkpoint.get('epoch')}) is kept in "
                f"{CHECKPOINT}/: score files with "
                f"`fintune predict {Path(run_dir) / CHECKPOINT} FILE`."
                if checkpoint
                else ""
            )
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
