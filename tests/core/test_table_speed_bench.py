"""bench.table_speed: row serialisation, arguments, the synthetic large table, the shared split,
the result table and target checks; both training sides on a few rows with a tiny backbone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.table_speed import (
    LARGE_ROWS,
    LARGE_TARGET,
    RESULT_MARK,
    check_lines,
    child_command,
    fintune_config,
    format_table,
    load_frame,
    make_splits,
    parse_args,
    row_texts,
    run_fintune_side,
    run_trainer_side,
    summarise,
    synthetic_credit_card_default,
    trainer_settings,
    value_text,
)
from tests.conftest import credit_table


def test_values_are_written_as_a_person_writes_them():
    assert value_text(1169.0) == "1169"
    assert value_text(2.5) == "2.5"
    assert value_text(0.123456) == "0.12"
    assert value_text(np.int64(7)) == "7"
    assert value_text(float("nan")) == "" and value_text(None) == "" and value_text(pd.NA) == ""
    assert value_text("  new\n car ") == "new car"
    assert value_text(True) == "yes"


def test_rows_serialise_every_feature_column_and_skip_missing_cells():
    frame = pd.DataFrame(
        {
            "credit_amount": [1169.0, np.nan],
            "purpose": ["radio/television", "new car"],
            "age_years": [67, 22],
        }
    )
    texts = row_texts(frame, ["credit_amount", "purpose", "age_years"])
    assert texts == [
        "credit amount: 1169, purpose: radio/television, age years: 67",
        "purpose: new car, age years: 22",
    ]


def test_arguments_pick_the_sides_and_round_trip_to_a_child(tmp_path: Path):
    args = parse_args([])
    assert args.side_list == ["fintune", "trainer"] and args.dataset == "credit"
    assert args.repeats == 1 and args.json is None and args.side is None
    assert args.backbone == "all-MiniLM-L6-v2"
    assert parse_args(["--with-old"]).side_list == ["fintune", "trainer", "first-version"]
    large = parse_args(["--large"])
    assert large.dataset == "large" and large.side_list == ["fintune"]
    assert parse_args(["--sides", "trainer,fintune,trainer"]).side_list == ["trainer", "fintune"]
    for bad in (
        ["--sides", "lightgbm"],
        ["--repeats", "0"],
        ["--max-rows", "10"],
        ["--trainer-max-length", "long"],
        ["--side", "trainer"],  # a side needs the shared split
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)

    parent = parse_args(
        ["--max-rows", "200", "--epochs", "1", "--trainer-lr", "3e-5", "--trainer-max-length", "64"]
    )
    command = child_command(parent, "trainer", tmp_path / "splits.json")
    assert command[1:3] == ["-m", "bench.table_speed"]
    child = parse_args(command[3:])
    assert child.side == "trainer" and child.splits_file == str(tmp_path / "splits.json")
    assert (child.dataset, child.max_rows, child.epochs) == ("credit", 200, 1)
    settings = trainer_settings(child)
    assert settings["lr"] == 3e-5 and settings["max_length"] == 64 and settings["epochs"] == 1
    assert settings["batch_size"] == 32 and settings["patience"] == 2


def test_side_configs_are_the_defaults_and_the_first_versions():
    from core.config import default_config

    assert fintune_config("fintune", "credit_risk") == default_config("credit_risk")
    old = fintune_config("first-version", "credit_risk", epochs=1).model
    assert (old.table_encoding, old.freeze_depth, old.trees) == ("row_text", 0, "off")
    assert fintune_config("first-version", "credit_risk", epochs=1).train.epochs == 1


def test_synthetic_large_table_is_credit_card_default_shaped():
    from core.config import DataConfig
    from core.data.schema import describe_table

    frame = synthetic_credit_card_default()
    assert frame.shape == (LARGE_ROWS, 24)
    months = ("sep", "aug", "jul", "jun", "may", "apr")
    expected = ["limit_balance", "sex", "education", "marriage", "age"]
    for prefix in ("pay_status", "bill_amount", "paid_amount"):
        expected += [f"{prefix}_{m}" for m in months]
    assert list(frame.columns) == [*expected, LARGE_TARGET]
    assert 0.18 < frame[LARGE_TARGET].mean() < 0.27
    assert frame.notna().all().all()
    assert frame["pay_status_sep"].str.startswith("delay").mean() > 0.1
    spec = describe_table(frame, DataConfig(target=LARGE_TARGET))
    assert spec.task == "binary"
    assert spec.roles["pay_status_apr"] == "categorical" and spec.roles["sex"] == "categorical"
    assert spec.roles["bill_amount_sep"] == "numeric" and spec.roles["limit_balance"] == "numeric"
    # Late payers default more: the target follows the table, not noise alone.
    late = frame["pay_status_sep"].str.startswith("delay")
    assert frame.loc[late, LARGE_TARGET].mean() > 2 * frame.loc[~late, LARGE_TARGET].mean()
    assert synthetic_credit_card_default().equals(frame)  # a fixed seed: the same table


def test_every_side_gets_the_same_stratified_split_fintune_would_make():
    frame = load_frame("credit", max_rows=200)
    assert len(frame) == 200 and load_frame("credit", max_rows=200).equals(frame)
    assert frame["credit_risk"].eq("bad").mean() == pytest.approx(0.3, abs=0.01)
    splits = make_splits(frame, "credit_risk")
    everything = np.sort(np.concatenate([splits[p] for p in ("train", "val", "test")]))
    assert np.array_equal(everything, np.arange(200))
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (140, 30, 30)


def _runs(seconds: dict[str, float], aucs: dict[str, float]) -> dict[str, list[dict]]:
    return {
        side: [{"seconds": s, "test_auc": aucs[side], "settings": {"side": side}}]
        for side, s in seconds.items()
    }


def test_result_table_and_checks():
    runs = _runs(
        {"fintune": 20.0, "trainer": 150.0, "first-version": 400.0},
        {"fintune": 0.80, "trainer": 0.78, "first-version": 0.81},
    )
    runs["fintune"].append({"seconds": 40.0, "test_auc": 0.82, "settings": {}})
    runs["fintune"].append({"seconds": 30.0, "test_auc": 0.79, "settings": {}})
    rows = summarise(runs)
    ours = rows[0]
    assert ours["seconds"] == 30.0 and ours["test_auc"] == 0.80 and ours["repeats"] == 3
    assert rows[1]["x_fintune"] == pytest.approx(5.0)
    table = format_table(rows).splitlines()
    assert table[0].split() == ["side", "test", "ROC", "AUC", "seconds", "x", "FinTune", "runs"]
    assert table[1].split()[-4:] == ["0.8000", "30.0", "1.00x", "3"]
    assert table[2].startswith("HF Trainer, rows as text") and "5.00x" in table[2]

    checks = check_lines(rows, "credit")
    assert checks[0].startswith("FAIL (a)") and "13.3x" in checks[0] and "-0.0100" in checks[0]
    assert checks[1].startswith("PASS (b)") and "5.0x" in checks[1] and "+0.0200" in checks[1]
    assert len(checks) == 2

    slower = summarise(_runs({"fintune": 40.0, "trainer": 150.0}, {"fintune": 0.9, "trainer": 0.8}))
    lines = check_lines(slower, "credit")
    assert lines[0].startswith("FAIL (b)") and "3.8x" in lines[0]
    assert lines[1].startswith("INFO (a)") and "11.3x" in lines[1]  # 451 s recorded
    assert all("smoke" in line for line in check_lines(slower, "credit", smoke=True))

    large = summarise(_runs({"fintune": 512.0}, {"fintune": 0.77}))
    assert check_lines(large, "large")[0].startswith("PASS (c)")
    large = summarise(_runs({"fintune": 640.0}, {"fintune": 0.77}))
    assert (
        check_lines(large, "large")[0].startswith("FAIL (c)")
        and "640.0 s" in check_lines(large, "large")[0]
    )
    no_auc = summarise(_runs({"fintune": 10.0, "trainer": 90.0}, {"fintune": None, "trainer": 0.7}))
    assert no_auc[0]["test_auc"] is None and "–" in format_table(no_auc)
    assert check_lines(no_auc, "credit")[0].startswith("FAIL (b)")
    assert RESULT_MARK.endswith(" ")


@pytest.fixture
def small_credit():
    frame = credit_table(60, seed=4)
    return frame, make_splits(frame, "credit_risk")


def test_trainer_side_learns_and_scores_the_shared_test_rows(small_credit, tiny_backbone):
    frame, splits = small_credit
    settings = trainer_settings(parse_args(["--epochs", "2", "--backbone", tiny_backbone]))
    result = run_trainer_side(frame, splits, "credit_risk", settings)
    assert 0.0 <= result["test_auc"] <= 1.0
    assert len(result["val_auc"]) == result["resolved"]["epochs_run"] == 2
    assert all(not math.isnan(a) for a in result["val_auc"])
    assert result["settings"]["frozen_parameters"] == 0  # the pooler and classifier train
    assert 16 <= result["resolved"]["max_length"] <= 128  # the tiny model's 128 positions
    assert result["resolved"]["example_text"].startswith("age years: ")


def test_fintune_side_reports_its_settled_settings(small_credit, tiny_config):
    frame, splits = small_credit
    config = tiny_config("credit_risk", epochs=1)
    result = run_fintune_side(frame, splits, config)
    assert 0.0 <= result["test_auc"] <= 1.0 and len(result["val_auc"]) == 1
    assert result["settings"] == config.to_dict()
    assert isinstance(result["resolved"]["freeze_depth"], int)
    assert result["resolved"]["encoding"] == "cells"
