"""The frozen-prefix cache: exact where it replays, the same training with it on or off, its spill
to disk past the memory budget, and LoRA above a cached prefix."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import torch

from core.model import prefix_cache
from core.model.backbones import freeze, load_backbone
from core.model.prefix_cache import FrozenPrefix, PrefixStore, supports_prefix_cache
from core.training.estimator import FineTuner


@pytest.fixture(scope="module")
def still_backbone(tmp_path_factory, tiny_backbone) -> str:
    """The tiny BERT with dropout off: with the cache the frozen layers run in eval mode, without
    it in train mode, so only without dropout can both give the same numbers."""
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path_factory.mktemp("still-bert")
    model = AutoModel.from_pretrained(
        tiny_backbone, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def stores(monkeypatch) -> list[PrefixStore]:
    """Every PrefixStore made while the test runs (training makes one for train, one for val)."""
    made: list[PrefixStore] = []
    original = PrefixStore.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(PrefixStore, "__init__", recording)
    return made


def _fit(config, frame):
    tuner = FineTuner(config).fit(frame)
    test = frame.iloc[tuner.splits_["test"]]
    losses = np.array([event["train_loss"] for event in tuner.history_])
    val_loss = np.array([event["val"]["log_loss"] for event in tuner.history_])
    return tuner, losses, val_loss, tuner.predict_proba(test)


# --------------------------------------------------------------------------- the prefix itself


@pytest.mark.parametrize("depth", [1, 3])
def test_replaying_the_prefix_gives_the_full_forward_pass(
    layout, depth, tiny_backbones, tiny_layers
):
    backbone, tokenizer = load_backbone(str(tiny_backbones[layout]))
    backbone.eval()
    batch = tokenizer(
        ["Shares fell 3% after the profit warning", "Outlook unchanged"],
        padding=True,
        return_tensors="pt",
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    prefix = FrozenPrefix(backbone, depth)
    # DeBERTa's encoder cannot run with no layer: with all of them frozen the top one still runs.
    everything_on_deberta = layout == "deberta-v2" and depth == tiny_layers
    assert prefix.depth == (depth - 1 if everything_on_deberta else depth)
    with torch.no_grad():
        full = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        states = prefix.compute(ids, mask)  # (B, T, d)
        with prefix.top_only(states):
            replayed = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    assert states.shape == full.shape
    real = mask.bool()  # padded positions are never read (masked in attention and pooling)
    assert torch.allclose(replayed[real], full[real], atol=1e-5)
    # top_only puts every module back: the plain forward pass is unchanged afterwards.
    with torch.no_grad():
        again = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(again, full)


def test_deberta_with_its_first_layer_conv_is_not_cached(tiny_backbones):
    from transformers import DebertaV2Config, DebertaV2Model

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    with_conv = DebertaV2Model(DebertaV2Config(**small, vocab_size=100, conv_kernel_size=3))
    assert supports_prefix_cache(with_conv) is False
    bert, _ = load_backbone(str(tiny_backbones["bert"]))
    assert supports_prefix_cache(bert) is True


def test_a_deberta_run_with_every_layer_frozen_trains_from_the_cache(
    tiny_config, tiny_backbones, tiny_layers, sentiment_df, stores
):
    config = tiny_config(
        "label",
        model={"backbone": str(tiny_backbones["deberta-v2"]), "freeze_depth": tiny_layers},
        epochs=2,
    )
    tuner, losses, _, proba = _fit(config, sentiment_df)
    assert len(stores) == 2 and all(s.filled.all() for s in stores)
    assert np.isfinite(losses).all() and np.isfinite(proba).all()


# --------------------------------------------------------------------------- the store


def test_store_keeps_each_rows_own_length_and_pads_with_zeros():
    store = PrefixStore(np.array([2, 4, 3]), 5)
    states = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(3, 4, 5) / 100  # (B, T, d)
    store.put(np.array([0, 1, 2]), states)
    assert store.filled.all() and not store.spilled
    out = store.get(np.array([2, 0]), width=4)
    assert out.shape == (2, 4, 5) and out.dtype == torch.float32
    assert torch.allclose(out[0, :3], states[2, :3], atol=1e-3)  # fp16 storage
    assert torch.allclose(out[1, :2], states[0, :2], atol=1e-3)
    assert torch.count_nonzero(out[0, 3:]) == 0 and torch.count_nonzero(out[1, 2:]) == 0


def test_a_store_past_its_budget_spills_to_a_file_and_reads_back_the_same():
    lengths, d = np.array([3, 1, 4]), 8
    size = int(lengths.sum()) * d * 2  # fp16
    at_budget = PrefixStore(lengths, d, budget_bytes=size)
    past_budget = PrefixStore(lengths, d, budget_bytes=size - 1)
    assert not at_budget.spilled and not isinstance(at_budget.values, np.memmap)
    assert past_budget.spilled and isinstance(past_budget.values, np.memmap)
    path = past_budget._file.name
    assert os.path.basename(path).startswith("fintune-prefix-") and os.path.exists(path)
    assert os.path.getsize(path) == size

    torch.manual_seed(0)
    states = torch.randn(3, 4, d)
    for store in (at_budget, past_budget):
        store.put(np.array([1, 0]), states[:2])
        store.put(np.array([2]), states[2:])
    rows = np.array([2, 1, 0])
    assert torch.equal(past_budget.get(rows, 4), at_budget.get(rows, 4))

    past_budget.close()
    assert not os.path.exists(path)
    lost = PrefixStore(lengths, d, budget_bytes=0)
    lost_path = lost._file.name
    del lost
    gc.collect()
    assert not os.path.exists(lost_path)  # a store nobody closed leaves no file behind either


def test_the_module_budget_is_read_when_a_store_is_made(monkeypatch):
    monkeypatch.setattr(prefix_cache, "DEFAULT_BUDGET_BYTES", 0)
    assert PrefixStore(np.array([2]), 4).spilled
    monkeypatch.setattr(prefix_cache, "DEFAULT_BUDGET_BYTES", 1024)
    assert not PrefixStore(np.array([2]), 4).spilled


# --------------------------------------------------------------------------- training with it


def test_cache_on_and_off_train_the_same_model(tiny_config, still_backbone, sentiment_df, stores):
    def config(cache: bool):
        return tiny_config(
            "label",
            model={"backbone": still_backbone, "freeze_depth": 2, "dropout": 0.0},
            epochs=3,
            precision="fp32",
            patience=5,
            cache_frozen_prefix=cache,
        )

    cached, losses_on, val_on, proba_on = _fit(config(True), sentiment_df)
    assert len(stores) == 2 and all(s.filled.all() for s in stores)  # train and val rows cached
    assert len(stores[0].lengths) == len(cached.splits_["train"])
    n_stores = len(stores)
    _, losses_off, val_off, proba_off = _fit(config(False), sentiment_df)
    assert len(stores) == n_stores  # no cache without it

    assert len(losses_on) == len(losses_off) == 3
    # The cache stores fp16: differences of that order, nothing more.
    np.testing.assert_allclose(losses_on, losses_off, rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(val_on, val_off, rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(proba_on, proba_off, atol=1e-2)
    assert (proba_on.argmax(1) == proba_off.argmax(1)).mean() >= 0.95
    assert losses_on[-1] < losses_on[0]  # it trained


def test_the_spilled_cache_trains_exactly_like_the_one_in_ram(
    tiny_config, still_backbone, sentiment_df, stores, monkeypatch
):
    config = tiny_config(
        "label",
        model={"backbone": still_backbone, "freeze_depth": 3, "dropout": 0.0},
        epochs=2,
        precision="fp32",
    )
    _, losses_ram, _, proba_ram = _fit(config, sentiment_df)
    assert stores and not any(s.spilled for s in stores)
    monkeypatch.setattr(prefix_cache, "DEFAULT_BUDGET_BYTES", 1024)  # far below these rows
    del stores[:]
    _, losses_disk, _, proba_disk = _fit(config, sentiment_df)
    assert len(stores) == 2 and all(s.spilled and s.filled.all() for s in stores)
    # The same fp16 values, from a file instead of RAM: the very same run.
    np.testing.assert_array_equal(losses_disk, losses_ram)
    np.testing.assert_array_equal(proba_disk, proba_ram)


def test_lora_above_a_cached_prefix_trains_and_predicts(
    tiny_config, still_backbone, sentiment_df, stores
):
    def config(cache: bool):
        return tiny_config(
            "label",
            model={
                "backbone": still_backbone,
                "freeze_depth": 2,
                "lora_rank": 4,
                "lora_dropout": 0.0,
                "dropout": 0.0,
            },
            epochs=2,
            precision="fp32",
            cache_frozen_prefix=cache,
        )

    tuner, losses_on, _, proba_on = _fit(config(True), sentiment_df)
    assert len(stores) == 2 and all(s.filled.all() for s in stores)
    adapters = {n: p for n, p in tuner.model_.named_parameters() if "lora_" in n}
    assert adapters and all(".layer.2." in n for n in adapters)  # only above the frozen 2
    # LoRA's B starts at zero: a trained adapter has moved it.
    assert any(
        n.endswith("lora_B.default.weight") and p.abs().sum() > 0 for n, p in adapters.items()
    )
    assert proba_on.shape == (len(tuner.splits_["test"]), 3)
    np.testing.assert_allclose(proba_on.sum(1), 1.0, atol=1e-5)

    _, losses_off, _, proba_off = _fit(config(False), sentiment_df)
    np.testing.assert_allclose(losses_on, losses_off, rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(proba_on, proba_off, atol=1e-2)


def test_freeze_leaves_the_layers_the_cache_skips_without_gradients(still_backbone):
    backbone, _ = load_backbone(still_backbone)
    freeze(backbone, 2)
    prefix = FrozenPrefix(backbone, 2)
    frozen = list(prefix.layers)[:2]
    assert all(not p.requires_grad for layer in frozen for p in layer.parameters())
    assert all(p.requires_grad for p in prefix.layers[2].parameters())
