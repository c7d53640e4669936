"""A max length beyond the backbone's positions is refused before any run folder exists."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.model.backbones import bundled_minilm_path, check_max_length, position_limit
from core.runs import folder as runs
from core.runs.jobs import JobManager
from core.runs.sweep import start_sweep

TINY_POSITIONS = 128  # max_position_embeddings of the tiny configs in tests/conftest.py


def _run_folders(runs_dir) -> list[str]:
    return [p.name for p in runs_dir.iterdir()] if runs_dir.exists() else []


@pytest.mark.parametrize(
    "layout,limit",
    [("bert", 128), ("roberta", 127), ("distilbert", 128), ("deberta-v2", 128), ("electra", 128)],
)
def test_position_limit_of_each_layout(tiny_backbones, layout, limit):
    """RoBERTa numbers positions from pad_token_id + 1: of 128 positions (pad 0), 127 hold
    tokens."""
    assert position_limit(str(tiny_backbones[layout])) == limit


def test_position_limits_of_real_configs(tmp_path):
    from transformers import DebertaV2Config, RobertaConfig

    assert position_limit(str(bundled_minilm_path())) == 512
    RobertaConfig(max_position_embeddings=514, pad_token_id=1).save_pretrained(tmp_path / "roberta")
    assert (
        position_limit(str(tmp_path / "roberta")) == 512
    )  # roberta-base: 514 positions, 512 usable
    DebertaV2Config(relative_attention=True, position_biased_input=False).save_pretrained(
        tmp_path / "deberta"
    )
    assert position_limit(str(tmp_path / "deberta")) is None  # DeBERTa-v3: relative positions only


def test_the_limit_itself_is_accepted(tiny_backbones):
    check_max_length(str(tiny_backbones["bert"]), 128)
    check_max_length(str(tiny_backbones["roberta"]), 127)
    check_max_length(str(tiny_backbones["bert"]), None)  # automatic: always fits
    with pytest.raises(
        ConfigError,
        match=r"max length 128 is longer than the backbone's 127 positions .*: "
        r"use 127 or less\.",
    ):
        check_max_length(str(tiny_backbones["roberta"]), 128)


def test_create_run_refuses_a_max_length_beyond_the_positions(runs_dir, credit_df, tiny_config):
    config = tiny_config("credit_risk", model={"max_length": 1024})
    with pytest.raises(
        ConfigError,
        match=r"max length 1024 is longer than the backbone's 128 positions .*: "
        r"use 128 or less\.",
    ):
        runs.create_run(runs_dir, config, credit_df)
    assert _run_folders(runs_dir) == []


def test_job_manager_submit_refuses_before_a_folder_exists(runs_dir, credit_df, tiny_config):
    jobs = JobManager(runs_dir, warm_worker=False)
    try:
        with pytest.raises(ConfigError, match="longer than the backbone's 128 positions"):
            jobs.submit(tiny_config("credit_risk", model={"max_length": 200}), credit_df)
        with pytest.raises(ConfigError, match="longer than the backbone's 128 positions"):
            start_sweep(jobs, tiny_config("credit_risk", model={"max_length": 200}), credit_df, 3)
        assert jobs.active() == []
    finally:
        jobs.shutdown()
    assert _run_folders(runs_dir) == []


@pytest.mark.timeout(300)
def test_cli_train_exits_2_without_a_run_folder(fintune, tmp_path, credit_df, tiny_backbone):
    data = tmp_path / "credit.csv"
    credit_df.to_csv(data, index=False)
    runs_dir = tmp_path / "runs"
    result = fintune(
        "train",
        data,
        "--target",
        "credit_risk",
        "--backbone",
        tiny_backbone,
        "--max-length",
        "1024",
        "--runs-dir",
        runs_dir,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        f"error: max length 1024 is longer than the backbone's {TINY_POSITIONS} positions "
        f"({tiny_backbone}): "
        f"use {TINY_POSITIONS} or less."
    ) in result.stderr
    assert _run_folders(runs_dir) == []
