"""Reason-code speed: reasons for every declined row of 1,000 credit rows (issue 19).

    python -m bench.reasons --rows 1000 [--run DIR] [--repeats 3] [--runs-dir runs]

Trains (or reuses, ``--run``) the MiniLM credit run of ``bench.explain`` (backbone frozen, table
read by cells: the defaults for this table), then times ``reason_codes`` on the first ``--rows``
rows of sample_data/credit_risk.csv with the run's saved decision: scoring the rows, finding the
approved reference (the in-memory cache is cleared before each repeat, so it counts), SHAP of the
declined rows against it and the wording. Prints the median of the repeats (at least 3) and, apart,
the first call in the process (loading the run, encoding its cell vocabulary, compiling shap's
numba kernels). Target on a 2-core CPU: under 30 s for 1,000 rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench.explain import SAMPLES, load, train_run
from core.data.read import read_table
from core.explain import reasons as reasons_module
from core.explain.reasons import reason_codes

TARGET_S = 30.0  # for 1,000 rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=None, help="reuse a finished credit_risk run")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where a new run goes")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="at least 3; the median counts")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error(f"--repeats {args.repeats}: use 3 or more (the median of them is reported)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    run_dir = args.run or train_run("credit", args.runs_dir)
    rows = read_table(SAMPLES / "credit_risk.csv").head(args.rows)
    load_before = load()
    started = time.perf_counter()
    reason_codes(run_dir, rows.head(2))
    first_call = time.perf_counter() - started

    seconds = []
    for _ in range(args.repeats):
        reasons_module._cache.clear()  # the reference is scored again, as a new process would
        started = time.perf_counter()
        codes = reason_codes(run_dir, rows)
        seconds.append(time.perf_counter() - started)
    frame = codes.frame
    declined = frame[frame["declined"]]
    stats = codes.explanation.stats
    median = statistics.median(seconds)
    print(
        f"\nrun {run_dir}; decision: P({codes.decision.positive_class}) >= "
        f"{codes.decision.threshold:.3f}; reference: {codes.reference}"
    )
    print(
        f"load average (1/5/15 min) before: {load_before}, after: {load()}; {os.cpu_count()} CPUs; "
        f"first call in the process (load, cell vocabulary, numba): {first_call:.1f} s"
    )
    print(
        f"reasons for {len(rows):,} rows ({len(declined):,} declined, {stats.model_rows:,} model "
        f"rows): median {median:.2f} s of {', '.join(f'{s:.2f}' for s in seconds)} "
        f"(target < {TARGET_S:.0f} s for 1,000 rows)"
    )
    print("\nthree declined rows:")
    for index, line in declined.head(3).iterrows():
        reasons = [r for r in line.filter(like="reason_") if r]
        print(f"  row {index} (P = {line['probability']:.2f}): " + "; ".join(reasons))
    print("target: " + ("met" if median < TARGET_S * len(rows) / 1000 else "MISSED"))


if __name__ == "__main__":
    main()
