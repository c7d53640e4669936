"""Execute one run folder: ``python -m core.worker RUN_DIR``.

The job manager launches this in its own process so that a crash or an out-of-memory kill cannot
take the app down, and cancel (SIGTERM) frees the memory for real. The CLI calls :func:`execute`
in-process. Either way, everything goes to the run folder.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import runs
from .errors import BackboneError, ConfigError, DataError, FinTuneError, TrainingError

logger = logging.getLogger(__name__)

STEP_EVENT_INTERVAL_S = 0.5  # history.jsonl gets at most two step events a second


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TrainingError):
        return exc.kind
    if isinstance(exc, (DataError, ConfigError)):
        return "data_error"
    if isinstance(exc, BackboneError):
        return "backbone_error"
    return "other"


class _HistoryWriter:
    """Appends events to the run folder, thinning step events so the file stays small."""

    def __init__(self, run_dir: Path, forward: Callable[[dict], None] | None):
        self.run_dir, self.forward, self._last_step_write = run_dir, forward, 0.0

    def __call__(self, event: dict) -> None:
        if self.forward is not None:
            self.forward(event)
        if event.get("type") == "step":
            # Only step events are thinned, and only they reset the clock: epoch events must not
            # starve the step feed when epochs are shorter than the interval.
            now = time.monotonic()
            is_last = event.get("step") == event.get("total_steps")
            if not is_last and now - self._last_step_write < STEP_EVENT_INTERVAL_S:
                return
            self._last_step_write = now
        runs.append_event(self.run_dir, event)
        if event.get("type") == "phase":
            runs.write_status(self.run_dir, "running", phase=event["phase"])


def _heartbeat(run_dir: Path, stop: threading.Event) -> None:
    while not stop.wait(runs.HEARTBEAT_S):
        try:
            runs.touch_heartbeat(run_dir)
        except OSError:
            pass  # a full disk must not kill training; the final status write will report it


def _checkpointer(run_dir: Path):
    """Save the best model so far after each improving epoch; a failed save (full disk) is logged
    and training goes on, with the previous checkpoint still whole."""

    def on_checkpoint(tuner, event: dict) -> None:
        info = {"epoch": event["epoch"], "step": event["step"], "val": event["val"]}
        try:
            runs.write_checkpoint(run_dir, tuner.save, info)
        except OSError as exc:
            logger.warning("checkpoint of epoch %s not written: %s", event["epoch"], exc)
            try:
                runs.append_event(run_dir, {"type": "warning", "message": f"Checkpoint of epoch {event['epoch']} "
                                            f"not written ({exc.strerror or exc}); the previous one is kept."})
            except OSError:
                pass

    return on_checkpoint


def _disk_message(exc: OSError, run_dir: Path) -> str:
    kept = " The best checkpoint so far is kept in checkpoint/." if runs.read_checkpoint(run_dir) else ""
    return (f"The disk is full ({exc.strerror or exc}) while writing {exc.filename or 'the run'}: free space "
            f"where the runs folder is ({run_dir.parent}) and train again.{kept}")


def execute(
    run_dir: str | Path,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[dict], None] | None = None,
) -> str:
    """Train the run in ``run_dir`` and write its results; return the final state."""
    from .engine import FineTuner
    from .training import TrainingCancelled

    run_dir = Path(run_dir)
    runs.write_status(run_dir, "running", pid=os.getpid(), started=runs._now(), message="", phase="Starting")
    stop_heartbeat = threading.Event()
    threading.Thread(target=_heartbeat, args=(run_dir, stop_heartbeat), daemon=True).start()
    try:
        config = runs.load_config(run_dir)
        frame = runs.load_data(run_dir)
        tuner = FineTuner(config).fit(frame, on_progress=_HistoryWriter(run_dir, on_progress), should_stop=should_stop,
                                      on_checkpoint=_checkpointer(run_dir))
        runs.write_status(run_dir, "running", phase="Saving the model")
        runs.write_model(run_dir, tuner.save)
        from .backbones import count_parameters
        from .report import write_report

        metrics = write_report(run_dir, tuner, frame, lambda name: runs.write_status(run_dir, "running", phase=name))
        trainable, total = count_parameters(tuner.model_)
        metrics.update(epochs_run=len(tuner.history_), max_length=tuner.max_length_,
                       trainable_parameters=trainable, total_parameters=total)
        runs.write_metrics(run_dir, metrics)
        runs.drop_checkpoint(run_dir)  # model/ holds the same best weights now
        state = "succeeded"
        runs.write_status(run_dir, state, phase="Done", message="")
    except TrainingCancelled:
        state = "cancelled"
        runs.write_status(run_dir, state, phase="Cancelled", message="Cancelled by the user.")
    except FinTuneError as exc:
        state = "failed"
        runs.write_status(run_dir, state, kind=failure_kind(exc), message=str(exc), phase="Failed")
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        state = "failed"
        try:
            runs.write_status(run_dir, state, kind="disk_full", phase="Failed", message=_disk_message(exc, run_dir))
        except OSError:
            logger.error("disk full: the failed status could not be written either")
    except MemoryError:
        state = "failed"
        runs.write_status(run_dir, state, kind="out_of_memory", phase="Failed",
                          message="Out of memory: try a smaller --batch-size or --max-length.")
    except Exception as exc:
        state = "failed"
        (run_dir / "error.txt").write_text(traceback.format_exc())
        runs.write_status(run_dir, state, kind="other", phase="Failed",
                          message=f"Unexpected error {type(exc).__name__}: {exc} (details in error.txt).")
        raise
    finally:
        stop_heartbeat.set()
    return state


def _wait_warm() -> str | None:
    """Import the heavy libraries now, then wait for a run folder on stdin.

    The job manager keeps one such process ready, so a new run starts without paying Python's,
    torch's and transformers' start-up (seconds on a small CPU) before its first step.
    """
    from transformers import AutoModel, AutoTokenizer  # noqa: F401  (warms the import)

    from . import engine, models, training  # noqa: F401

    line = sys.stdin.readline().strip()
    if not line:
        return None  # the manager closed without giving us a run
    log = os.open(Path(line) / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, sys.stdout.fileno())
    os.dup2(log, sys.stderr.fileno())
    os.close(log)
    return line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--warm"]:
        run_dir = _wait_warm()
        if run_dir is None:
            return 0
        argv = [run_dir]
    if len(argv) != 1:
        print("usage: python -m core.worker RUN_DIR | --warm", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    # SIGTERM asks for a stop at the next training step; the job manager escalates to SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        state = execute(argv[0], should_stop=stop.is_set)
    except Exception:
        return 1
    return {"succeeded": 0, "cancelled": 0}.get(state, 1)


if __name__ == "__main__":
    sys.exit(main())
