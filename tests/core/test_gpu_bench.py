"""bench.gpu's CPU-side parts: what MFU counts, and a whole run on a tiny config."""

from __future__ import annotations

import pytest

from bench import gpu


def _tiny_bert():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,  # the bench draws token ids up to 30,000
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )


def test_mfu_leaves_the_embedding_tables_out():
    from transformers import BertForSequenceClassification

    config = _tiny_bert()
    model = BertForSequenceClassification(config)
    total = sum(p.numel() for p in model.parameters())
    tables = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * 16
    assert gpu.non_embedding_parameters(model) == total - tables


def test_training_flops_are_six_n_t_plus_attention():
    flops = gpu.training_flops(1000, n_layers=2, d_model=16, seq_len=8, tokens=32)
    assert flops == 6 * 1000 * 32 + 12 * 2 * 16 * 8 * 32


def test_a_tiny_run_on_cpu_prints_both_sides_in_the_same_precision(monkeypatch, capsys):
    monkeypatch.setattr(gpu, "_bert_config", _tiny_bert)
    gpu.main(
        "--batch-size 2 --seq-len 8 --steps 1 --warmup 0 --rounds 1 --peak-tflops 1 "
        "--precision fp32".split()
    )
    out = capsys.readouterr().out
    assert "both sides: fp32 weights and maths" in out
    assert "6 x non-embedding parameters" in out
    assert out.count("non-embedding parameters (") == 2  # one line per side
    assert "MFU" in out and "speed-up ours / reference:" in out


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_both_sides_share_the_autocast(precision):
    import torch

    context = gpu.autocast(torch.device("cpu"), precision)
    with context:
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
