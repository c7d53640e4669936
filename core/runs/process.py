"""A run's training process, seen from outside: start it, stop it, follow it, settle its exit.

One place supervises worker processes for both callers: the job manager (a thread per process)
and ``fintune train --num-processes N`` (the terminal follows the run in the foreground). The
process runs ``python -m core.runs.worker RUN_DIR``, or N of them under ``accelerate launch``, in
its own process group, so stopping it stops every rank and frees their memory for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import folder as runs
from .checkpoint import CHECKPOINT, read_checkpoint
from .files import DamagedRunError
from .status import FINAL_STATES, read_status, read_status_file, write_status

CANCEL_GRACE_S = 15.0  # SIGTERM first (stop at the next step), then SIGKILL
FOLLOW_POLL_S = 0.5  # how often the terminal relays a followed run's new events
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_WORKER = ["-m", "core.runs.worker"]
PARENT_ENV = "FINTUNE_PARENT_PID"


def _popen(argv: list[str], *, stdout, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env[PARENT_ENV] = str(os.getpid())  # the worker stops when this process is gone
    return subprocess.Popen(
        argv,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        stdin=stdin,
        env=env,
        start_new_session=True,  # its own process group: cancel can kill the whole tree
    )


def start_worker(run_dir: Path, num_processes: int = 1) -> subprocess.Popen:
    """Start the run's training process (N under ``accelerate launch``), logging to worker.log."""
    from ..training.distributed import launch_command

    program = [*_WORKER, str(Path(run_dir).resolve())]
    argv = (
        [sys.executable, *program] if num_processes == 1 else launch_command(num_processes, program)
    )
    with open(Path(run_dir) / "worker.log", "ab") as log:
        return _popen(argv, stdout=log)


def start_warm_worker() -> subprocess.Popen:
    """A worker started and imported ahead, waiting on stdin for the folder of its run."""
    return _popen(
        [sys.executable, *_WORKER, "--warm"], stdout=subprocess.DEVNULL, stdin=subprocess.PIPE
    )


def signal_group(process: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process's whole group (every rank), unless it has exited."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def terminate(process: subprocess.Popen) -> None:
    """Stop the process group: SIGTERM now (every rank stops at the same step), SIGKILL after
    CANCEL_GRACE_S if it is still there. Returns at once."""
    signal_group(process, signal.SIGTERM)
    timer = threading.Timer(CANCEL_GRACE_S, signal_group, args=(process, signal.SIGKILL))
    timer.daemon = True
    timer.start()


def follow_worker(run_dir: Path, num_processes: int, on_progress: Callable[[dict], None]) -> str:
    """Train the run on N processes of this machine in the foreground, passing its events to
    ``on_progress`` as they land; Ctrl-C stops every rank. Returns the run's final state."""
    run_dir = Path(run_dir)
    process = start_worker(run_dir, num_processes)
    seen, cancelled = 0, False

    def relay() -> None:
        nonlocal seen
        events = runs.read_history(run_dir)
        for event in events[seen:]:
            on_progress(event)
        seen = len(events)

    try:
        while process.poll() is None:
            time.sleep(FOLLOW_POLL_S)
            relay()
    except KeyboardInterrupt:
        cancelled = True
        terminate(process)
        process.wait()
    relay()
    settle_exit(run_dir, process.returncode, cancelled=cancelled)
    return read_status(run_dir).get("state", "failed")


def settle_exit(run_dir: Path, code: int, *, cancelled: bool = False) -> None:
    """Give a run whose process has exited its final state, if the process could not write one
    (RunError when its status.json is damaged: that is never overwritten)."""
    from ..training.distributed import rank_failure, read_rank_errors

    status = read_status_file(Path(run_dir))
    if status.get("state") in FINAL_STATES:
        return
    if cancelled:
        write_status(run_dir, "cancelled", message="Cancelled by the user.")
        return
    errors = read_rank_errors(run_dir)
    if errors:
        kind, message = rank_failure(errors[0], status.get("processes"))
    else:
        kind, message = _exit_kind(code), _exit_message(run_dir, code)
    write_status(run_dir, "failed", kind=kind, message=message, phase="Failed")


def _exit_kind(code: int) -> str:
    return "out_of_memory" if code == -signal.SIGKILL else "other"


def _exit_message(run_dir: Path, code: int) -> str:
    try:
        checkpoint = read_checkpoint(run_dir)
        kept = (
            f" Its best checkpoint (epoch {checkpoint.get('epoch')}) is kept in {CHECKPOINT}/."
            if checkpoint
            else ""
        )
    except DamagedRunError as exc:
        kept = f" Its {CHECKPOINT}/ folder is kept, but {exc.reason}."
    if code == -signal.SIGKILL:
        return (
            "The training process was killed (SIGKILL), most often by the system running out "
            f"of memory: try a smaller batch size or max length.{kept}"
        )
    tail = ""
    log = Path(run_dir) / "worker.log"
    if log.exists():
        lines = log.read_text(errors="replace").strip().splitlines()
        tail = lines[-1] if lines else ""
    return f"The training process exited with code {code}. {tail}{kept}".strip()
