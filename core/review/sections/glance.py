"""The boxes at the top of the model report: the run at a glance."""

from __future__ import annotations

from pathlib import Path

from ...stats.metrics import format_interval, metric_label
from .. import facts as f


def glance(run: f.RunFacts, limits: list[str]) -> list[tuple[str, str]]:
    """The boxes at the top of the page: headline metric, rows, split, backbone, limitations."""
    headline = run.headline
    test, intervals = run.metrics.get("test", {}), run.metrics.get("test_intervals", {})
    rows = run.metrics.get("rows", {})
    return [
        (
            f"Test {metric_label(headline)}",
            format_interval(test.get(headline), intervals.get(headline)),
        ),
        (
            "Rows train / validation / test",
            " / ".join(f"{rows.get(k, 0):,}" for k in ("train", "val", "test")),
        ),
        ("Split", run.metrics.get("split", "not recorded")),
        ("Backbone", Path(run.config.model.backbone).name or run.config.model.backbone),
        ("Known limitations", f"{len(limits)} found below"),
    ]
