"""The model-risk report: sections and numbers per task, escaping, --shap-rows 0, refusals, CLI."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from core import cli
from core.config import LORA_FIELDS, DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import ConfigError, RunError
from core.review.report import REPORT_FILE, write_model_report
from core.runs import folder as runs
from core.runs.status import read_status, write_status
from core.runs.worker import execute
from tests.conftest import credit_table, regression_table, sentiment_table

pytestmark = pytest.mark.timeout(300)

HOSTILE_COLUMN = "<script>alert(1)</script>"
HOSTILE_SOURCE = "<img src=x onerror=alert(2)>.csv"
HOSTILE_CLASS = "<b>bearish</b>"
HEADINGS = (
    "Data fingerprint",
    "Split",
    "Model",
    "Reproducibility",
    "Test metrics",
    "Calibration",
    "Fairness by group",
    "Reason codes and what would change the decision",
    "Top attributions",
    "Stability and leakage",
    "Known limitations",
)


def _config(backbone: str, target: str) -> RunConfig:
    return RunConfig(
        data=DataConfig(target=target),
        model=ModelConfig(backbone=backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2, seed=0, precision="fp32"),
    )


def _finished(root: Path, config: RunConfig, frame, source: str) -> Path:
    run_dir = runs.create_run(root, config, frame, source=source)
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def binary(tmp_path_factory, tiny_backbone):
    """A credit run with a hostile column name and file name, and its report (SHAP on 8 rows)."""
    frame = credit_table().rename(columns={"housing": HOSTILE_COLUMN})
    run_dir = _finished(
        tmp_path_factory.mktemp("report_binary"),
        _config(tiny_backbone, "credit_risk"),
        frame,
        HOSTILE_SOURCE,
    )
    messages: list[str] = []
    path = write_model_report(run_dir, shap_rows=8, on_progress=messages.append)
    return run_dir, path, path.read_text(encoding="utf-8"), messages


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory, tiny_backbone):
    frame = sentiment_table()
    frame["label"] = frame["label"].replace({"bearish": HOSTILE_CLASS})
    run_dir = _finished(
        tmp_path_factory.mktemp("report_multi"), _config(tiny_backbone, "label"), frame, "news.csv"
    )
    return run_dir, write_model_report(run_dir, shap_rows=4).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def regression(tmp_path_factory, tiny_backbone):
    run_dir = _finished(
        tmp_path_factory.mktemp("report_reg"),
        _config(tiny_backbone, "spread_bps"),
        regression_table(),
        "spreads.csv",
    )
    return run_dir, write_model_report(run_dir, shap_rows=4).read_text(encoding="utf-8")


def _section(page: str, key: str) -> str:
    """The text of one <section id=KEY> (reports are flat: sections do not nest)."""
    return re.search(rf'<section id="{key}">(.*?)</section>', page, re.S).group(1)


def test_binary_report_holds_every_section_and_the_runs_numbers(binary):
    run_dir, path, page, messages = binary
    assert path == run_dir / REPORT_FILE
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    metrics = runs.read_metrics(run_dir)
    auc, (low, high) = metrics["test"]["roc_auc"], metrics["test_intervals"]["roc_auc"]
    assert f"{auc:.4f} [{low:.4f}, {high:.4f}]" in _section(page, "metrics")
    for baseline in metrics["baselines"]:
        assert f"<th>{baseline}</th>" in page  # side by side
    assert hashlib.sha256((run_dir / "data.parquet").read_bytes()).hexdigest() in _section(
        page, "data"
    )
    assert (
        hashlib.sha256((run_dir / "model" / "model.safetensors").read_bytes()).hexdigest() in page
    )
    decision = json.loads((run_dir / "decision.json").read_text())
    metrics_part = _section(page, "metrics")
    at = metrics["at_threshold"]
    assert f"{decision['threshold']:.4f}" in metrics_part
    assert f"{at['tp']} (TP)" in metrics_part and f"{at['tn']} (TN)" in metrics_part
    environment = _section(page, "reproducibility")
    for package in ("torch", "transformers", "pandas", "scikit-learn", "fintune"):
        assert f"<th>{package}</th><td>{metadata.version(package)}</td>" in environment
    status = read_status(run_dir)
    assert status["created"] in environment and status["finished"] in environment
    assert "chronological by &#x27;application_date&#x27;" in _section(page, "split")
    assert "Reliability diagram" in _section(page, "calibration")
    assert f"{metrics['test']['ece']:.4f}" in _section(page, "calibration")
    assert "Mean |SHAP|" in _section(page, "attributions") and "8 test rows" in _section(
        page, "attributions"
    )
    assert "model score" in _section(page, "stability")
    limits = _section(page, "limitations")
    assert f"{high - low:.4f} wide" in limits  # 30 test rows: the interval's own width
    assert "What this report does not cover" in limits
    assert messages[0] == "Fingerprinting data.parquet" and messages[-1] == "Writing the report"


def test_report_is_self_contained(binary):
    page = binary[2]
    assert (
        "Plotly.newPlot" in page and page.count("plotly.js v") >= 1
    )  # the library itself, inlined
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing to fetch


def test_user_strings_are_escaped(binary):
    page = binary[2]
    assert "<script>alert" not in page and "<img src=x" not in page
    assert html.escape(HOSTILE_COLUMN) in _section(page, "data")
    assert html.escape(HOSTILE_SOURCE) in _section(page, "data")
    # Every script element is ours: plotly.js once, then one per figure.
    assert page.count("<script") == 1 + page.count('class="figure"')


def test_multiclass_report(multiclass):
    run_dir, page = multiclass
    metrics = runs.read_metrics(run_dir)
    assert f"{metrics['test']['accuracy']:.4f}" in _section(page, "metrics")
    assert "Confusion matrix (test, most probable class)" in page
    assert "mean top-class probability" in _section(page, "calibration")
    assert "<b>bearish" not in page and html.escape(HOSTILE_CLASS) in _section(page, "data")
    assert "Date range" not in page  # no date column, none shown


def test_regression_report(regression):
    run_dir, page = regression
    metrics = runs.read_metrics(run_dir)
    assert f"{metrics['test']['rmse']:.4f}" in _section(page, "metrics")
    assert "Target summary" in _section(page, "data")
    assert "Predicted against actual" in _section(page, "calibration")
    assert "Decision threshold" not in page
    assert "the predicted spread_bps" in _section(page, "attributions")


def test_shap_rows_zero_skips_attributions(binary, tmp_path):
    path = write_model_report(binary[0], tmp_path / "out" / "report.html", shap_rows=0)
    page = path.read_text(encoding="utf-8")
    assert "Skipped: this report was written with --shap-rows 0" in _section(page, "attributions")
    assert "Mean |SHAP|" not in page
    with pytest.raises(ConfigError, match="shap_rows"):
        write_model_report(binary[0], tmp_path / "x.html", shap_rows=-1)


@pytest.mark.parametrize(
    "lora", [{"lora_rank": 8, "lora_alpha": 16, "lora_targets": ["query", "value"]}, None]
)
def test_lora_settings_are_shown_when_the_config_has_them(binary, tmp_path, lora):
    run_dir = tmp_path / binary[0].name
    shutil.copytree(binary[0], run_dir)
    raw = json.loads((run_dir / "config.json").read_text())
    raw["model"] = {
        k: v for k, v in raw["model"].items() if k not in LORA_FIELDS
    }  # as before LoRA existed
    raw["model"].update(lora or {})
    (run_dir / "config.json").write_text(json.dumps(raw))
    page = write_model_report(run_dir, shap_rows=0).read_text(encoding="utf-8")
    model = _section(page, "model")
    if lora is None:
        assert "LoRA" not in page  # no adapters
        # The depth "auto" became, as the run recorded it: the whole tiny backbone on a table.
        assert raw["model"]["freeze_depth"] == 3
        assert "embeddings + bottom 3 of 3 encoder layers frozen" in model
        return
    assert (
        "LoRA: every pretrained weight frozen" in model and "<th>LoRA rank</th><td>8</td>" in model
    )
    assert "<th>LoRA alpha</th><td>16</td>" in model and "query, value" in model
    assert "loaded from" in _section(
        page, "reproducibility"
    )  # the weights file holds the adapters only


def test_unfinished_and_failed_runs_are_refused(tmp_path, tiny_backbone):
    queued = runs.create_run(
        tmp_path / "runs", _config(tiny_backbone, "credit_risk"), credit_table(), source="x.csv"
    )
    with pytest.raises(RunError, match="has not succeeded \\(state queued\\)"):
        write_model_report(queued)
    write_status(queued, "failed", message="Out of memory: try a smaller batch size.")
    with pytest.raises(RunError, match="state failed: Out of memory"):
        write_model_report(queued)
    with pytest.raises(RunError, match="not a FinTune run folder"):
        write_model_report(tmp_path)
    assert not (queued / REPORT_FILE).exists()


def test_cli_writes_the_report_and_refuses_a_failed_run(binary, tmp_path, capsys):
    output = tmp_path / "review.html"
    assert cli.main(["report", str(binary[0]), "-o", str(output), "--shap-rows", "0"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(output) and output.is_file()
    assert "Writing the report" in err
    failed = tmp_path / "runs" / binary[0].name
    shutil.copytree(binary[0], failed)
    # a copy of a finished run made to read as failed: status.json written as a failed run's is
    # (write_status never turns a finished run into another final state)
    status = json.loads((failed / "status.json").read_text())
    (failed / "status.json").write_text(
        json.dumps({**status, "state": "failed", "message": "boom"})
    )
    assert cli.main(["report", str(failed)]) == 2
    out, err = capsys.readouterr()
    assert (
        out == ""
        and err.count("\n") == 1
        and err.startswith("error: Run ")
        and "state failed: boom" in err
    )
