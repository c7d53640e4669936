"""The REST scoring service under load (issue 14): a real ``fintune serve`` on 127.0.0.1.

    python -m bench.serve [--run DIR] [--runs-dir runs] [--rows 1000] [--clients 50] [--repeats 3]
                          [--threads N] [--check]

Trains (or reuses) a MiniLM text run on the sentiment sample, scores the benchmark rows offline with
``score_file`` (the reference answers), then starts ``fintune serve`` as a subprocess and measures:

* throughput: rows/s of one ``--rows``-row request, the median of ``--repeats``;
* ``/health`` latency (p50, p99, max), polled every 10 ms from a separate process while
  ``--clients`` clients send requests at once: small ones (1-20 rows) and one of ``--rows`` rows;
* whether every client got the right answers: the offline labels (where the offline top two
  classes are more than 0.02 apart) and probabilities within 0.02 (the server batches rows with
  other requests' rows, so bf16 sums may round differently).

Prints the server's inference settings (device, threads, precision, batch size, max_length), the
load average (other processes on the machine change the timings) and PASS/FAIL against the targets
(2-core CPU): >= 200 rows/s, /health under 100 ms at p50, p99 and max, all clients correct.
``--check`` exits 1 when a target fails. ``--threads`` sets FINTUNE_SERVE_THREADS for the server.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
SOURCE = "bench:serve"
TRAIN_ROWS = 2000
TARGET_ROWS_PER_S = 200.0
TARGET_HEALTH_S = 0.100
PROB_TOLERANCE = 0.02


# --------------------------------------------------------------------------- run and reference


def find_or_train(runs_dir: Path) -> Path:
    """The newest succeeded run this benchmark trained in ``runs_dir``, else a new one."""
    from core.runs import folder as runs

    if runs_dir.is_dir():
        mine = [
            s for s in runs.list_runs(runs_dir) if s.source == SOURCE and s.state == "succeeded"
        ]
        if mine:
            newest = max(mine, key=lambda s: s.created)
            print(f"reusing run {newest.path}", flush=True)
            return newest.path
    return train_run(runs_dir)


def train_run(runs_dir: Path) -> Path:
    """A short MiniLM run on the sentiment sample: sensible answers, not a quality benchmark."""
    from core.config import default_config
    from core.data.read import read_table
    from core.runs import folder as runs
    from core.runs.status import read_status
    from core.runs.worker import execute

    frame = read_table(SAMPLES / "fin_sentiment.csv").sample(TRAIN_ROWS, random_state=0)
    config = default_config("label").replace(model={"freeze_depth": 3}, train={"epochs": 1})
    run_dir = runs.create_run(runs_dir, config, frame, source=SOURCE)
    started = time.perf_counter()
    if execute(run_dir) != "succeeded":
        message = read_status(run_dir).get("message")
        raise SystemExit(f"training the benchmark run failed: {message}")
    seconds = time.perf_counter() - started
    print(f"trained the MiniLM sentiment run in {seconds:.0f} s: {run_dir}", flush=True)
    return run_dir


def benchmark_rows(n: int) -> pd.DataFrame:
    """Sentiment rows to score (the input column only), another sample than the training rows."""
    from core.data.read import read_table

    frame = read_table(SAMPLES / "fin_sentiment.csv")
    return frame.sample(min(n, len(frame)), random_state=7)[["text"]].reset_index(drop=True)


def reference(run_dir: Path, frame: pd.DataFrame) -> pd.DataFrame:
    from core.serving.predict import score_file

    table, _ = score_file(run_dir, frame)
    return table


def correct(answer: dict, expected: pd.DataFrame) -> tuple[bool, float]:
    """Whether a reply matches the offline predictions of its rows; the largest probability gap."""
    predictions = answer.get("predictions", [])
    if [p["row"] for p in predictions] != list(range(len(expected))):
        return False, float("inf")
    classes = [c[len("prob_") :] for c in expected.columns if c.startswith("prob_")]
    got = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    want = expected[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    gap = float(np.abs(got - want).max()) if len(got) else 0.0
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > PROB_TOLERANCE  # near-ties may flip with rounding
    labels = np.array([p["prediction"] for p in predictions], dtype=object)
    same = (labels == expected["prediction"].to_numpy(dtype=object)) | ~clear
    return bool(same.all() and gap <= PROB_TOLERANCE), gap


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(run_dir: Path, port: int, log_path: Path, threads: int | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FINTUNE_API_TOKEN"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads is not None:
        env["FINTUNE_SERVE_THREADS"] = str(threads)
    log = open(log_path, "wb")  # noqa: SIM115 - the server writes to it until it stops
    command = [sys.executable, "-m", "core.cli", "serve", str(run_dir), "--port", str(port)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(url: str, server: subprocess.Popen | None, log_path: Path) -> dict:
    deadline = time.monotonic() + 180
    while True:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"fintune serve exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                return json.load(answer)
        except OSError:
            if time.monotonic() > deadline:
                log = log_path.read_text()[-3000:]
                raise SystemExit(f"fintune serve did not answer within 180 s:\n{log}") from None
            time.sleep(0.3)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def post(url: str, body: bytes, timeout: float = 600) -> dict:
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.load(answer)


def body_of(frame: pd.DataFrame) -> bytes:
    return json.dumps({"rows": json.loads(frame.to_json(orient="records"))}).encode()


# --------------------------------------------------------------------------- measurements


def poll_health(url: str, stop_at, latencies) -> None:
    """GET /health every 10 ms, in a process of its own: the clients' threads do not delay it."""
    import urllib.request

    while not stop_at.is_set():
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=30) as answer:
                answer.read()
            latencies.append(time.perf_counter() - started)
        except OSError:
            latencies.append(float("inf"))
        time.sleep(0.01)


