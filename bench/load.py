"""Load: N dashboard sessions watching a running fine-tuning job.

    python -m bench.load [--sessions 20] [--seconds 30]

A real job (bundled MiniLM on the credit sample) trains in its worker process. Training throughput
is measured from the run's own step events, first with no viewer, then while N Streamlit sessions
watch it, then with no viewer again. Each session is an AppTest in its own process (AppTest is not
thread-safe) that, as often as an open Train page's live fragment (``live.LIVE_REFRESH_S``), runs
what that fragment runs (``live.live_run``; ``--view page`` reruns the whole page instead), and
times every run. Prints render times (median, 95th percentile, max) and the throughput with and
without viewers, measured side by side in one job. 20 viewer processes each pay their own
interpreter and AppTest's overhead where a server runs 20 sessions in one process, so the figures
are pessimistic.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 600  # backbone load and tokenising on a slow, busy 2-core machine


def _throughput(run_dir: Path, start: float, end: float, batch_size: int) -> float:
    """Samples per second between two wall-clock times, from the run's step events."""
    from core.runs import folder as runs
    from core.training.events import StepEvent

    steps = [
        (e.time, e.step)
        for e in runs.read_events(run_dir)
        if isinstance(e, StepEvent) and e.time is not None and start <= e.time <= end
    ]
    if len(steps) < 2:
        return float("nan")
    (t0, s0), (t1, s1) = steps[0], steps[-1]
    return (s1 - s0) * batch_size / (t1 - t0)


class JobNotReady(SystemExit):
    """The job failed, ended or hung before the measurement could use it."""


def wait_for_step(
    jobs, run_id: str, step: int, *, timeout_s: float, poll_s: float = 0.5, clock=time.monotonic
):
    """Wait until the job has taken ``step`` steps; its snapshot then.

    Fails fast, with the job's state and message, when the job ends first (failed, cancelled, or
    too short a run), and cancels it and fails when ``timeout_s`` passes (a hung job must not hang
    CI).
    """
    deadline = clock() + timeout_s
    while (snapshot := jobs.snapshot(run_id)).step < step:
        if snapshot.finished:
            raise JobNotReady(
                f"load benchmark: the training job ended as {snapshot.state} before step {step}: "
                f"{snapshot.message or 'no message'}"
            )
        if clock() > deadline:
            jobs.cancel(run_id)
            raise JobNotReady(
                f"load benchmark: training did not reach step {step} in {timeout_s:.0f} s "
                f"(state {snapshot.state}, step {snapshot.step}); the job was cancelled"
            )
        time.sleep(poll_s)
    return snapshot


def still_running(jobs, run_id: str, phase: str) -> None:
    """Fail when the job ended during a measured phase: its throughput would be meaningless."""
    snapshot = jobs.snapshot(run_id)
    if snapshot.finished:
        raise JobNotReady(
            f"load benchmark: the training job ended as {snapshot.state} during '{phase}': "
            f"{snapshot.message or 'no message'}"
        )


def _live_view() -> None:
    """What an open Train page's fragments run: the live run every LIVE_REFRESH_S, all runs every
    RUNS_REFRESH_S."""
    import streamlit as st

    from dashboard import live, state

    tick = st.session_state.get("tick", 0)
    st.session_state["tick"] = tick + 1
    live.live_run(state.manager(), state.current_run_id())
    if tick % round(live.RUNS_REFRESH_S / live.LIVE_REFRESH_S) == 0:
        live.runs_table(state.manager().list_runs())


