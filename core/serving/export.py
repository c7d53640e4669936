"""Export a finished run as a self-contained model folder, optionally with an ONNX graph.

The folder loads with ``FineTuner.load(folder)`` on a machine that has neither the run folder nor
the original backbone: it holds the weights, the backbone config and tokenizer, the preprocessing
state, the run's config, metrics and decision, and a model card. ``model.onnx`` (when asked for)
maps token ids, attention mask and numeric inputs to the raw outputs, for runtimes without PyTorch.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import FinTuneError, RunError
from ..runs import folder as runs
from ..runs.files import read_json, write_json

logger = logging.getLogger(__name__)

RUN_FILES = (
    "config.json",
    "metrics.json",
    "decision.json",
)  # decision.json: binary runs that chose one
MODEL_CARD = "MODEL_CARD.md"
EXPORT_FILE = "export.json"
ONNX_FILE = "model.onnx"
ONNX_OPSET = 18
ONNX_INPUTS = ("input_ids", "attention_mask", "numeric")
ONNX_OUTPUT = "logits"
_ONNX_SINGLE_FILE_BYTES = (
    1_800_000_000  # protobuf's 2 GB cap, with room: larger weights go to model.onnx.data
)


def export_run(run_dir: str | Path, output_dir: str | Path, *, onnx: bool = False) -> Path:
    """Write a self-contained copy of a succeeded run's model to ``output_dir`` and return it.

    ``output_dir`` must be new or empty; it appears whole or not at all. With ``onnx`` the folder
    also holds ``model.onnx``; ``export.json`` says which exporter produced it.
    """
    run_dir, output_dir = Path(run_dir), Path(output_dir)
    source = runs.model_dir(run_dir)
    if not (source / "fintune_model.json").is_file():
        state = (
            read_json(run_dir / "status.json").get("state", "missing")
            if run_dir.is_dir()
            else "missing"
        )
        raise RunError(
            f"Run {run_dir} has no saved model (state: {state}): export a run that succeeded."
        )
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise RunError(
            f"{output_dir} already exists and is not an empty folder: "
            "choose a new folder for the export."
        )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}-export-"))
    try:
        lora = json.loads((source / "fintune_model.json").read_text()).get("lora")
        if lora:
            # A LoRA run saved only adapters and head; the export folds them into the backbone so
            # the folder stands alone (no pretrained weights needed to load it).
            from ..training.estimator import FineTuner

            FineTuner.load(source).merged().save(staging)
        else:
            shutil.copytree(
                source, staging, dirs_exist_ok=True
            )  # exactly what FineTuner.save wrote
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / name)
        info = {"run_id": run_dir.name, "exported": datetime.now(UTC).isoformat(timespec="seconds")}
        if lora:
            info["lora_merged"] = {"base_backbone": lora["base_backbone"]}
        if onnx:
            from ..training.estimator import FineTuner

            info["onnx"] = export_onnx(FineTuner.load(staging), staging / ONNX_FILE)
        write_json(staging / EXPORT_FILE, info)
        (staging / MODEL_CARD).write_text(model_card(staging, info), encoding="utf-8")
        if output_dir.exists():
            output_dir.rmdir()  # empty, checked above
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


# --------------------------------------------------------------------------- ONNX


def _example_inputs(tuner) -> tuple:
    """A padded batch of two rows of 16 tokens: sizes above 1 so no axis is traced as a constant."""
    import torch

    encoded = tuner.tokenizer_(
        ["example row", "another example row with more words"],
        padding="max_length",
        max_length=16,
        truncation=True,
        return_tensors="pt",
    )
    d_numeric = len(tuner.preprocessor_.numeric_names)
    example = (
        encoded["input_ids"].long(),
        encoded["attention_mask"].long(),
        torch.zeros(2, d_numeric),
    )
    n_cells = len(tuner.preprocessor_.cell_columns)
    return example + (torch.zeros(2, n_cells, dtype=torch.long),) if n_cells else example


def export_onnx(tuner, path: str | Path) -> dict:
    """Write ``tuner.plain_model()`` as ONNX at ``path``, checked; return exporter, opset, inputs.

    Inputs ``input_ids`` and ``attention_mask`` (int64, (B, T)) and ``numeric`` (float32, (B, d)),
    with batch and sequence axes dynamic; output ``logits`` (B, n_outputs), the raw outputs that
    ``FineTuner.outputs_to_predictions`` turns into probabilities or values. The dynamo exporter is
    tried first; the TorchScript one is the fallback (it drops ``numeric`` when the model has no
    numeric inputs).
    """
    import onnx
    import torch

    path = Path(path)
    model = tuner.plain_model().to("cpu").float().eval()
    example = _example_inputs(tuner)
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    external = n_bytes > _ONNX_SINGLE_FILE_BYTES
    names = list(ONNX_INPUTS) + (["cells"] if len(example) > len(ONNX_INPUTS) else [])
    common = dict(input_names=names, output_names=[ONNX_OUTPUT], opset_version=ONNX_OPSET)
    cells_axes = {"cells": {0: "batch"}} if "cells" in names else {}
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    attempts = {
        "dynamo": dict(
            dynamo=True,
            external_data=external,
            verbose=False,
            dynamic_shapes={
                "input_ids": {0: batch, 1: sequence},
                "attention_mask": {0: batch, 1: sequence},
                "numeric": {0: batch},
                **({"cells": {0: batch}} if cells_axes else {}),
            },
        ),
        "torchscript": dict(
            dynamo=False,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "numeric": {0: "batch"},
                **cells_axes,
                ONNX_OUTPUT: {0: "batch"},
            },
        ),
    }
    if (
        "dynamo" not in inspect.signature(torch.onnx.export).parameters
    ):  # torch < 2.5: TorchScript only
        del attempts["dynamo"], attempts["torchscript"]["dynamo"]
    failures = []
    for exporter, options in attempts.items():
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore"
                )  # the exporters' deprecation and axis-naming chatter
                torch.onnx.export(model, example, str(path), **common, **options)
            onnx.checker.check_model(str(path))  # by path: also checks external weights
        except Exception as exc:  # noqa: BLE001 - any exporter failure means: try the next one
            failures.append(f"{exporter}: {type(exc).__name__}: {exc}")
            logger.warning("ONNX export with the %s exporter failed: %s", exporter, exc)
            path.unlink(missing_ok=True)
            Path(f"{path}.data").unlink(missing_ok=True)
            continue
        graph = onnx.load(str(path), load_external_data=False).graph
        logger.info("ONNX export: the %s exporter worked", exporter)
        return {
            "file": path.name,
            "exporter": exporter,
            "opset": ONNX_OPSET,
            "inputs": [i.name for i in graph.input],
            "output": ONNX_OUTPUT,
            # Said plainly: a run blended with trees ships them beside the graph, not in it.
            "holds": "the fine-tuned network only; blend with trees.txt by the weight in "
            "fintune_model.json (blend)"
            if tuner.trees_ is not None
            else "the whole model",
        }
    raise FinTuneError(
        "ONNX export failed with both exporters ("
        + "; ".join(failures)[:800]
        + "): export without ONNX, or report the backbone's architecture."
    )


def onnx_inputs(tuner, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """``frame`` as the ONNX graph's inputs: tokenised and padded like the PyTorch model sees it.

    Feed only the names the session lists (``session.get_inputs()``): a graph made by the
    TorchScript exporter for a text-only model has no ``numeric`` input.
    """
    from ..training.loop import collate

    rows = tuner.encode(frame, with_targets=False)
    batch = collate(rows, np.arange(len(rows)), pad_id=tuner.pad_id_)
    inputs = {
        "input_ids": batch["input_ids"].numpy(),
        "attention_mask": batch["attention_mask"].numpy(),
        "numeric": batch["numeric"].numpy().astype(np.float32),
    }
    if "cells" in batch:
        inputs["cells"] = batch["cells"].numpy()
    return inputs


# --------------------------------------------------------------------------- model card


def _number(value) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.4f}"


def model_card(folder: Path, info: dict) -> str:
    """MODEL_CARD.md for an export folder.

    What the model predicts, its inputs, metrics and how to load it.
    """
    meta = json.loads((folder / "fintune_model.json").read_text())
    spec = meta["preprocessing"]["spec"]
    config = meta["config"]
    metrics = read_json(folder / "metrics.json")
    decision = read_json(folder / "decision.json")
    target, task = spec["target"], spec["task"]
    if task == "regression":
        what = f"the value of `{target}` (regression, in the target's own units)"
    else:
        classes = ", ".join(f"`{c}`" for c in spec["classes"])
        positive = (
            f"; positive class `{spec['positive_class']}`" if spec.get("positive_class") else ""
        )
        what = f"`{target}`, {task} classification over {classes}{positive}"
    lines = [
        f"# FinTune model: {target}",
        "",
        f"Predicts {what}. Fine-tuned from backbone `{config['model']['backbone']}` (freeze depth "
        f"{config['model']['freeze_depth']}, {meta['max_length']} tokens per row) in run "
        f"`{info['run_id']}`, exported {info['exported']}.",
        "",
        "## Inputs",
        "",
        "One table row per prediction, with these columns (other columns are ignored):",
        "",
        "| column | role |",
        "|---|---|",
        *[
            f"| `{column}` | {role} |"
            for column, role in spec["roles"].items()
            if role in ("numeric", "categorical", "text", "datetime")
        ],
        "",
        "Each row's text and categorical columns (and binned numbers, per the run's "
        "`numeric_in_text` setting) are serialised into one text and tokenised"
        + (
            f"; numeric and date columns also enter as {meta['d_numeric_in']} standardised numbers."
            if meta["d_numeric_in"]
            else "; the model has no numeric inputs."
        )
        + " The preprocessing state (scalers, bins, categories) is in `fintune_model.json`.",
        "",
        "## Test metrics",
        "",
    ]
    test = metrics.get("test") or {}
    if test:
        intervals = metrics.get("test_intervals") or {}
        lines += ["| metric | value | 95% interval |", "|---|---|---|"]
        for name, value in test.items():
            interval = intervals.get(name)
            shown = f"[{_number(interval[0])}, {_number(interval[1])}]" if interval else ""
            lines.append(f"| {name} | {_number(value)} | {shown} |")
        rows = metrics.get("rows", {})
        lines += [
            "",
            f"On {rows.get('test', '?')} held-out test rows (split: {metrics.get('split', '?')}).",
        ]
    else:
        lines.append("No test metrics were recorded for this run.")
    if decision:
        lines += [
            "",
            f"Decision threshold: flag `{decision.get('positive_class')}` when its probability "
            f"is at least {_number(decision.get('threshold'))} "
            f"({decision.get('method', 'manual')}; `decision.json`).",
        ]
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "import pandas as pd",
        "from core.engine import FineTuner",
        "",
        'tuner = FineTuner.load("path/to/this/folder")',
        'rows = pd.read_csv("new_rows.csv")',
        *(
            ["values = tuner.predict(rows)"]
            if task == "regression"
            else ["labels = tuner.predict(rows)", "probabilities = tuner.predict_proba(rows)"]
        ),
        "```",
        "",
        "Loading needs the `fintune` package (and PyTorch, transformers), not the run folder or "
        "the original backbone: the backbone config and tokenizer are in `backbone/`, the "
        "weights in `model.safetensors` (no code is executed on load).",
    ]
    if "onnx" in info:
        onnx_info = info["onnx"]
        lines += [
            "",
            "## ONNX",
            "",
            f"`{onnx_info['file']}` (opset {onnx_info['opset']}, {onnx_info['exporter']} "
            "exporter) takes "
            + ", ".join(f"`{name}`" for name in onnx_info["inputs"])
            + " (int64 token ids and mask of shape (batch, sequence); float32 numeric inputs of "
            f"shape (batch, {meta['d_numeric_in']})) and returns `{ONNX_OUTPUT}` (batch, outputs): "
            "raw outputs, "
            + ("standardised values." if task == "regression" else "before the softmax.")
            + " Batch size and sequence length are free.",
            "",
            "```python",
            "import onnxruntime as ort",
            "from core.export import onnx_inputs",
            "",
            'session = ort.InferenceSession("path/to/this/folder/model.onnx")',
            "feed = onnx_inputs(tuner, rows)  # the same tokenisation and preprocessing",
            "names = [i.name for i in session.get_inputs()]",
            f"{ONNX_OUTPUT} = session.run(None, "
            "{k: v for k, v in feed.items() if k in names})[0]",
            f"predictions = tuner.outputs_to_predictions({ONNX_OUTPUT})  # probabilities or values",
            "```",
        ]
    return "\n".join(lines) + "\n"
