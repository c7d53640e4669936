"""``fintune predict``, ``export`` and ``serve``: a finished run's model put to use, on a file,
as a self-contained folder or over HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from ..access import is_loopback
from ..errors import ConfigError


@contextlib.contextmanager
def _progress_bar(what: str):
    """An ``on_progress(fraction)`` drawing a bar on stderr (when it is a terminal) from its first
    call on: runs without that step show none."""
    from tqdm import tqdm

    bars = []

    def on_progress(fraction: float) -> None:
        if not bars:
            bars.append(tqdm(total=100, desc=what, unit="%", file=sys.stderr, disable=None))
        bars[0].update(max(0, round(100 * fraction) - bars[0].n))

    try:
        yield on_progress
    finally:
        for bar in bars:
            bar.close()


def cmd_predict(args: argparse.Namespace) -> int:
    """Score a file with a finished run; warn about inputs that drifted since training."""
    from ..data.read import read_table
    from ..serving.predict import drift_report, score_file
    from ..serving.safe_csv import to_safe_csv

    frame = read_table(args.data)
    with _progress_bar("reasons") as on_progress:
        predictions, warnings = score_file(
            args.run_dir,
            frame,
            threshold=args.threshold,
            reasons=getattr(args, "reasons", True),
            on_progress=on_progress,
        )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    Path(args.output).write_bytes(to_safe_csv(predictions))
    print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    drift = drift_report(args.run_dir, frame, predictions)
    for row in drift[drift["level"] != "stable"].itertuples():
        print(
            f"warning: {row.input!r} has shifted since training (PSI {row.psi:.3f}, {row.level})",
            file=sys.stderr,
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a finished run's model as a self-contained folder (ONNX too)."""
    import json

    from ..serving.export import EXPORT_FILE, export_run

    out = export_run(args.run_dir, args.output, onnx=args.onnx)
    onnx = json.loads((out / EXPORT_FILE).read_text()).get("onnx")
    if onnx:
        print(
            f"model.onnx written by the {onnx['exporter']} exporter (opset {onnx['opset']})",
            file=sys.stderr,
        )
    print(out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a finished run over HTTP (a token first when reachable from other machines)."""
    try:
        import uvicorn

        from ..serving.service import TOKEN_ENV, create_app
    except ImportError as exc:
        raise ConfigError(
            f"fintune serve needs {exc.name or exc}: pip install fastapi uvicorn python-multipart."
        ) from exc

    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and token is None:
        raise ConfigError(
            f"--host {args.host} makes the service reachable from other machines: "
            f"set {TOKEN_ENV} first (clients then send 'Authorization: Bearer "
            "<token>'), or keep 127.0.0.1."
        )
    app = create_app(
        args.run_dir, token=token, request_timeout=args.request_timeout, threads=args.threads
    )  # loads the run now: a run without a model fails here
    print(
        f"FinTune scoring service: http://{args.host}:{args.port} (API docs at /docs)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, server_header=False, log_level="info")
    return 0
