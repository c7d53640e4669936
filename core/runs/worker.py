"""Execute one run folder: ``python -m core.runs.worker RUN_DIR``.

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

from ..errors import BackboneError, ConfigError, DataError, FinTuneError, TrainingError
from ..training.distributed import exit_rank, launched_world_size
from ..training.events import (
    CheckpointEvent,
    EpochEvent,
    PhaseEvent,
    StepEvent,
    WarningEvent,
    parse_event,
)
from . import checkpoint, tracking
from . import folder as runs
from .split_file import read_split
from .status import HEARTBEAT_S, touch_heartbeat, utc_now, write_status

logger = logging.getLogger(__name__)

STEP_EVENT_INTERVAL_S = 0.5  # history.jsonl gets at most two step events a second


def failure_kind(exc: BaseException) -> str:
    """The failure kind recorded in status.json for an exception that ended a run."""
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
        parsed = parse_event(event)
        if isinstance(parsed, StepEvent):
            # Only step events are thinned, and only they reset the clock: epoch events must not
            # starve the step feed when epochs are shorter than the interval.
            now = time.monotonic()
            is_last = parsed.step == parsed.total_steps
            if not is_last and now - self._last_step_write < STEP_EVENT_INTERVAL_S:
                return
            self._last_step_write = now
        runs.append_event(self.run_dir, event)
        if isinstance(parsed, PhaseEvent):
            write_status(self.run_dir, "running", phase=parsed.phase)


RANK_WATCH_S = 1.0  # how often the main process looks for a failed rank's error
RANK_GRACE_S = (
    10.0  # time the main thread gets to report a failed rank itself before the watcher does
)


def _heartbeat(run_dir: Path, stop: threading.Event, world: int = 1) -> None:
    """Keep the run's heartbeat file fresh; with several processes, also watch for a failed rank.

    A rank that fails leaves the others blocked in a collective (NCCL waits for minutes): the main
    process marks the run failed with that rank's error and exits, and the launcher ends the rest.
    """
    from ..training.distributed import rank_failure, read_rank_errors

    last_beat, failed_since = time.monotonic(), None
    while not stop.wait(RANK_WATCH_S if world > 1 else HEARTBEAT_S):
        now = time.monotonic()
        if now - last_beat >= HEARTBEAT_S or world == 1:
            last_beat = now
            try:
                touch_heartbeat(run_dir)
            except OSError:
                pass  # a full disk must not kill training; the final status write will report it
        if world > 1 and read_rank_errors(run_dir):
            failed_since = failed_since or now
            if now - failed_since >= RANK_GRACE_S and not stop.is_set():
                kind, message = rank_failure(read_rank_errors(run_dir)[0], world)
                write_status(run_dir, "failed", kind=kind, message=message, phase="Failed")
                logger.error("%s; stopping this process too", message)
                logging.shutdown()
                os._exit(1)


def _rank_cause(run_dir: Path, world: int, wait_s: float = 5.0) -> tuple[str, str] | None:
    """The failed rank's (kind, message), waiting briefly for its file: the error this process saw
    (a closed connection, a timed-out collective) is only the symptom."""
    from ..training.distributed import rank_failure, read_rank_errors

    deadline = time.monotonic() + wait_s
    while True:
        errors = read_rank_errors(run_dir)
        if errors:
            return rank_failure(errors[0], world)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _execute_rank(run_dir: Path, cluster, config, frame, should_stop) -> str:
    """A non-main rank: train its share, write nothing, and on failure leave its error for
    rank 0."""
    from ..training.distributed import write_rank_error
    from ..training.estimator import FineTuner
    from ..training.loop import TrainingCancelled

    try:
        frame = frame if frame is not None else runs.load_data(run_dir)
        splits = read_split(run_dir, frame=frame)  # None for folders made before split.json
        FineTuner(config).fit(frame, splits=splits, should_stop=should_stop, cluster=cluster)
        return "succeeded"
    except TrainingCancelled:
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - every failure must reach rank 0, whatever its type
        if isinstance(exc, FinTuneError):
            kind, message = failure_kind(exc), str(exc)
        elif isinstance(exc, MemoryError):
            kind, message = (
                "out_of_memory",
                "Out of memory: try a smaller batch size or max length.",
            )
        else:
            kind, message = "other", f"Unexpected error {type(exc).__name__}: {exc}"
            logger.error("rank %s failed:\n%s", cluster.rank, traceback.format_exc())
        try:
            write_rank_error(run_dir, cluster.rank, kind, message)
        except OSError as write_exc:  # e.g. another node without the shared runs folder
            logger.error(
                "rank %s failed (%s) and could not report it in %s: %s",
                cluster.rank,
                message,
                run_dir,
                write_exc,
            )
        return "failed"


def _checkpointer(run_dir: Path):
    """Save the best model so far after each improving epoch; a failed save (full disk) is logged
    and training goes on, with the previous checkpoint still whole."""

    def on_checkpoint(tuner, event: dict) -> None:
        epoch = EpochEvent.from_dict(event)
        info = {"epoch": epoch.epoch, "step": epoch.step, "val": epoch.val}
        try:
            checkpoint.write_checkpoint(run_dir, tuner.save, info)
            saved = CheckpointEvent(epoch=epoch.epoch, step=epoch.step)
            runs.append_event(run_dir, saved.to_dict())
        except OSError as exc:
            logger.warning("checkpoint of epoch %s not written: %s", epoch.epoch, exc)
            message = (
                f"Checkpoint of epoch {epoch.epoch} not written ({exc.strerror or exc}); "
                "the previous one is kept."
            )
            try:
                runs.append_event(run_dir, WarningEvent(message=message).to_dict())
            except OSError:
                pass

    return on_checkpoint


def _peak_memory_mb() -> float:
    """This process's high-water mark: GPU memory allocated when on a GPU, else resident RAM."""
    import resource

    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _disk_message(exc: OSError, run_dir: Path) -> str:
    kept = (
        " The best checkpoint so far is kept in checkpoint/."
        if checkpoint.read_checkpoint(run_dir)
        else ""
    )
    return (
        f"The disk is full ({exc.strerror or exc}) while writing {exc.filename or 'the run'}: free "
        f"space where the runs folder is ({run_dir.parent}) and train again.{kept}"
    )


