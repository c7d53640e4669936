"""The real bundled MiniLM fine-tuned for a few steps through the CLI on each sample dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _slice(path: Path, target: str) -> pd.DataFrame:
    """About 120 rows with every class present (the sentiment file is sorted by label)."""
    name = path.name
    frame = pd.read_csv(path)
    if name == "fin_sentiment.csv":
        return frame.groupby(target, group_keys=False).head(40).sort_index()
    if name == "card_fraud.csv":
        fraud = frame[frame[target] == "fraud"].head(20)
        return pd.concat([frame[frame[target] != "fraud"].head(100), fraud]).sort_index()
    return frame.head(120)


@pytest.mark.parametrize(
    ("name", "target", "extra"),
    [
        ("credit_risk.csv", "credit_risk", []),
        ("fin_sentiment.csv", "label", []),
        ("card_fraud.csv", "is_fraud", []),
        ("market_daily.csv", "next_day_direction", []),  # a date column: chronological by default
    ],
)
def test_fine_tune_minilm_on_a_sample(tmp_path, project_root, fintune, name, target, extra):
    data = tmp_path / name
    frame = _slice(project_root / "sample_data" / name, target)
    frame.to_csv(data, index=False)
    result = fintune(
        "train",
        data,
        "--target",
        target,
        "--max-steps",
        "3",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--runs-dir",
        tmp_path / "runs",
        *extra,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])

    assert json.loads((run_dir / "config.json").read_text())["data"]["target"] == target
    assert json.loads((run_dir / "status.json").read_text())["state"] == "succeeded"
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert any(e["type"] == "step" for e in history) and any(e["type"] == "epoch" for e in history)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"task", "val", "test"} <= set(metrics)
    for split in ("val", "test"):
        assert {"roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"} <= set(metrics[split])
    reference = "TF-IDF + logistic regression" if name == "fin_sentiment.csv" else "LightGBM"
    assert list(metrics["baselines"]) == [reference, "Majority class"]
    assert (run_dir / "baselines" / "majority-class.csv").is_file()
    if metrics["task"] == "binary":
        assert {"ks", "gini", "pr_auc"} <= set(metrics["test"]) and "roc_auc" in metrics[
            "test_intervals"
        ]
        assert (
            json.loads((run_dir / "decision.json").read_text())["positive_class"]
            == metrics["positive_class"]
        )

    predictions = pd.read_csv(run_dir / "predictions.csv")
    classes = sorted(frame[target].astype(str).unique())
    assert target in predictions.columns and "prediction" in predictions.columns
    assert [c for c in predictions.columns if c.startswith("prob_")] == [
        f"prob_{c}" for c in classes
    ]
    assert len(predictions) == metrics["rows"]["test"]

    assert (run_dir / "model" / "model.safetensors").is_file()
    assert not [p for p in run_dir.rglob("*") if p.suffix in (".bin", ".pkl", ".pt", ".pickle")]
    if "date" in frame.columns:  # chronological: the test split is the latest 15% of days
        assert metrics["split"] == "chronological by 'date'"
        dates = pd.to_datetime(frame["date"]).sort_values()
        test_dates = pd.to_datetime(predictions["row"].map(frame["date"]))
        assert test_dates.min() > dates.iloc[int(0.8 * len(dates))]
