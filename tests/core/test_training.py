"""The training loop: progress events, cancel, non-finite loss, early stopping, max_steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.config import TrainConfig
from core.errors import ConfigError, TrainingError
from core.training.devices import autocast_dtype, cpu_has_native_bf16, resolve_device
from core.training.estimator import FineTuner
from core.training.loop import EncodedRows, TrainingCancelled, iterate_batches, train

STEP_KEYS = {
    "type",
    "step",
    "total_steps",
    "epoch",
    "loss",
    "lr",
    "samples_per_s",
    "eta_s",
    "elapsed_s",
}
EPOCH_KEYS = {"type", "epoch", "step", "total_steps", "train_loss", "val", "elapsed_s"}


def test_progress_events(credit_df, tiny_config):
    events = []
    config = tiny_config("credit_risk", epochs=2, patience=5, warmup_ratio=0.3)
    tuner = FineTuner(config).fit(credit_df, on_progress=events.append)
    phases = [e["phase"] for e in events if e["type"] == "phase"]
    assert (
        phases[0] == "Checking the data"
        and phases[1].startswith("Loading backbone")
        and phases[2] == "Tokenising"
    )
    tokenising = next(e for e in events if e.get("phase") == "Tokenising")
    assert tokenising["trainable_parameters"] <= tokenising["total_parameters"]
    assert tokenising["rows"] == {"train": 140, "val": 30, "test": 30}

    steps = [e for e in events if e["type"] == "step"]
    epochs = [e for e in events if e["type"] == "epoch"]
    assert all(set(e) == STEP_KEYS for e in steps)
    assert all(set(e) == EPOCH_KEYS for e in epochs)
    steps_per_epoch = math.ceil(140 / 16)
    assert [e["step"] for e in steps] == list(range(1, 2 * steps_per_epoch + 1))
    assert all(e["total_steps"] == 2 * steps_per_epoch for e in steps)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert set(epochs[0]["val"]) == {
        "roc_auc",
        "gini",
        "ks",
        "pr_auc",
        "accuracy",
        "f1",
        "log_loss",
        "brier",
        "ece",
    }
    assert steps[-1]["eta_s"] == 0 and all(e["samples_per_s"] > 0 for e in steps)
    assert tuner.history_ == epochs
    # warmup then decay: the learning rate rises, peaks and ends low
    lrs = [e["lr"] for e in steps]
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs)


def test_should_stop_cancels_within_one_step(credit_df, tiny_config):
    events = []

    def should_stop() -> bool:
        return any(e["type"] == "step" for e in events)

    with pytest.raises(TrainingCancelled):
        FineTuner(tiny_config("credit_risk", epochs=3)).fit(
            credit_df, on_progress=events.append, should_stop=should_stop
        )
    assert [e["step"] for e in events if e["type"] == "step"] == [1]
    assert not [e for e in events if e["type"] == "epoch"]


def test_non_finite_loss_names_a_smaller_learning_rate(credit_df, tiny_config, monkeypatch):
    import core.training.loop

    class InfiniteLoss(torch.nn.Module):
        def forward(self, out, targets):
            return out.sum() * math.inf

    monkeypatch.setattr(
        core.training.loop, "_loss_fn", lambda task, weights, config: InfiniteLoss()
    )
    with pytest.raises(TrainingError) as caught:
        FineTuner(tiny_config("credit_risk", lr=2e-4)).fit(credit_df)
    assert caught.value.kind == "non_finite_loss"
    message = str(caught.value)
    assert "at step 1 (epoch 1)" in message
    assert "lower the learning rate (e.g. to 5e-05)" in message


def test_max_steps_is_honoured(credit_df, tiny_config):
    events = []
    tuner = FineTuner(tiny_config("credit_risk", epochs=5, max_steps=3)).fit(
        credit_df, on_progress=events.append
    )
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3]
    assert steps[-1]["total_steps"] == 3
    assert len(tuner.history_) == 1  # the run stops after evaluating the epoch it ended in


def test_max_steps_across_epochs(credit_df, tiny_config):
    events = []
    FineTuner(tiny_config("credit_risk", epochs=5, max_steps=12, patience=5)).fit(
        credit_df, on_progress=events.append
    )
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 12 and steps[-1]["epoch"] == 2  # 9 steps per epoch
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]


# --------------------------------------------------------------------------- the loop on its own


@pytest.fixture
def tiny_model(tiny_backbone):
    from core.model.backbones import load_backbone
    from core.model.fusion import FusionModel

    backbone, tokenizer = load_backbone(tiny_backbone)
    torch.manual_seed(0)
    return FusionModel(
        backbone=backbone, d_numeric_in=2, n_outputs=2, d_numeric=8, d_hidden=16
    ), tokenizer


def _rows(tokenizer, n: int, seed: int) -> EncodedRows:
    rng = np.random.default_rng(seed)
    words = rng.choice(["alpha", "beta", "gamma"], size=n)
    ids = tokenizer([f"segment: {w}" for w in words])["input_ids"]
    return EncodedRows(
        ids, rng.normal(size=(n, 2)).astype(np.float32), (words == "alpha").astype(np.int64)
    )


def test_early_stopping_restores_the_best_epoch(tiny_model):
    model, tokenizer = tiny_model
    scripted = iter([0.6, 0.9, 0.7, 0.8, 0.95])  # best at epoch 2, then two stale epochs
    snapshots = []

    def score(outputs):
        snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
        return {"roc_auc": next(scripted), "log_loss": 0.5, "accuracy": 0.5, "f1": 0.5}

    config = TrainConfig(epochs=5, batch_size=8, lr=1e-3, head_lr=1e-2, patience=2)
    history = train(
        model,
        _rows(tokenizer, 40, 0),
        _rows(tokenizer, 16, 1),
        config=config,
        task="binary",
        pad_id=0,
        score_outputs=score,
    )
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]  # stopped after patience ran out
    best = snapshots[1]
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.detach(), best[name]), name
    assert not torch.equal(snapshots[3]["head.5.weight"], best["head.5.weight"])  # it did move on


@pytest.mark.parametrize("depth", [0, 1])
def test_the_best_epochs_validation_outputs_are_kept_only_when_exact(
    sentiment_df, tiny_config, depth
):
    """Without a cached prefix the loop's last best validation pass is what the fitted model
    computes, and the report reads it back; with one (fp16 states) the rows are scored again."""
    config = tiny_config(
        "label", model={"freeze_depth": depth, "trees": "off"}, epochs=2, precision="fp32"
    )
    tuner = FineTuner(config).fit(sentiment_df)
    val = sentiment_df.iloc[tuner.splits_["val"]]
    if depth:
        assert "val" not in tuner.split_outputs_
    else:
        np.testing.assert_allclose(
            tuner.split_outputs_["val"], tuner.network_outputs(val), atol=1e-5
        )
    kept = tuner.split_network_outputs("val", val)
    assert tuner.split_network_outputs("val", val) is kept  # scored once, then read back


def test_regression_loss_decreases(tiny_model):
    model, tokenizer = tiny_model
    model.head[-1] = torch.nn.Linear(16, 1)
    rows = _rows(tokenizer, 64, 0)
    rows.targets = rows.targets.astype(np.float32) * 2 - 1
    config = TrainConfig(epochs=6, batch_size=16, lr=1e-3, head_lr=1e-2, patience=6)
    history = train(
        model,
        rows,
        rows,
        config=config,
        task="regression",
        pad_id=0,
        score_outputs=lambda out: {
            "rmse": float(np.sqrt(np.mean((out[:, 0] - rows.targets) ** 2)))
        },
    )
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["val"]["rmse"] < history[0]["val"]["rmse"]


def test_batches_pad_to_their_longest_row():
    rows = EncodedRows(
        [[1, 2], [1, 2, 3, 4], [5]], np.zeros((3, 0), dtype=np.float32), np.array([0, 1, 0])
    )
    batches = list(iterate_batches(rows, 2, pad_id=9, shuffle=False))
    covered = np.concatenate([index for index, _ in batches])
    assert sorted(covered) == [0, 1, 2]
    for index, batch in batches:
        width = max(len(rows.input_ids[i]) for i in index)
        assert batch["input_ids"].shape == (len(index), width)
        assert batch["attention_mask"].sum().item() == sum(len(rows.input_ids[i]) for i in index)
        assert (batch["input_ids"][batch["attention_mask"] == 0] == 9).all()


def test_device_selection_on_cpu():
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
    # auto: bf16 only where the CPU has native bf16 instructions, else fp32
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert autocast_dtype(torch.device("cpu"), "auto") is expected
    assert autocast_dtype(torch.device("cpu"), "fp32") is None
    assert autocast_dtype(torch.device("cpu"), "bf16") is torch.bfloat16
