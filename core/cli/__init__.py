"""``fintune``: train (on one process or several), sweep freeze depths, predict, explain, choose
thresholds, compare runs, derive market features, serve a run over HTTP, write a model report,
compare a run's decisions across groups, export a run (ONNX too), list runs, start the dashboard.

A parser and thin commands over ``core``: runs are created, followed and supervised by
:mod:`core.runs`. Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 anything
else.

The commands, by pipeline stage: :mod:`.data` (market-features), :mod:`.training` (train,
sweep), :mod:`.review` (runs, threshold, compare, explain, report, fairness), :mod:`.serving`
(predict, export, serve) and :mod:`.dashboard`; this module routes to them.
"""

from __future__ import annotations

import logging
import os
import sys

from ..arguments import parser, with_flags
from ..errors import BackboneError, ConfigError, DataError, FinTuneError, RunError
from .dashboard import cmd_dashboard
from .data import cmd_market_features
from .review import (
    cmd_compare,
    cmd_explain,
    cmd_fairness,
    cmd_report,
    cmd_runs,
    cmd_threshold,
)
from .serving import cmd_export, cmd_predict, cmd_serve
from .training import cmd_sweep, cmd_train
from .whatif import cmd_whatif

BAD_INPUT = (DataError, ConfigError, BackboneError, RunError)


HANDLERS = {
    "train": cmd_train,
    "sweep": cmd_sweep,
    "predict": cmd_predict,
    "explain": cmd_explain,
    "runs": cmd_runs,
    "dashboard": cmd_dashboard,
    "threshold": cmd_threshold,
    "compare": cmd_compare,
    "market-features": cmd_market_features,
    "export": cmd_export,
    "serve": cmd_serve,
    "report": cmd_report,
    "whatif": cmd_whatif,
    "fairness": cmd_fairness,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command, return its exit code (2: bad input)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = HANDLERS[args.command](args)
    except BAD_INPUT as exc:
        print(f"error: {with_flags(str(exc))}", file=sys.stderr)
        code = 2
    except FinTuneError as exc:
        print(f"error: {with_flags(str(exc))}", file=sys.stderr)
        code = 1
    from ..training.distributed import exit_rank

    return exit_rank(code)
