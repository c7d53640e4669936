"""The explainer process: explanations computed outside the app, one request at a time.

A dashboard's server thread must stay free to draw pages: an explanation on a small CPU keeps
every core busy for seconds to minutes (text SHAP runs the backbone on thousands of masked
texts). :class:`ExplainerProcess` starts one long-lived process (``python -m core.explain.worker``,
a fresh interpreter like the training workers, at lower CPU priority) that imports torch and shap
and compiles shap's kernels once, keeps the runs it loaded, and serves requests from the app.

Nothing is pickled across: requests and replies are JSON messages over a pipe; the rows go in as
Parquet and the explanation comes back as files (:mod:`.results`), both in a folder the app owns.
The process ends with the app: it stops by itself when its pipe closes or its parent's pid
(``FINTUNE_PARENT_PID``) is gone, which also covers an app killed without running exit handlers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

logger = logging.getLogger(__name__)

# The explainer yields the CPU to the server, which must answer every tab. The price: on a machine
# shared with other busy processes it gets little CPU (alone with the app it gets all it can use).
NICE = 10
PARENT_POLL_S = 1.0
PROBE_ROWS = 16  # rows of the timed check; 4 when one row already takes SLOW_ROW_S
SLOW_ROW_S = 0.5
PROBE_SLOW_ROWS = 4
_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # on the worker's path: `core` imports


# --------------------------------------------------------------------------- the app's side


class ExplainerProcess:
    """The app's handle on one explainer process: start it, send requests, read replies."""

    def __init__(self, *, warm_up: bool = True):
        from multiprocessing.connection import Pipe

        from ..runs.process import PARENT_ENV

        self._conn, child = Pipe(duplex=True)
        self._send_lock = threading.Lock()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env[PARENT_ENV] = str(os.getpid())
        argv = [sys.executable, "-m", "core.explain.worker", str(child.fileno())]
        try:
            # A fresh interpreter (not a fork of the app's threads), started like the training
            # workers, so that it never re-runs the caller's main module.
            self.process = subprocess.Popen(
                [*argv, *(["--warm"] if warm_up else [])],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            child.close()  # the child holds its end; ours alone here, so its death reads as EOF

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: dict) -> bool:
        """Send a request; False when the process is gone."""
        data = json.dumps(message).encode()
        with self._send_lock:
            try:
                self._conn.send_bytes(data)
                return True
            except (OSError, ValueError):  # a broken pipe, or our end closed
                return False

    def receive(self, timeout: float) -> dict | None:
        """The next reply, or None after ``timeout`` s; raises EOFError when the process is
        gone."""
        try:
            if not self._conn.poll(timeout):
                return None
            return json.loads(self._conn.recv_bytes())
        except (OSError, ValueError) as exc:  # a reset pipe, or our end closed by stop()
            raise EOFError(str(exc)) from exc

    def describe_exit(self) -> str:
        """How the process ended, for an error message."""
        try:
            code = self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if code < 0:
            import signal

            name = signal.Signals(-code).name
            hint = ", most often by the system running out of memory" if name == "SIGKILL" else ""
            return f"was killed ({name}{hint})"
        return f"exited with code {code}"

    def stop(self) -> None:
        """End the process now (a request it was computing is dropped)."""
        try:
            self._conn.close()
        except OSError:
            pass
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --------------------------------------------------------------------------- the process's side


class _ParentGone(Exception):
    """The app that started this process has ended (its pipe closed or its pid is gone)."""


class _Channel:
    """The process's end of the pipe: JSON in and out, cancel requests noted as they come."""

    def __init__(self, conn, parent_pid: int):
        self.conn, self.parent_pid = conn, parent_pid
        self.cancelled: set[str] = set()

    def send(self, message: dict) -> None:
        try:
            self.conn.send_bytes(json.dumps(message).encode())
        except OSError as exc:
            raise _ParentGone() from exc

    def _parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def _take(self) -> dict:
        try:
            message = json.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            raise _ParentGone() from exc
        if message.get("type") == "cancel":
            self.cancelled.add(message["id"])
        return message

    def next_request(self) -> dict:
        """Wait for the next request (cancels of finished jobs are dropped)."""
        while True:
            if not self.conn.poll(PARENT_POLL_S):
                if not self._parent_alive():
                    raise _ParentGone()
                continue
            message = self._take()
            if message.get("type") != "cancel":
                self.cancelled.clear()  # cancels of jobs that had already finished
                return message

    def should_stop(self, job_id: str) -> bool:
        """Read what came in meanwhile: True once ``job_id`` is cancelled (or the app is gone)."""
        while self.conn.poll():
            self._take()
        if not self._parent_alive():
            raise _ParentGone()
        return job_id in self.cancelled


