"""``python -m core.worker RUN_DIR`` keeps working: the worker lives in :mod:`core.runs.worker`."""

from .runs.worker import main

if __name__ == "__main__":
    raise SystemExit(main())
