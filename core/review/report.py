"""A model-risk report of one finished run: a single self-contained HTML file for reviewers.

:func:`write_model_report` reads the run folder (:mod:`.facts`), finds the limitations its numbers
imply (:mod:`.limitations`), draws each section (:mod:`.sections`, charts from :mod:`.figures`) and
writes one page (:mod:`.page`): a fingerprint of the data, the split, the model, what is needed to
reproduce it, test metrics with 95% intervals beside the baselines, calibration, fairness by
group, the reason codes of declined test rows and what would change a few of their decisions,
SHAP attributions of a few test rows, stability and leakage checks, and the limitations. CSS
and plotly.js are inlined, so the file opens offline and can be archived or mailed.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError, FinTuneError
from . import facts
from .limitations import limitations
from .page import Figures, page
from .sections.data import data_section, split_section
from .sections.decisions import REASON_ROWS, decisions_section, find_decisions
from .sections.fairness import fairness_section
from .sections.glance import glance
from .sections.model import model_section, reproducibility_section
from .sections.performance import calibration_section, metrics_section
from .sections.risks import attributions_section, limitations_section, stability_section

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"  # written into the run folder unless another output is given
DEFAULT_SHAP_ROWS = 20
SECTIONS = (
    ("data", "Data fingerprint"),
    ("split", "Split"),
    ("model", "Model"),
    ("reproducibility", "Reproducibility"),
    ("metrics", "Test metrics"),
    ("calibration", "Calibration"),
    ("fairness", "Fairness by group"),
    ("decisions", "Reason codes and what would change the decision"),
    ("attributions", "Top attributions"),
    ("stability", "Stability and leakage"),
    ("limitations", "Known limitations"),
)


def write_model_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    shap_rows: int = DEFAULT_SHAP_ROWS,
    on_progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the model-risk report of the succeeded run in ``run_dir`` as one HTML file.

    Returns its path; ``output`` defaults to ``RUN_DIR/report.html``. SHAP attributions are
    computed on the first ``shap_rows`` test rows; reason codes, SHAP values too, on the declined
    rows among the first :data:`REASON_ROWS`. 0 skips both, and the report says so.
    ``on_progress(message)`` hears each phase. Raises :class:`RunError` for a folder that is not
    a succeeded run.
    """
    from ..runs.files import atomic_write_bytes

    if not isinstance(shap_rows, numbers.Integral) or isinstance(shap_rows, bool) or shap_rows < 0:
        raise ConfigError(
            f"shap_rows={shap_rows!r}: use 0 (no attributions) or a number of test rows, e.g. 20."
        )
    progress = on_progress or (lambda message: None)
    run_dir = Path(run_dir)
    run = facts.read_run(run_dir)  # refusals come before any progress: the CLI shows just the error
    progress("Fingerprinting data.parquet")
    data_sha = facts.sha256_file(run_dir / "data.parquet")
    progress("Loading the model and measuring text truncation")
    run.tuner = facts.load_tuner(run)
    truncated = facts.truncation(run)
    if shap_rows == 0:
        found: facts.Attributions | str = (
            "Skipped: this report was written with --shap-rows 0 (no SHAP attributions)."
        )
    else:
        try:
            found = facts.attributions(run, shap_rows, progress)
        except FinTuneError as exc:  # the rest of the report is still worth having
            found = f"SHAP attributions could not be computed: {exc}"
    # Reason codes are SHAP values too: --shap-rows 0 skips them, any other number gives them.
    decided = find_decisions(run, progress, n_rows=REASON_ROWS if shap_rows else 0)
    progress("Writing the report")
    limits = limitations(facts.evidence(run, truncated))
    plot = Figures()
    parts = {
        "data": data_section(run, data_sha),
        "split": split_section(run),
        "model": model_section(run),
        "reproducibility": reproducibility_section(run),
        "metrics": metrics_section(run),
        "calibration": calibration_section(run, plot),
        "fairness": fairness_section(run),
        "decisions": decisions_section(run, decided),
        "attributions": attributions_section(run, found, plot),
        "stability": stability_section(run),
        "limitations": limitations_section(limits, found),
    }
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    source = run.raw_config.get("source") or "a table"
    html = page(
        title=f"Model risk report · run {run.path.name}",
        subtitle=f"Run {run.path.name} · {run.task} model of {run.target} on {source} · "
        f"written {generated}",
        glance=glance(run, limits),
        sections=[(key, name, parts[key]) for key, name in SECTIONS],
        footer=f"Written by fintune {facts.version('fintune')} from the run folder "
        f"{run.path.name}. "
        "Self-contained: it needs no network to open.",
    )
    path = Path(output) if output is not None else run_dir / REPORT_FILE
    atomic_write_bytes(path, html.encode("utf-8"))
    logger.info("model report of %s written to %s", run_dir.name, path)
    return path
