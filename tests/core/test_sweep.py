"""The freeze-depth sweep: its settings, the knee, and a real sweep through the job manager and
CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from core.runs import folder as runs
from core.runs.sweep import find_knee, list_sweeps, sweep_points, sweep_results


def test_points_run_from_all_frozen_to_none_then_lora():
    points = sweep_points(6)
    assert [p.label for p in points] == [f"freeze {d}" for d in range(6, -1, -1)] + ["LoRA r8"]
    assert points[-1].lora_rank == 8 and points[-1].freeze_depth == 0
    assert [p.label for p in sweep_points(2, lora_rank=0)] == ["freeze 2", "freeze 1", "freeze 0"]


def _table(rows: list[tuple[int, float]], metric: str = "roc_auc") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "label": f"p{i}",
                "metric": metric,
                "trainable_parameters": params,
                "val_metric": value,
            }
            for i, (params, value) in enumerate(rows)
        ]
    )


def test_knee_is_the_cheap_point_that_gets_most_of_the_gain():
    # Saturating curve: 10k -> 0.60, 100k -> 0.78, 1M -> 0.80, 10M -> 0.81, 20M -> 0.805
    table = _table(
        [
            (10_000, 0.60),
            (100_000, 0.78),
            (1_000_000, 0.80),
            (10_000_000, 0.81),
            (20_000_000, 0.805),
        ]
    )
    assert table.loc[find_knee(table), "trainable_parameters"] == 100_000
    # Lower is better for RMSE: the same shape, mirrored.
    rmse = _table(
        [(10_000, 4.0), (100_000, 2.2), (1_000_000, 2.0), (10_000_000, 1.9)], metric="rmse"
    )
    assert rmse.loc[find_knee(rmse), "trainable_parameters"] == 100_000
    assert find_knee(_table([(10, 0.5), (20, 0.6)])) is None  # too few points for a curve
    unfinished = _table([(10_000, 0.6), (100_000, None), (1_000_000, 0.8), (2_000_000, 0.81)])
    assert find_knee(unfinished) in unfinished.dropna().index


def test_a_sweep_runs_every_setting_and_draws_its_curve(
    fintune, tiny_backbone, tiny_layers, tmp_path, credit_df
):
    data = tmp_path / "credit.csv"
    credit_df.to_csv(data, index=False)
    result = fintune(
        "sweep",
        data,
        "--target",
        "credit_risk",
        "--backbone",
        tiny_backbone,
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--lora-rank",
        "4",
        "--runs-dir",
        tmp_path / "runs",
        "-o",
        tmp_path / "s.csv",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = Path(result.stdout.strip().splitlines()[-1])
    assert json.loads(record.read_text())["points"][0]["label"] == f"freeze {tiny_layers}"
    (sweep,) = list_sweeps(tmp_path / "runs")
    table = sweep_results(tmp_path / "runs", sweep)
    assert table["label"].tolist() == [f"freeze {d}" for d in range(tiny_layers, -1, -1)] + [
        "LoRA r4"
    ]
    assert (table["state"] == "succeeded").all()
    assert (
        table["val_metric"].notna().all()
        and (table["wall_s"] > 0).all()
        and (table["peak_memory_mb"] > 0).all()
    )
    frozen = table[table["lora_rank"] == 0].sort_values("freeze_depth")
    assert frozen[
        "trainable_parameters"
    ].is_monotonic_decreasing  # deeper freezing, fewer weights learn
    assert table["knee"].sum() == 1
    assert "<- knee" in result.stderr and "val roc_auc" in result.stderr
    assert pd.read_csv(tmp_path / "s.csv")["label"].tolist() == table["label"].tolist()
    lora = runs.load_config(runs.run_path(tmp_path / "runs", table["run_id"].iloc[-1]))
    assert lora.model.lora_rank == 4 and lora.model.freeze_depth == 0
