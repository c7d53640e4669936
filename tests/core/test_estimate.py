"""Presets and the run-time estimate: settings per preset, and the estimate against a real run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import core
from core.training.estimate import measure_speed

ROOT = Path(__file__).resolve().parents[2]


def _spec(frame, target):
    return core.describe_table(frame, core.DataConfig(target=target))


def test_presets_on_a_table_keep_the_backbone_frozen(credit_df):
    # credit_df has a free-text column: read it by cells and the rest of the table only.
    spec = _spec(credit_df.drop(columns=["notes"]), "credit_risk")
    choices = core.presets(spec, 6)
    assert list(choices) == list(core.PRESETS)
    assert choices["Balanced"] == {
        "model": {"freeze_depth": "auto"},
        "train": {"epochs": "auto", "patience": "auto"},
    }
    assert choices["Quick demo"]["model"]["freeze_depth"] == "auto"
    assert choices["Quick demo"]["train"] == {"epochs": 10, "patience": 3}
    best = choices["Best quality"]["train"]
    assert best["patience"] > 6 and best["epochs"] > 30  # the defaults with more patience
    assert "LightGBM" in core.preset_note("Best quality", spec, 6)


def test_presets_on_text_train_the_backbone(sentiment_df):
    spec = _spec(sentiment_df, "label")
    choices = core.presets(spec, 6)
    assert choices["Quick demo"] == {
        "model": {"freeze_depth": 5},
        "train": {"epochs": 2, "patience": "auto"},
    }
    assert choices["Best quality"] == {
        "model": {"freeze_depth": 0},
        "train": {"epochs": 6, "patience": 3},
    }


def test_matching_preset_and_custom(sentiment_df):
    spec = _spec(sentiment_df, "label")
    config = core.default_config("label")
    assert core.matching_preset(config, spec, 6) == "Balanced"
    quick = config.replace(**core.presets(spec, 6)["Quick demo"])
    assert core.matching_preset(quick, spec, 6) == "Quick demo"
    assert core.matching_preset(quick.replace(train={"epochs": 3}), spec, 6) is None
    # Settings a preset does not touch leave it chosen.
    assert core.matching_preset(quick.replace(train={"lr": 1e-4}), spec, 6) == "Quick demo"


def test_suggested_preset_by_device_and_time():
    assert core.suggested_preset(400, "cpu") == "Quick demo"
    assert core.suggested_preset(60, "cpu") == "Balanced"
    assert core.suggested_preset(400, "gpu") == "Balanced"


def test_speed_is_measured_and_cached(tiny_backbone):
    first = measure_speed(tiny_backbone, "cpu", "fp32", 16)
    assert first.forward_rows_per_s > first.train_rows_per_s > 0
    started = time.perf_counter()
    assert measure_speed(tiny_backbone, "cpu", "fp32", 16) is first
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    ("sample", "target", "settings"),
    [
        ("credit_risk.csv", "credit_risk", {}),  # the head alone: cells encoded once
        ("fin_sentiment.csv", "label", {"model": {"freeze_depth": 5}, "train": {"epochs": 2}}),
    ],
)
def test_the_estimate_is_within_a_factor_of_three_of_a_real_run(tmp_path, sample, target, settings):
    """MiniLM on 200 rows of a sample, through the job manager as the dashboard runs it."""
    frame = core.read_table(ROOT / "sample_data" / sample).sample(200, random_state=0)
    config = core.default_config(target).replace(**settings)
    estimate = core.estimate_run(config, frame, core.describe_table(frame, config.data))
    jobs = core.JobManager(tmp_path / "runs", warm_worker=False)
    try:
        started = time.monotonic()
        run_id = jobs.submit(config, frame, source=sample)
        snapshot = jobs.wait(run_id, timeout=600)
        measured = time.monotonic() - started
    finally:
        jobs.shutdown()
    assert snapshot.state == "succeeded", snapshot.message
    print(f"\n{sample}: estimated {estimate.seconds:.1f} s, measured {measured:.1f} s")
    print(estimate.describe())
    assert measured / 3 < estimate.seconds < measured * 3
    assert "on this CPU" in estimate.describe() and "rows/s" in estimate.describe()