def _session_until(app, runs_dir, ready, go, until, results) -> None:
    """One viewer: open the Train page, then rerun it once a second until the parent's end time."""
    os.environ["FINTUNE_RUNS_DIR"] = runs_dir
    os.environ["FINTUNE_WARM_WORKER"] = (
        "0"  # a viewer process must not start a spare training worker
    )
    from streamlit.testing.v1 import AppTest

    from dashboard.live import LIVE_REFRESH_S as refresh

    if app == "fragment":
        at = AppTest.from_function(_live_view, default_timeout=60)
        at.run()
    else:
        at = AppTest.from_file(app, default_timeout=60)
        at.run()
        at.switch_page("views/train.py").run()
    ready.release()
    go.wait()
    renders, errors = [], 0
    while time.time() < until.value:
        started = time.perf_counter()
        at.run()
        renders.append(time.perf_counter() - started)
        errors += bool(at.exception)
        time.sleep(max(0.0, refresh - (time.perf_counter() - started)))  # the fragment's run_every
    results.put((renders, errors))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if a session raised or a render took 2 s or more (CI)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=STARTUP_TIMEOUT_S,
        help="seconds to wait for the job's step 10 before failing (default %(default)s)",
    )
    parser.add_argument(
        "--view",
        choices=["fragment", "page"],
        default="fragment",
        help="what each viewer reruns every second: the live fragment or the whole page",
    )
    args = parser.parse_args()

    runs_dir = Path(tempfile.mkdtemp(prefix="fintune-load-")) / "runs"
    os.environ["FINTUNE_RUNS_DIR"] = str(runs_dir)
    import core
    from dashboard import state

    jobs = state.manager()
    batch_size = 16
    # Freeze 0 pinned: the backbone trains, the heaviest load viewers can compete with ("auto"
    # would freeze it on this table and the run would end before the measurement does).
    config = core.default_config("credit_risk").replace(
        model={"freeze_depth": 0},
        train={"epochs": 100, "patience": 100, "batch_size": batch_size},
    )
    run_id = jobs.submit(
        config, core.read_table(ROOT / "sample_data" / "credit_risk.csv"), source="credit_risk.csv"
    )
    run_dir = runs_dir / run_id
    try:  # past start-up, tokenising and the first steps
        wait_for_step(jobs, run_id, 10, timeout_s=args.startup_timeout)
    except JobNotReady:
        jobs.shutdown()
        raise

    phases = {}
    start = time.time()
    time.sleep(args.seconds)
    phases["alone (before)"] = (start, time.time())
    still_running(jobs, run_id, "alone (before)")

    # Sessions start (imports, first page) before the measured window, then all go at once.
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    app = "fragment" if args.view == "fragment" else str(ROOT / "dashboard" / "app.py")
    start_at = time.time() + 10_000  # placeholder until every session is ready
    viewers = []
    for _ in range(args.sessions):
        until = context.Value("d", start_at)
        viewers.append(
            (
                context.Process(
                    target=_session_until, args=(app, str(runs_dir), ready, go, until, results)
                ),
                until,
            )
        )
    for process, _ in viewers:
        process.start()
    for _ in viewers:
        ready.acquire()
    start = time.time()
    for _, until in viewers:
        until.value = start + args.seconds
    go.set()
    time.sleep(args.seconds)
    phases[f"{args.sessions} sessions watching"] = (start, time.time())
    renders, errors = [], 0
    for _ in viewers:
        times, failed = results.get(timeout=120)
        renders += times
        errors += failed
    for process, _ in viewers:
        process.join(timeout=30)

    start = time.time()
    time.sleep(args.seconds)
    phases["alone (after)"] = (start, time.time())
    still_running(jobs, run_id, "alone (after)")  # also covers the watched phase before it
    jobs.cancel(run_id)
    jobs.wait(run_id, timeout=60)
    jobs.shutdown()

    rates = {name: _throughput(run_dir, a, b, batch_size) for name, (a, b) in phases.items()}
    alone = statistics.mean([rates["alone (before)"], rates["alone (after)"]])
    watched = rates[f"{args.sessions} sessions watching"]
    ordered = sorted(renders)
    print(
        f"training throughput (samples/s, MiniLM, batch {batch_size}, freeze 0, {os.cpu_count()} "
        "CPUs):"
    )
    for name, rate in rates.items():
        print(f"  {name:<24} {rate:7.1f}")
    print(
        f"  drop with viewers        {100 * (1 - watched / alone):6.1f} %  (against the mean of "
        "both alone phases)"
    )
    print(
        f"page renders of {args.sessions} sessions: {len(ordered)} renders, median "
        f"{statistics.median(ordered):.2f} s, 95th percentile "
        f"{ordered[int(0.95 * (len(ordered) - 1))]:.2f} s, max {ordered[-1]:.2f} s; under 2 s: "
        f"{sum(r < 2 for r in ordered) / len(ordered):.0%}; exceptions: {errors}"
    )
    if args.check and (errors or not ordered or ordered[-1] >= 2.0):
        raise SystemExit("load check failed: a session raised, or a render took 2 s or more")


if __name__ == "__main__":
    main()