def main(argv: list[str] | None = None) -> int:
    """``python -m core.explain.worker FD [--warm]``: serve the app on the pipe end ``FD``."""
    from multiprocessing.connection import Connection

    from ..runs.process import PARENT_ENV

    argv = sys.argv[1:] if argv is None else argv
    conn = Connection(int(argv[0]))
    serve(conn, "--warm" in argv[1:], int(os.environ.get(PARENT_ENV) or os.getppid()))
    return 0


def serve(conn, warm_up: bool, parent_pid: int) -> None:
    """The explainer process's main loop: answer requests until the app goes."""
    try:
        os.nice(NICE)
    except OSError:
        pass
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    channel = _Channel(conn, parent_pid)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True
    ).start()
    try:
        if warm_up:
            _warm_up()
        channel.send({"type": "ready"})
        explained: set[str] = set()
        while True:
            request = channel.next_request()
            _answer(channel, request, explained)
    except (_ParentGone, KeyboardInterrupt):
        return


def _watch_parent(parent_pid: int) -> None:
    """End this process once the app is gone, even in the middle of warming up or of a chunk:
    nobody would read what it computes."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    logging.shutdown()
    os._exit(0)


def _warm_up() -> None:
    """Import the heavy libraries and compile shap's kernels before the first request."""
    try:
        from transformers import AutoModel, AutoTokenizer  # noqa: F401  (warms the import)

        from ..runs import fitted  # noqa: F401
        from .attributions import warm_up_explanations

        warm_up_explanations()
    except Exception:  # noqa: BLE001 - only a speed-up: the first request pays instead
        logger.warning("warming up the explainer failed", exc_info=True)


def _answer(channel: _Channel, request: dict, explained: set[str]) -> None:
    """Compute one request and send its outcome: done, cancelled or failed."""
    from ..errors import FinTuneError
    from .attributions import ExplanationCancelled

    job_id = request["id"]
    run_dir = request["run_dir"]
    try:
        started = time.perf_counter()
        reply = {"type": "done", "id": job_id, "warm": run_dir in explained}
        kind = request["type"]
        if kind == "explain":
            _explain(channel, request)
            explained.add(run_dir)
        elif kind == "tokens":
            _tokens(request)
        elif kind == "probe":
            reply["points"] = _probe(run_dir)
            explained.add(run_dir)
        else:
            raise ValueError(f"unknown request {kind!r}")
        reply["seconds"] = time.perf_counter() - started
        channel.send(reply)
    except ExplanationCancelled:
        channel.send({"type": "cancelled", "id": job_id})
    except _ParentGone:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the app, typed
        user = isinstance(exc, FinTuneError)
        if not user:
            logger.exception("explaining %s failed", run_dir)
        channel.send(
            {
                "type": "failed",
                "id": job_id,
                "error": {
                    "kind": type(exc).__name__,
                    "message": str(exc),
                    "user": user,
                    "traceback": "" if user else traceback.format_exc(),
                },
            }
        )


def _explain(channel: _Channel, request: dict) -> None:
    import pandas as pd

    from .attributions import explain_rows
    from .results import write_explanation

    folder = Path(request["folder"])
    options = dict(request["options"])
    if options.pop("background_file", None):
        options["background"] = pd.read_parquet(folder / "background.parquet")
    job_id = request["id"]
    explanation = explain_rows(
        request["run_dir"],
        pd.read_parquet(folder / "rows.parquet"),
        class_index=request["class_index"],
        on_progress=lambda fraction: channel.send(
            {"type": "progress", "id": job_id, "fraction": fraction}
        ),
        should_stop=lambda: channel.should_stop(job_id),
        **options,
    )
    write_explanation(explanation, folder)


def _tokens(request: dict) -> None:
    import pandas as pd

    from .attributions import explain_tokens
    from .results import write_explanation

    folder = Path(request["folder"])
    explanation = explain_tokens(
        request["run_dir"],
        pd.read_parquet(folder / "rows.parquet"),
        request["text_column"],
        class_index=request["class_index"],
    )
    write_explanation(explanation, folder, tokens=True)


def _probe(run_dir: str) -> list[list[float]]:
    """Load the run and time one row and a few rows of its held-out rows (after a first, untimed
    row that fills the caches a real explanation finds filled too)."""
    from ..runs.fitted import load_model
    from ..runs.folder import held_out_rows
    from .attributions import explain_rows

    load_model(run_dir)
    rows, _ = held_out_rows(Path(run_dir), PROBE_ROWS)

    def timed(n: int) -> float:
        started = time.perf_counter()
        explain_rows(run_dir, rows.head(n))
        return time.perf_counter() - started

    timed(1)
    one = timed(1)
    points = [[1, one]]
    more = min(len(rows), PROBE_ROWS if one < SLOW_ROW_S else PROBE_SLOW_ROWS)
    if more > 1:
        points.append([more, timed(more)])
    return points


if __name__ == "__main__":
    sys.exit(main())
