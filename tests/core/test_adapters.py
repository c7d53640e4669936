"""LoRA adapters: what trains, what is saved, what loads back, and merging for export."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import ModelConfig
from core.errors import ConfigError, RunError
from core.model.adapters import adapter_parameter_count, merged_copy, target_names
from core.model.backbones import count_parameters, load_backbone
from core.runs import folder as runs
from core.runs.worker import execute
from core.training.estimator import FineTuner
from core.training.loop import collate


def test_lora_settings_are_validated_and_survive_json():
    assert ModelConfig(lora_rank=8).lora_scale == 16.0
    assert ModelConfig(lora_rank=8, lora_targets="query, value").lora_targets == ("query", "value")
    assert ModelConfig(lora_rank=8, lora_targets=["query"]).lora_targets == ("query",)
    assert ModelConfig(lora_rank=8, lora_targets="").lora_targets is None
    with pytest.raises(ConfigError, match="lora_rank is -1"):
        ModelConfig(lora_rank=-1)
    with pytest.raises(ConfigError, match="lora_alpha is 0"):
        ModelConfig(lora_rank=4, lora_alpha=0)
    with pytest.raises(ConfigError, match="lora_dropout is 1.5"):
        ModelConfig(lora_rank=4, lora_dropout=1.5)


def test_default_targets_are_every_linear_layer_of_each_block(layout, tiny_backbones, tiny_layers):
    backbone, _ = load_backbone(str(tiny_backbones[layout]))
    names = target_names(backbone, None)
    assert names and all(isinstance(backbone.get_submodule(n), torch.nn.Linear) for n in names)
    per_layer = len(names) // tiny_layers
    assert per_layer >= 4  # attention projections and the feed-forward pair
    above = target_names(backbone, None, from_layer=2)
    assert len(above) == per_layer * (tiny_layers - 2)
    assert not any("pooler" in n for n in names)


def test_unknown_targets_name_the_choices(tiny_backbone):
    backbone, _ = load_backbone(tiny_backbone)
    with pytest.raises(ConfigError, match="match no linear layer.*choose among.*query"):
        target_names(backbone, ("not_a_layer",))
    with pytest.raises(ConfigError, match="leaves no layer for adapters"):
        target_names(backbone, None, from_layer=99)


def test_a_lora_run_trains_only_adapters_and_head_and_loads_back(tiny_config, credit_df, runs_dir):
    config = tiny_config("credit_risk", model={"lora_rank": 4}, epochs=1)
    run_dir = runs.create_run(runs_dir, config, credit_df)
    assert execute(run_dir) == "succeeded"

    tuner = FineTuner.load(run_dir / "model")
    named = dict(tuner.model_.named_parameters())
    adapters = [n for n in named if "lora_" in n]
    assert adapters
    trainable, total = (
        runs.read_metrics(run_dir)["trainable_parameters"],
        runs.read_metrics(run_dir)["total_parameters"],
    )
    backbone_only = total - sum(
        p.numel() for n, p in named.items() if not n.startswith("backbone.")
    )
    adapter_count = sum(named[n].numel() for n in adapters)
    assert trainable == adapter_count + sum(
        p.numel() for n, p in named.items() if not n.startswith("backbone.")
    )
    assert adapter_count < 0.2 * backbone_only

    # Only adapters, numeric encoder and head are saved: the pretrained weights come from the
    # backbone.
    from safetensors import safe_open

    with safe_open(str(run_dir / "model" / "model.safetensors"), "pt") as saved:
        keys = list(saved.keys())
    assert keys and all(not k.startswith("backbone.") or "lora_" in k for k in keys)

    # Reloaded, it predicts exactly what the run recorded for its test rows.
    recorded = runs.read_predictions(run_dir)
    rows = credit_df.loc[recorded["row"].to_numpy()]
    probabilities = tuner.predict_proba(rows)
    columns = [c for c in recorded.columns if c.startswith("prob_")]
    assert np.allclose(probabilities, recorded[columns].to_numpy(dtype=float), atol=1e-4)


def _lora_run_on_own_backbone(
    tiny_config, credit_df, runs_dir, tiny_backbones, tmp_path, *, rank: int, max_steps: int
) -> tuple[Path, Path]:
    """A finished LoRA run on a private copy of the tiny backbone (which the test may then change or
    delete)."""
    backbone_dir = tmp_path / "backbone"
    shutil.copytree(tiny_backbones["bert"], backbone_dir)
    config = tiny_config(
        "credit_risk",
        model={"lora_rank": rank, "backbone": str(backbone_dir)},
        epochs=1,
        max_steps=max_steps,
    )
    run_dir = runs.create_run(runs_dir, config, credit_df)
    assert execute(run_dir) == "succeeded"
    return run_dir, backbone_dir


def test_a_lora_run_refuses_changed_base_weights(
    tiny_config, credit_df, runs_dir, tiny_backbones, tmp_path
):
    from transformers import AutoModel

    run_dir, backbone_dir = _lora_run_on_own_backbone(
        tiny_config, credit_df, runs_dir, tiny_backbones, tmp_path, rank=2, max_steps=2
    )
    changed = AutoModel.from_pretrained(backbone_dir)
    with torch.no_grad():
        changed.encoder.layer[0].attention.self.query.weight.add_(0.5)
    changed.save_pretrained(backbone_dir)
    with pytest.raises(RunError, match="differ from those this LoRA run was trained on"):
        FineTuner.load(run_dir / "model")


def test_merged_copy_gives_the_same_outputs_without_peft(tiny_config, sentiment_df):
    tuner = FineTuner(
        tiny_config("label", model={"lora_rank": 4, "freeze_depth": 1}, epochs=1)
    ).fit(sentiment_df)
    plain = tuner.plain_model().eval()
    model = tuner.model_.eval()
    from peft.tuners.lora import LoraLayer

    assert not any(isinstance(m, LoraLayer) for m in plain.modules())
    assert any(
        isinstance(m, LoraLayer) for m in model.modules()
    )  # the fitted model is left as it was
    batch = collate(
        tuner.encode(sentiment_df.head(6), with_targets=False), np.arange(6), pad_id=tuner.pad_id_
    )
    with torch.no_grad():
        a = model(batch["input_ids"], batch["attention_mask"], batch["numeric"])
        b = plain(batch["input_ids"], batch["attention_mask"], batch["numeric"])
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(
        merged_copy(model)(batch["input_ids"], batch["attention_mask"], batch["numeric"]),
        b,
        atol=1e-5,
    )


def test_adapter_count_matches_what_training_adds(tiny_backbone):
    backbone, _ = load_backbone(tiny_backbone)
    before, _ = count_parameters(backbone)
    expected = adapter_parameter_count(backbone, rank=4, targets=("query", "value"), from_layer=1)
    from core.model.adapters import add_lora

    added = add_lora(
        backbone, rank=4, alpha=8, dropout=0.0, targets=("query", "value"), from_layer=1
    )
    assert added == expected == count_parameters(backbone)[0]
    assert before > added


@pytest.mark.integration
def test_lora_on_the_pretrained_minilm_learns(fintune, tmp_path):
    """The bundled pretrained MiniLM with adapters learns the sentiment sample's cue words."""
    import pandas as pd

    from tests.conftest import PROJECT_ROOT

    data = tmp_path / "headlines.csv"
    pd.read_csv(PROJECT_ROOT / "sample_data" / "fin_sentiment.csv").sample(
        600, random_state=0
    ).to_csv(data, index=False)
    result = fintune(
        "train",
        data,
        "--target",
        "label",
        "--lora-rank",
        "8",
        "--epochs",
        "2",
        "--max-length",
        "48",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = result.stdout.strip().splitlines()[-1]
    metrics = runs.read_metrics(run_dir)
    assert metrics["trainable_parameters"] < 0.05 * metrics["total_parameters"]
    assert metrics["test"]["roc_auc"] > 0.7, metrics["test"]  # chance is 0.5; 28 steps on 420 rows


def test_exporting_a_lora_run_folds_the_adapters_in(
    tiny_config, credit_df, runs_dir, tiny_backbones, tmp_path
):
    """The export stands alone: it loads and predicts the same with the pretrained backbone gone."""
    from core.serving.export import export_run

    run_dir, backbone_dir = _lora_run_on_own_backbone(
        tiny_config, credit_df, runs_dir, tiny_backbones, tmp_path, rank=4, max_steps=3
    )
    before = FineTuner.load(run_dir / "model").predict_proba(credit_df.head(10))
    exported = export_run(run_dir, tmp_path / "export")
    shutil.rmtree(backbone_dir)  # the pretrained weights are gone
    from core.errors import BackboneError

    with pytest.raises(BackboneError, match="does not exist"):
        FineTuner.load(run_dir / "model")  # the run itself needs them
    tuner = FineTuner.load(exported)
    assert not any("lora_" in n for n, _ in tuner.model_.named_parameters())
    assert np.allclose(tuner.predict_proba(credit_df.head(10)), before, atol=1e-5)