def execute(
    run_dir: str | Path,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[dict], None] | None = None,
    config=None,
    frame=None,
) -> str:
    """Train the run in ``run_dir`` and write its results; return the final state.

    Under a launcher of N processes every process calls this: they train together, the main one
    writes the run folder. ``config`` and ``frame`` default to the run folder's own (other nodes of
    a multi-node run that do not share the folder pass them in).
    """
    from ..training.distributed import current_cluster, fsdp_requested
    from ..training.estimator import FineTuner
    from ..training.loop import TrainingCancelled

    run_dir = Path(run_dir)
    cluster, world = None, launched_world_size()
    if world > 1 or fsdp_requested():
        config = config or runs.load_config(run_dir)
        cluster = current_cluster(config.train.device)
        if not cluster.is_main:
            return _execute_rank(run_dir, cluster, config, frame, should_stop)
    write_status(
        run_dir,
        "running",
        pid=os.getpid(),
        started=utc_now(),
        message="",
        phase="Starting",
        processes=world,
    )
    stop_heartbeat = threading.Event()
    threading.Thread(target=_heartbeat, args=(run_dir, stop_heartbeat, world), daemon=True).start()
    tracker = tracking.start(
        run_dir
    )  # MLflow, when asked for; after the heartbeat, as a slow server may stall it
    try:
        config = config or runs.load_config(run_dir)
        frame = frame if frame is not None else runs.load_data(run_dir)
        splits = read_split(run_dir, frame=frame)  # None for folders made before split.json
        tuner = FineTuner(config).fit(
            frame,
            on_progress=_HistoryWriter(run_dir, tracker.watch(on_progress)),
            splits=splits,
            should_stop=should_stop,
            on_checkpoint=_checkpointer(run_dir),
            cluster=cluster,
        )
        write_status(run_dir, "running", phase="Saving the model")
        runs.record_resolved_config(run_dir, tuner.config)
        runs.write_model(run_dir, tuner.save)
        from ..model.backbones import count_parameters
        from .finish import write_report

        metrics = write_report(
            run_dir, tuner, frame, lambda name: write_status(run_dir, "running", phase=name)
        )
        trainable, total = count_parameters(tuner.model_)
        metrics.update(
            epochs_run=len(tuner.history_),
            max_length=tuner.max_length_,
            trainable_parameters=trainable,
            total_parameters=total,
            processes=world,
            training_seconds=tuner.history_[-1]["elapsed_s"] if tuner.history_ else None,
            peak_memory_mb=_peak_memory_mb(),
        )
        runs.write_metrics(run_dir, metrics)
        checkpoint.drop_checkpoint(run_dir)  # model/ holds the same best weights now
        state = "succeeded"
        write_status(run_dir, state, phase="Done", message="")
    except TrainingCancelled:
        state = "cancelled"
        message = (
            "The app that started this run stopped, so the run stopped too: start it again."
            if _ORPHANED.is_set()
            else "Cancelled by the user."
        )
        write_status(run_dir, state, phase="Cancelled", message=message)
    except FinTuneError as exc:
        state = "failed"
        write_status(run_dir, state, kind=failure_kind(exc), message=str(exc), phase="Failed")
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        state = "failed"
        try:
            write_status(
                run_dir,
                state,
                kind="disk_full",
                phase="Failed",
                message=_disk_message(exc, run_dir),
            )
        except OSError:
            logger.error("disk full: the failed status could not be written either")
    except MemoryError:
        state = "failed"
        write_status(
            run_dir,
            state,
            kind="out_of_memory",
            phase="Failed",
            message="Out of memory: try a smaller batch size or max length.",
        )
    except Exception as exc:
        state = "failed"
        (run_dir / "error.txt").write_text(traceback.format_exc())
        cause = _rank_cause(run_dir, world) if world > 1 else None
        if cause is not None:
            write_status(run_dir, state, kind=cause[0], message=cause[1], phase="Failed")
            return state
        if world > 1:
            seen = " ".join(str(exc).split())
            seen = seen if len(seen) <= 160 else seen[:157] + "..."
            message = (
                f"Training on {world} processes stopped because another process died without a "
                "word, most often killed by the system for lack of memory: try a smaller batch "
                f"size or max length. This process saw: {type(exc).__name__}: {seen} (details in "
                "worker.log and error.txt)."
            )
        else:
            message = f"Unexpected error {type(exc).__name__}: {exc} (details in error.txt)."
        write_status(run_dir, state, kind="other", phase="Failed", message=message)
        raise
    finally:
        stop_heartbeat.set()
        tracker.finish()  # never raises; a tracking failure is a warning event
    return state