def throughput(
    url: str, frame: pd.DataFrame, expected: pd.DataFrame, repeats: int
) -> tuple[float, list, bool]:
    body, seconds, ok = body_of(frame), [], True
    for _ in range(repeats):
        started = time.perf_counter()
        answer = post(url, body)
        seconds.append(time.perf_counter() - started)
        ok &= correct(answer, expected)[0]
    return len(frame) / statistics.median(seconds), seconds, ok


def under_load(
    url: str, frame: pd.DataFrame, expected: pd.DataFrame, n_clients: int, big_rows: int
) -> dict:
    """``n_clients`` clients at once (one of ``big_rows`` rows, the others of 1-20), and /health
    polled meanwhile."""
    sizes = [big_rows] + [1 + (7 * k) % 20 for k in range(1, n_clients)]
    starts = np.cumsum([0, *sizes[:-1]]) % max(1, len(frame) - max(sizes))
    parts = [
        (
            frame.iloc[s : s + n].reset_index(drop=True),
            expected.iloc[s : s + n].reset_index(drop=True),
        )
        for s, n in zip(starts, sizes, strict=True)
    ]
    bodies = [body_of(rows) for rows, _ in parts]
    together = threading.Barrier(n_clients)

    def client(k: int) -> tuple[bool, float, float]:
        together.wait(timeout=60)
        started = time.perf_counter()
        try:
            answer = post(url, bodies[k])
        except OSError as exc:
            print(f"client {k}: {exc}", flush=True)
            return False, float("inf"), time.perf_counter() - started
        ok, gap = correct(answer, parts[k][1])
        return ok, gap, time.perf_counter() - started

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        latencies, stop_at = manager.list(), manager.Event()
        poller = context.Process(target=poll_health, args=(url, stop_at, latencies))
        poller.start()
        time.sleep(0.5)  # the poller is running before the clients start
        started = time.perf_counter()
        with ThreadPoolExecutor(n_clients) as pool:
            results = list(pool.map(client, range(n_clients)))
        wall = time.perf_counter() - started
        stop_at.set()
        poller.join(30)
        health = sorted(latencies)
    return {"results": results, "health": health, "wall": wall, "sizes": sizes}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=None, help="reuse this finished run")
    parser.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where the benchmark run is kept"
    )
    parser.add_argument("--rows", type=int, default=1000, help="rows of the big request")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="the server's torch threads (default: its own choice)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    parser.add_argument(
        "--url", default=None, help="measure a server already running there (with --run)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    run_dir = args.run or find_or_train(args.runs_dir)
    frame = benchmark_rows(max(args.rows, 2000))
    started = time.perf_counter()
    expected = reference(run_dir, frame)
    seconds = time.perf_counter() - started
    print(f"offline reference (score_file) for {len(frame):,} rows: {seconds:.1f} s", flush=True)
    big, big_expected = frame.head(args.rows), expected.head(args.rows)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fintune-bench-serve-{port}.log"
    load_before = "/".join(f"{x:.2f}" for x in os.getloadavg())
    if args.url:
        url, server = args.url.rstrip("/"), None
    else:
        server = start_server(run_dir, port, log_path, args.threads)
    try:
        health = wait_until_up(url, server, log_path)
        post(url, body_of(frame.head(64)))  # first request: allocator and kernel warm-up
        rate, seconds, rate_ok = throughput(url, big, big_expected, args.repeats)
        load = under_load(url, frame, expected, args.clients, args.rows)
    finally:
        if server is not None:
            stop(server)
    load_after = "/".join(f"{x:.2f}" for x in os.getloadavg())

    inference = health.get("inference", {})
    lat = load["health"]
    finite = [x for x in lat if np.isfinite(x)]
    p50, p99 = percentile(finite, 50), percentile(finite, 99)
    worst = max(lat) if lat else float("nan")
    oks = [ok for ok, _, _ in load["results"]]
    gap = max(g for _, g, _ in load["results"])
    small = [t for (_, _, t), n in zip(load["results"], load["sizes"], strict=True) if n <= 20]

    print(
        f"\nrun {run_dir.name} ({health.get('backbone')}, {health.get('task')}); server "
        "settings: "
        f"device {inference.get('device')}, threads {inference.get('threads')}, precision "
        f"{inference.get('precision')}, batch size {inference.get('batch_size')}, max_length "
        f"{inference.get('max_length')}, request timeout {inference.get('request_timeout_s')} s"
    )
    print(
        f"{os.cpu_count()} CPUs; load average (1/5/15 min) before: {load_before}, "
        f"after: {load_after}"
    )
    print(
        f"\nthroughput, one {args.rows:,}-row request: {rate:.0f} rows/s (median of "
        f"{', '.join(f'{s:.2f}' for s in seconds)} s)"
    )
    print(
        f"{args.clients} clients at once (one of {args.rows:,} rows, {len(small)} of 1-20 rows): "
        f"all done in {load['wall']:.2f} s; small requests answered in "
        f"{percentile(small, 50):.2f} s median, {max(small):.2f} s max"
    )
    print(
        f"/health while they ran: {len(lat)} polls, p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {worst * 1000:.1f} ms"
    )
    print(
        f"correct answers: {sum(oks)}/{len(oks)} clients (largest probability gap to the offline "
        f"score_file: {gap:.2g})"
    )

    ms = TARGET_HEALTH_S * 1000
    checks = [
        (
            f"throughput >= {TARGET_ROWS_PER_S:.0f} rows/s",
            rate >= TARGET_ROWS_PER_S and rate_ok,
            f"{rate:.0f}",
        ),
        (f"/health p50 < {ms:.0f} ms", p50 < TARGET_HEALTH_S, f"{p50 * 1000:.1f} ms"),
        (f"/health p99 < {ms:.0f} ms", p99 < TARGET_HEALTH_S, f"{p99 * 1000:.1f} ms"),
        (f"/health max < {ms:.0f} ms", worst < TARGET_HEALTH_S, f"{worst * 1000:.1f} ms"),
        (f"all {args.clients} clients answered correctly", all(oks), f"{sum(oks)}/{len(oks)}"),
    ]
    print()
    for name, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<36} {value}")
    failed = [name for name, ok, _ in checks if not ok]
    if failed and args.check:
        print(f"\n{len(failed)} target(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
