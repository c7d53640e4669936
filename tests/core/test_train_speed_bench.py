"""bench.train_speed's parts that decide what is compared: the shared rows and weights, the
precisions, the validity rule, the table, and the Trainer reference's own process."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench import train_speed


def test_a_reference_counts_only_clearly_above_the_majority_share():
    # 300 test rows at a 2/3 majority: two standard errors are 0.054.
    assert not train_speed.clearly_above(0.667, 2 / 3, 300)  # the Trainer: at majority
    assert not train_speed.clearly_above(0.70, 2 / 3, 300)
    assert train_speed.clearly_above(0.73, 2 / 3, 300)
    assert not train_speed.clearly_above(None, 2 / 3, 300)


@pytest.mark.parametrize(
    ("choice", "native", "expected"),
    [
        ("both", True, ["bf16", "fp32"]),
        ("both", False, ["fp32"]),  # an AVX2-only CPU: emulated bf16 would be no fair pair
        ("fp32", True, ["fp32"]),
        ("bf16", False, ["bf16"]),
    ],
)
def test_precisions_follow_the_hardware(monkeypatch, choice, native, expected):
    import torch

    from core.training import devices

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    precisions, why = train_speed.available_precisions(choice)
    assert precisions == expected and why


def test_the_avx2_cap_leaves_no_native_bf16_and_restarts_the_bench_under_it(tmp_path):
    """--cpu-isa avx2: the caps reach torch before it loads (oneDNN then has no bf16 kernels, so
    "auto" precision is fp32 as on an AVX2-only CPU); in place, the bench goes on under them."""
    import os
    import subprocess
    import sys

    from bench import cpu_isa

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys, torch\n"
        "from bench import cpu_isa\n"
        "from core.training.devices import cpu_has_native_bf16\n"
        "cpu_isa.restrict('avx2', 'probe', [])\n"  # already in place: returns
        "print(torch.backends.cpu.get_cpu_capability(), cpu_has_native_bf16())\n"
    )
    env = {**os.environ, **cpu_isa.CAPS["avx2"], "PYTHONPATH": str(train_speed.ROOT)}
    out = subprocess.run(
        [sys.executable, str(probe)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AVX2", "False"]
    assert cpu_isa.restrict("native", "bench.train_speed", []) is None
    described = cpu_isa.describe("avx2")
    assert "AVX2" in described and "ONEDNN_MAX_CPU_ISA=AVX2" in described


def test_both_sides_get_our_split_and_our_class_weights():
    rng = np.random.default_rng(0)
    labels = rng.choice(["neutral", "bullish", "bearish"], p=[0.7, 0.2, 0.1], size=400)
    frame = pd.DataFrame({"text": [f"headline {i}" for i in range(400)], "label": labels})
    splits, classes, weights = train_speed.shared_split(frame, "none")
    assert weights is None
    parts = [set(splits[p].tolist()) for p in ("train", "val", "test")]
    assert sum(map(len, parts)) == 400 and not (parts[0] & parts[1] or parts[0] & parts[2])

    _, _, auto = train_speed.shared_split(frame, "auto")
    counts = pd.Series(labels[splits["train"]]).value_counts().reindex(classes).to_numpy()
    expected = np.sqrt(counts.sum() / (len(counts) * counts))  # ours: square-root balanced
    np.testing.assert_allclose(auto, expected)

    majority, share = train_speed.majority_share(frame, splits)
    assert majority == "neutral"
    assert share == pytest.approx((labels[splits["test"]] == "neutral").mean())


def _row(valid: bool) -> dict:
    cell = {
        "startup_s": 5.0,
        "loop_s": 100.0,
        "after_s": 16.0,
        "whole_s": 121.0,
        "epoch1_s": 50.0,
        "later_epoch_s": 50.0,
        "accuracy": 0.78,
        "peak_mb": 1500.0,
        "settings": {"precision": "bf16"},
    }
    return {
        "precision": "bf16",
        "depth": 6,
        "Trainer": {**cell, "accuracy": 0.75 if valid else 0.667},
        "FinTune": cell,
        "speedup": 1.5,
        "later_speedup": 25.0,
        "valid": valid,
    }


def test_the_markdown_table_has_one_line_per_side_and_marks_invalid_rows():
    lines = train_speed.format_markdown([_row(True), _row(False)]).splitlines()
    assert len(lines) == 2 + 4
    assert lines[0].startswith("| precision | freeze | side |")
    assert lines[1] == "|" + "---|" * len(train_speed.COLUMNS)
    assert "| Trainer |" in lines[2] and "| FinTune |" in lines[3] and "1.50x" in lines[3]
    assert "| yes |" in lines[3]
    assert "| NO: reference at majority |" in lines[5] and "| 0.667 |" in lines[4]


def test_the_trainer_reference_trains_its_pooler_and_classifier(tmp_path, tiny_backbone):
    rng = np.random.default_rng(0)
    words = {0: "plunges", 1: "holds", 2: "soars"}
    parts = {}
    for name, n in (("train", 48), ("val", 16), ("test", 16)):
        y = rng.integers(0, 3, size=n)
        frame = pd.DataFrame({"text": [f"stock {words[k]} today" for k in y], "y": y})
        parts[name] = str(tmp_path / f"{name}.csv")
        frame.to_csv(parts[name], index=False)
    out = tmp_path / "result.json"
    spec = {
        "backbone": tiny_backbone,
        "classes": ["bearish", "neutral", "bullish"],
        "parts": parts,
        "depth": 1,
        "epochs": 2,
        "precision": "fp32",
        "class_weights": [1.0, 0.5, 1.0],
        "max_length": 16,
        "batch_size": 16,
        "lr": 1e-3,
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "seed": 0,
        "out": str(out),
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    train_speed.run_trainer_child(spec_file)
    result = json.loads(out.read_text())
    assert 0.0 <= result["accuracy"] <= 1.0
    assert len(result["val_roc_auc"]) == 2 and result["best_epoch"] in (1, 2)  # eval each epoch
    marks = result["marks"]
    assert marks["started"] <= marks["training"] <= marks["trained"] <= marks["done"]
    assert len(result["epoch_starts"]) == 2
    settings = result["settings"]
    assert settings["model"].startswith("BertForSequenceClassification")
    assert settings["frozen"] == "embeddings + bottom 1 layers"
    assert settings["class_weights"] == [1.0, 0.5, 1.0]

    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_backbone, num_labels=3)
    frozen = [model.bert.embeddings, model.bert.encoder.layer[0]]
    n_frozen = sum(p.numel() for m in frozen for p in m.parameters())
    # Everything but the embeddings and layer 0 trains: the pooler and the classifier included.
    assert settings["trainable_parameters"] == sum(p.numel() for p in model.parameters()) - n_frozen


def test_the_step_bench_times_both_models_on_the_same_batch(tiny_backbone, capsys):
    from bench import train_step

    train_step.main(
        ["--precision", "fp32", "--steps", "2", "--rounds", "1", "--backbone", tiny_backbone]
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("round 1")]
    assert len(lines) == 2
    assert "BertForSequenceClassification" in lines[0] and "FusionModel" in lines[1]
    for line in lines:
        step = float(line.rsplit("step", 1)[1].split("ms")[0])
        parts = [float(p.split("ms")[0].split()[-1]) for p in line.split("ms")[:3]]
        assert step > 0 and abs(sum(parts) - step) < 0.5