def _wait_warm() -> str | None:
    """Import the heavy libraries now, then wait for a run folder on stdin.

    The job manager keeps one such process ready, so a new run starts without paying Python's,
    torch's and transformers' start-up (seconds on a small CPU) before its first step.
    """
    from transformers import AutoModel, AutoTokenizer  # noqa: F401  (warms the import)

    from ..model import fusion as models  # noqa: F401
    from ..training import estimator as engine  # noqa: F401
    from ..training import loop as training  # noqa: F401

    line = sys.stdin.readline().strip()
    if not line:
        return None  # the manager closed without giving us a run
    log = os.open(Path(line) / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, sys.stdout.fileno())
    os.dup2(log, sys.stderr.fileno())
    os.close(log)
    return line


PARENT_POLL_S = 1.0
_ORPHANED = threading.Event()  # set when the process that started this worker went away


def _watch_parent(stop: threading.Event) -> None:
    """Stop the run at its next step once the app that started it has gone.

    Workers run in their own session (so that cancel can kill their whole tree), which also
    means a dashboard stopped with SIGTERM or a closed terminal does not take them along: left
    alone they would train on as orphans nobody watches. The starter's pid comes in the
    environment (every rank of a multi-process run gets it through the launcher).
    """
    from .process import PARENT_ENV

    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    while not stop.is_set():
        try:
            os.kill(parent, 0)  # signal 0: is it still there?
        except (ProcessLookupError, PermissionError):  # gone (or its pid reused by another user)
            _ORPHANED.set()
            stop.set()
            return
        time.sleep(PARENT_POLL_S)


def main(argv: list[str] | None = None) -> int:
    """``python -m core.runs.worker RUN_DIR | --warm``: execute one run folder."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--warm"]:
        run_dir = _wait_warm()
        if run_dir is None:
            return 0
        argv = [run_dir]
    if len(argv) != 1:
        print("usage: python -m core.runs.worker RUN_DIR | --warm", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    # SIGTERM asks for a stop at the next training step; the job manager escalates to SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_watch_parent, args=(stop,), name="parent-watch", daemon=True).start()
    try:
        state = execute(argv[0], should_stop=stop.is_set)
    except Exception:
        state = "failed"
    return exit_rank({"succeeded": 0, "cancelled": 0}.get(state, 1))


if __name__ == "__main__":
    sys.exit(main())
