"""Explanation speed: how long explaining N rows of a run takes on this machine, from timings.

Explaining costs a fixed part per call (reading the run's training rows for the reference,
preparing the model inputs) and a part per row (shap's masked rows through the head on a table
read by cells, a few milliseconds; backbone passes when text is read, far more). A line through
measured (rows, seconds) points, both parts kept non-negative, gives the estimate. The points
come from the explainer process: a timed check of one row and a few more when a run is first
shown, then every explanation it finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_POINTS = 8  # the most recent timings kept per run


@dataclass(frozen=True)
class ExplainSpeed:
    """Measured explanation speed of one run here: ``seconds(n)`` estimates n rows."""

    fixed_s: float | None  # per call; None when nothing could be measured
    per_row_s: float | None
    basis: str  # what it was measured on, for a caption: "this run's last explanation (...)"
    points: tuple[tuple[int, float], ...] = ()  # (rows, seconds) measured

    def seconds(self, n_rows: int) -> float | None:
        if self.fixed_s is None or self.per_row_s is None:
            return None
        return self.fixed_s + self.per_row_s * n_rows

    def with_point(self, n_rows: int, seconds: float) -> ExplainSpeed:
        """This speed refitted with a finished explanation's timing."""
        points = (*self.points, (int(n_rows), float(seconds)))[-MAX_POINTS:]
        plural = "s" if n_rows != 1 else ""
        took = f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2f}"
        return fit(points, f"this run's last explanation here ({n_rows} row{plural} in {took} s)")


def fit(points, basis: str) -> ExplainSpeed:
    """The speed through ``points`` ((rows, seconds) pairs): least squares, parts kept >= 0."""
    points = tuple((int(n), float(s)) for n, s in points)
    if not points:
        return ExplainSpeed(None, None, basis, ())
    rows = np.array([n for n, _ in points], dtype=np.float64)
    seconds = np.array([s for _, s in points], dtype=np.float64)
    if np.ptp(rows) == 0:  # one size measured: all of it per row (an upper bound)
        return ExplainSpeed(0.0, float(seconds.mean() / rows[0]), basis, points)
    per_row, fixed = np.polyfit(rows, seconds, 1)
    if per_row < 0:  # noise on a fast run: the time barely grows with rows
        per_row, fixed = 0.0, float(seconds.mean())
    elif fixed < 0:
        per_row, fixed = float((seconds * rows).sum() / (rows * rows).sum()), 0.0
    return ExplainSpeed(float(fixed), float(per_row), basis, points)
