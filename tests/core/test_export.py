"""Export: a self-contained model folder that loads without the run folder, and an ONNX graph that
matches PyTorch on the real MiniLM."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from core.errors import RunError
from core.runs import folder as runs
from core.runs.worker import execute
from core.serving.export import EXPORT_FILE, MODEL_CARD, ONNX_FILE, export_run, onnx_inputs
from core.training.estimator import FineTuner

ONNX_TOLERANCE = 1e-4  # fp32 on both sides


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_backbone, make_table) -> object:
    """A succeeded one-epoch binary run on the tiny BERT (shared: tests copy it before changing
    anything)."""
    from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    config = RunConfig(
        data=DataConfig(target="credit_risk"),
        model=ModelConfig(backbone=tiny_backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2, seed=0),
    )
    run_dir = runs.create_run(tmp_path_factory.mktemp("runs"), config, make_table("credit"))
    assert execute(run_dir) == "succeeded"
    return run_dir


def _fp32(tuner: FineTuner) -> FineTuner:
    tuner.config = tuner.config.replace(train={"precision": "fp32", "device": "cpu"})
    return tuner


def _onnx_outputs(path, tuner: FineTuner, frame: pd.DataFrame) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = onnx_inputs(tuner, frame)
    return session.run(None, {k: v for k, v in feed.items() if k in names})[0]


def test_export_loads_without_the_run_folder(tiny_run, tmp_path):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    rows = runs.test_rows(run_dir, 12)
    expected = FineTuner.load(runs.model_dir(run_dir)).predict_proba(rows)

    out = export_run(run_dir, tmp_path / "export")
    shutil.rmtree(run_dir)  # nothing may point back into it

    names = {p.name for p in out.iterdir()}
    assert {
        "model.safetensors",
        "fintune_model.json",
        "backbone",
        "config.json",
        "metrics.json",
        "decision.json",
        MODEL_CARD,
        EXPORT_FILE,
    } <= names
    assert ONNX_FILE not in names and not list(tmp_path.glob(".export-export-*"))
    assert {"config.json", "tokenizer.json"} <= {p.name for p in (out / "backbone").iterdir()}
    tuner = FineTuner.load(out)
    np.testing.assert_array_equal(tuner.predict_proba(rows), expected)

    card = (out / MODEL_CARD).read_text()
    assert (
        "credit_risk" in card
        and "FineTuner.load" in card
        and "roc_auc" in card
        and "`notes` | text" in card
    )


def test_export_refuses_unfinished_runs_and_used_folders(
    tiny_run, runs_dir, tiny_config, credit_df, tmp_path
):
    queued = runs.create_run(runs_dir, tiny_config("credit_risk"), credit_df)
    with pytest.raises(RunError, match="no saved model"):
        export_run(queued, tmp_path / "out")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="not an empty folder"):
        export_run(tiny_run, tmp_path / "used")
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["keep.txt"]


def test_onnx_falls_back_to_the_torchscript_exporter(tiny_run, tmp_path, monkeypatch):
    import torch

    real_export = torch.onnx.export

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("dynamo exporter unavailable")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    out = export_run(tiny_run, tmp_path / "export", onnx=True)

    assert json.loads((out / EXPORT_FILE).read_text())["onnx"]["exporter"] == "torchscript"
    tuner = _fp32(FineTuner.load(out))
    rows = runs.test_rows(tiny_run, 7)
    np.testing.assert_allclose(
        _onnx_outputs(out / ONNX_FILE, tuner, rows),
        tuner.network_outputs(rows),  # the graph holds the network; trees ship beside it
        atol=ONNX_TOLERANCE,
        rtol=0,
    )


@pytest.mark.integration
def test_onnx_matches_pytorch_on_minilm(runs_dir, project_root, tmp_path):
    from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from core.model.backbones import bundled_minilm_path

    frame = pd.read_csv(project_root / "sample_data" / "fin_sentiment.csv").sample(
        150, random_state=0
    )
    config = RunConfig(
        data=DataConfig(target="label"),
        model=ModelConfig(backbone=str(bundled_minilm_path()), freeze_depth=4, max_length=32),
        train=TrainConfig(epochs=1, batch_size=16, max_steps=2, seed=0),
    )
    run_dir = runs.create_run(runs_dir, config, frame)
    assert execute(run_dir) == "succeeded"

    out = export_run(run_dir, tmp_path / "export", onnx=True)
    exported = json.loads((out / EXPORT_FILE).read_text())["onnx"]
    tuner = _fp32(FineTuner.load(out))
    by_length = frame.assign(n=frame["text"].str.len()).sort_values("n")
    rows = pd.concat([by_length.head(3), by_length.tail(3)]).drop(
        columns="n"
    )  # short and truncated rows
    feed = onnx_inputs(tuner, rows)
    assert (
        feed["input_ids"].shape[0] == 6 and feed["input_ids"].shape[1] != 16
    )  # not the export example's (2, 16)
    assert (
        len({int(m.sum()) for m in feed["attention_mask"]}) > 1
    )  # rows of different lengths, padded

    expected = tuner.network_outputs(rows)
    batched = _onnx_outputs(out / ONNX_FILE, tuner, rows)
    one_by_one = np.concatenate(
        [_onnx_outputs(out / ONNX_FILE, tuner, rows.iloc[[i]]) for i in range(len(rows))]
    )
    difference = max(np.abs(batched - expected).max(), np.abs(one_by_one - expected).max())
    print(
        f"ONNX ({exported['exporter']} exporter, opset {exported['opset']}) vs PyTorch fp32: "
        f"max abs difference {difference:.2e}"
    )
    assert difference <= ONNX_TOLERANCE


def test_cli_export(fintune, tiny_run, tmp_path):
    result = fintune("export", tiny_run, "-o", tmp_path / "cli-export")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "cli-export")
    assert FineTuner.load(tmp_path / "cli-export").predict(runs.test_rows(tiny_run, 3)).shape == (
        3,
    )

    again = fintune("export", tiny_run, "-o", tmp_path / "cli-export")
    assert again.returncode == 2 and "not an empty folder" in again.stderr
