"""The fine-tuning estimator: table in, fitted fusion model out (scikit-learn style)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..data.preprocess import Preprocessor
from ..data.schema import describe_table
from ..data.split import split_rows
from ..errors import ConfigError, RunError
from ..model.backbones import (
    count_parameters,
    freeze,
    load_backbone,
    n_layers,
    resolve_freeze_depth,
    trains_head_only,
)
from ..stats.metrics import classification_metrics, regression_metrics
from .events import TRAINING_PHASE, PhaseEvent

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
AUTO_MAX_LENGTH_CAP = 256


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predictions_table(
    spec, frame: pd.DataFrame, predictions: np.ndarray, decision=None
) -> pd.DataFrame:
    """Rows ``row``, the target (if ``frame`` has it), ``prediction`` and ``prob_<class>`` columns.

    ``predictions`` are class probabilities (N, C) or values (N,); any model's outputs (the
    fine-tuned one or a baseline) become the same table.
    """
    out = pd.DataFrame({"row": frame.index.to_numpy()})
    if spec.target in frame.columns:
        out[spec.target] = frame[spec.target].to_numpy()
    if spec.task == "regression":
        out["prediction"] = predictions
        return out
    if decision is not None and spec.task == "binary":
        from ..stats.thresholds import apply_decision

        out["prediction"] = apply_decision(predictions, spec.classes, decision)
    else:
        out["prediction"] = np.asarray(spec.classes, dtype=object)[predictions.argmax(axis=1)]
    for k, label in enumerate(spec.classes):
        out[f"prob_{label}"] = predictions[:, k]
    return out


class FineTuner:
    """Fine-tune a pretrained encoder plus fusion head on a table.

    ``fit`` returns self and sets ``spec_``, ``preprocessor_``, ``model_``, ``tokenizer_``,
    ``max_length_``, ``splits_`` and ``history_``; ``predict`` / ``predict_proba`` need a fitted
    model. ``trees_`` and ``blend_`` hold the tree model and its blend weight when the run's model
    is a blend (None otherwise).
    """

    trees_ = None  # a fitted core.model.trees.TreeModel when the blend helped
    blend_: dict | None = None  # its record from core.model.trees.fit_blend

    def __init__(self, config: RunConfig):
        self.config = config
        # The network's outputs on its own split parts ("val", "test"), computed once per fit and
        # read back by the blend and the run's report; the fitted weights never change after.
        self.split_outputs_: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- fitting

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        splits: dict[str, np.ndarray] | None = None,
        on_progress: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_checkpoint: Callable[[FineTuner, dict], None] | None = None,
        cluster=None,
    ) -> FineTuner:
        """Fit on ``frame``.

        ``splits`` (row positions for train/val/test) replaces the configured split.
        ``on_checkpoint(self, epoch_event)`` is called whenever validation improves, while the model
        holds those weights: ``self.save(folder)`` then writes a loadable checkpoint.
        ``cluster`` is the process group when several processes train this run (see
        core.distributed).
        """
        from .loop import train

        report = on_progress or (lambda event: None)
        cfg = self.config
        report(PhaseEvent(phase="Checking the data").to_dict())
        self.spec_ = describe_table(frame, cfg.data)
        self.splits_ = splits or split_rows(frame, self.spec_, cfg.data, cfg.train.seed)
        parts = {name: frame.iloc[rows] for name, rows in self.splits_.items()}
        self.preprocessor_ = Preprocessor(
            self.spec_,
            numeric_in_text=cfg.model.numeric_in_text,
            table_encoding=cfg.model.table_encoding,
        ).fit(parts["train"])

        report(PhaseEvent(phase=f"Loading backbone {cfg.model.backbone}").to_dict())
        import torch

        torch.manual_seed(cfg.train.seed)  # the new head's initial weights: same seed, same run
        self._build_model(load_backbone(cfg.model.backbone))
        self.max_length_ = cfg.model.max_length or self._auto_max_length(parts["train"])
        trainable, total = count_parameters(self.model_)
        report(
            PhaseEvent(
                phase="Tokenising",
                trainable_parameters=trainable,
                total_parameters=total,
                max_length=self.max_length_,
                rows={k: len(v) for k, v in self.splits_.items()},
            ).to_dict()
        )
        train_rows, val_rows = self.encode(parts["train"]), self.encode(parts["val"])
        report(PhaseEvent(phase=TRAINING_PHASE).to_dict())

        from .distributed import current_cluster

        cluster = cluster or current_cluster(cfg.train.device)
        best_state: dict = {}
        self.split_outputs_ = {}
        self.history_ = train(
            self.model_,
            train_rows,
            val_rows,
            config=self.config.train,
            task=self.spec_.task,
            pad_id=self.pad_id_,
            score_outputs=lambda outputs: self.score_outputs(outputs, val_rows.targets),
            class_weights=self._class_weights(train_rows.targets),
            frozen_depth=self.config.model.freeze_depth,
            on_progress=on_progress,
            should_stop=should_stop,
            on_best=(lambda event: on_checkpoint(self, event))
            if on_checkpoint is not None
            else None,
            cluster=cluster,
            best_state_out=best_state,
            best_val_out=self.split_outputs_,
        )
        if cluster.is_fsdp:
            # FSDP left the model's weights as shards: rebuild a plain model, then load the best
            # weights.
            torch.manual_seed(cfg.train.seed)
            self._build_model(load_backbone(cfg.model.backbone))
            self.model_.load_state_dict(best_state, strict=False)
        self.model_.to("cpu")
        self.model_.eval()  # fitted: inference from here on, like a loaded model
        self._fit_trees(parts, val_rows.targets, report)
        return self

    def _fit_trees(self, parts: dict, val_targets, report) -> None:
        """LightGBM on the table's columns, kept with its blend weight if it helps on validation."""
        from ..model.trees import TreeModel, fit_blend, has_tree_features

        self.trees_, self.blend_ = None, None
        if (
            self.config.model.trees == "off"
            or not has_tree_features(self.spec_)
            or val_targets is None
            or not len(parts["val"])
        ):
            return
        report(PhaseEvent(phase="Fitting the tree model and its blend").to_dict())
        # Trees read the text columns too (TF-IDF): on market data with headlines, trees without
        # them had no signal and the blend's weight on them cost 0.03 AUC (bench.quality).
        trees = TreeModel(
            self.spec_, text=True, target_stats=self.preprocessor_.target_stats_ or None
        )
        trees.fit(parts["train"], parts["val"])
        blend = fit_blend(
            self.spec_.task,
            self.split_network_outputs("val", parts["val"]),
            trees.raw_outputs(parts["val"]),
            val_targets,
        )
        if blend["weight"] < 1.0:
            self.trees_, self.blend_ = trees, blend

    def _build_model(self, loaded) -> None:
        backbone, self.tokenizer_ = loaded
        depth = self.config.model.freeze_depth
        if depth == "auto":
            depth = resolve_freeze_depth(self.config.model, self.spec_, n_layers(backbone))
            # The saved model and the run's config.json record the depth that trained.
            self.config = self.config.replace(model={"freeze_depth": depth})
        if depth > n_layers(backbone):
            raise ConfigError(
                f"Freeze depth {depth} is more than {self.config.model.backbone!r} has layers "
                f"({n_layers(backbone)}): choose 0-{n_layers(backbone)}."
            )
        head_only = trains_head_only(self.config.model, self.spec_, n_layers(backbone))
        # The saved model and the run's config.json record the epochs and patience that trained.
        schedule = self.config.train.resolved(head_only=head_only)
        self.config = self.config.replace(
            train={name: getattr(schedule, name) for name in ("epochs", "patience", "head_lr")}
        )
        self.model_ = self._fusion_model(backbone)
        freeze(backbone, depth)
        if not self.model_.reads_row_text and not self.model_.n_cell_columns:
            freeze(backbone, n_layers(backbone))  # a table of numbers only: nothing to read
        m = self.config.model
        if m.lora_rank > 0:
            from ..model.adapters import add_lora, weights_checksum

            self.base_checksum_ = weights_checksum(backbone)
            add_lora(
                backbone,
                rank=m.lora_rank,
                alpha=m.lora_scale,
                dropout=m.lora_dropout,
                targets=m.lora_targets,
                from_layer=depth,
            )

    def _fusion_model(self, backbone):
        """The network for this table, its inputs fixed by the fitted preprocessing."""
        from ..model.fusion import FusionModel

        pre, m = self.preprocessor_, self.config.model
        cell_ids = (
            self.tokenizer_(pre.cell_vocabulary, truncation=True, max_length=32)["input_ids"]
            if pre.cell_values_
            else None
        )
        return FusionModel(
            backbone=backbone,
            d_numeric_in=len(pre.numeric_names),
            n_outputs=1 if self.spec_.task == "regression" else len(self.spec_.classes),
            d_numeric=m.d_numeric,
            d_hidden=m.d_hidden,
            dropout=m.dropout,
            reads_row_text=pre.reads_row_text,
            numeric_bins=pre.numeric_bins_ or None,
            cell_token_ids=cell_ids,
            n_cell_columns=len(pre.cell_columns),
            d_cell=m.d_cell,
            pad_id=self.pad_id_,
        )

    @property
    def pad_id_(self) -> int:
        return self.tokenizer_.pad_token_id if self.tokenizer_.pad_token_id is not None else 0

    def _length_cap(self) -> int:
        limits = [
            AUTO_MAX_LENGTH_CAP,
            getattr(self.model_.backbone.config, "max_position_embeddings", 512),
        ]
        model_max = getattr(self.tokenizer_, "model_max_length", None)
        if isinstance(model_max, int) and model_max < 100_000:
            limits.append(model_max)
        return min(limits)

    def _auto_max_length(self, train: pd.DataFrame) -> int:
        """95th percentile of token lengths in training rows: long tails cost time, not accuracy."""
        if not self.preprocessor_.reads_row_text:
            return 8  # no per-row text: the setting is unused
        texts = self.preprocessor_.texts(train.sample(min(len(train), 2000), random_state=0))
        lengths = [len(ids) for ids in self.tokenizer_(texts, truncation=False)["input_ids"]]
        return int(min(max(16, np.percentile(lengths, 95)), self._length_cap()))

    def _class_weights(self, targets: np.ndarray) -> np.ndarray | None:
        mode = self.config.train.class_weights
        if self.spec_.task == "regression" or mode == "none":
            return None
        counts = np.bincount(targets, minlength=len(self.spec_.classes)).astype(float)
        counts[counts == 0] = 1.0
        balanced = counts.sum() / (len(counts) * counts)
        if mode == "balanced":
            return balanced
        # auto: soften (square root) balanced weights, and only for clearly imbalanced targets.
        return np.sqrt(balanced) if counts.min() / counts.sum() < 0.25 else None

    # ----------------------------------------------------------------- inference

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RunError("This FineTuner is not fitted: call fit() or load a finished run first.")

    def encode(self, frame: pd.DataFrame, *, with_targets: bool = True):
        from .loop import EncodedRows

        features = self.preprocessor_.transform(frame)
        ids = (
            self.tokenizer_(features.texts, truncation=True, max_length=self.max_length_)[
                "input_ids"
            ]
            if self.preprocessor_.reads_row_text
            else [[] for _ in features.texts]
        )
        has_target = (
            with_targets
            and self.spec_.target in frame.columns
            and frame[self.spec_.target].notna().all()
        )
        targets = self.preprocessor_.encode_target(frame) if has_target else None
        return EncodedRows(
            input_ids=ids, numeric=features.numeric, targets=targets, cells=features.cells
        )

    def raw_outputs(self, frame: pd.DataFrame, *, batch_size: int = 64) -> np.ndarray:
        """The run's model outputs (logits or scaled values): the network, blended with the trees
        when the run has them."""
        return self.blend_outputs(frame, self.network_outputs(frame, batch_size=batch_size))

    def blend_outputs(self, frame: pd.DataFrame, network: np.ndarray) -> np.ndarray:
        """The shipped model's outputs given the network's outputs for ``frame``."""
        if self.trees_ is None:
            return network
        from ..model.trees import apply_blend

        return apply_blend(self.blend_, network, self.trees_.raw_outputs(frame))

    def part_outputs(
        self, frame: pd.DataFrame, network: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Each part's own outputs when the model is a blend: {"network": ..., "trees": ...};
        ``network`` is the network's outputs for ``frame`` when the caller already has them."""
        if self.trees_ is None:
            return {}
        network = self.network_outputs(frame) if network is None else network
        return {"network": network, "trees": self.trees_.raw_outputs(frame)}

    def split_network_outputs(self, name: str, frame: pd.DataFrame) -> np.ndarray:
        """The network's outputs on the rows of its own split ``name`` (``frame``): scored once,
        or read back from training's last validation pass."""
        if name not in self.split_outputs_:
            self.split_outputs_[name] = self.network_outputs(frame)
        return self.split_outputs_[name]

    def network_outputs(self, frame: pd.DataFrame, *, batch_size: int = 64) -> np.ndarray:
        """The fine-tuned network's own outputs."""
        from .devices import autocast_dtype, resolve_device
        from .loop import predict_outputs

        self._check_fitted()
        device = resolve_device(self.config.train.device)
        self.model_.to(device)
        try:
            return predict_outputs(
                self.model_,
                self.encode(frame, with_targets=False),
                batch_size=batch_size,
                pad_id=self.pad_id_,
                device=device,
                dtype=autocast_dtype(device, self.config.train.precision),
            )
        finally:
            self.model_.to("cpu")

    def outputs_to_predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C), or predicted values (N,) in the target's units."""
        if self.spec_.task == "regression":
            return self.preprocessor_.decode_regression(outputs[:, 0])
        return _softmax(outputs)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if self.spec_.task == "regression":
            raise RunError("predict_proba is for classification runs: use predict for regression.")
        return self.outputs_to_predictions(self.raw_outputs(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        result = self.outputs_to_predictions(self.raw_outputs(frame))
        if self.spec_.task == "regression":
            return result
        return np.asarray(self.spec_.classes, dtype=object)[result.argmax(axis=1)]

    def score_outputs(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Metrics for raw outputs against encoded targets."""
        predictions = self.outputs_to_predictions(outputs)
        if self.spec_.task == "regression":
            truth = self.preprocessor_.decode_regression(targets)
            return regression_metrics(truth, predictions)
        return classification_metrics(targets, predictions, self.spec_.positive_index)

    def evaluate(self, frame: pd.DataFrame) -> dict[str, float]:
        targets = self.preprocessor_.encode_target(frame)
        return self.score_outputs(self.raw_outputs(frame), targets)

    def evaluate_parts(self, frame: pd.DataFrame) -> dict[str, dict[str, float]]:
        """Each part's own metrics when the model is a blend (else empty): what each brings."""
        targets = self.preprocessor_.encode_target(frame)
        return {
            name: self.score_outputs(outputs, targets)
            for name, outputs in self.part_outputs(frame).items()
        }

    def predictions_frame(
        self, frame: pd.DataFrame, outputs: np.ndarray | None = None, *, decision=None
    ) -> pd.DataFrame:
        """One row per input row: target if present, prediction, and one probability per class.

        ``outputs`` are this frame's raw outputs when the caller already has them. A binary run's
        labels follow ``decision`` (a :class:`core.thresholds.Decision`) when given, else the most
        probable class.
        """
        outputs = self.raw_outputs(frame) if outputs is None else outputs
        return predictions_table(self.spec_, frame, self.outputs_to_predictions(outputs), decision)

    def plain_model(self):
        """The fitted FusionModel as plain torch modules (LoRA adapters, if any, merged into a
        copy): what ONNX export and other framework-agnostic consumers need."""
        from ..model.adapters import has_adapters, merged_copy

        self._check_fitted()
        return merged_copy(self.model_) if has_adapters(self.model_) else self.model_

    def merged(self) -> FineTuner:
        """This model with its LoRA adapters folded into the backbone: it saves as a plain,
        self-contained model that loads without the original pretrained weights."""
        import copy

        from ..model.adapters import has_adapters

        self._check_fitted()
        if not has_adapters(self.model_):
            return self
        plain = copy.copy(self)
        plain.config = self.config.replace(model={"lora_rank": 0, "lora_targets": None})
        plain.model_ = self.plain_model()
        return plain

    # ----------------------------------------------------------------- persistence

    def save(self, model_dir: str | Path) -> Path:
        """Write safetensors weights, backbone config and tokenizer, and the preprocessing state."""
        from safetensors.torch import save_model

        self._check_fitted()
        model_dir = Path(model_dir)
        (model_dir / "backbone").mkdir(parents=True, exist_ok=True)
        self.model_.backbone.config.save_pretrained(model_dir / "backbone")
        self.tokenizer_.save_pretrained(model_dir / "backbone")
        meta = {
            "config": self.config.to_dict(),
            "preprocessing": self.preprocessor_.state_dict(),
            "max_length": self.max_length_,
            "d_numeric_in": len(self.preprocessor_.numeric_names),
        }
        if self.config.model.lora_rank > 0:
            # Only what training changed: adapters, numeric encoder and head. The frozen pretrained
            # weights are loaded from the backbone again (and checked against this fingerprint).
            from safetensors.torch import save_file

            from ..model.adapters import is_adapter

            state = {
                k: v.detach().cpu().contiguous()
                for k, v in self.model_.state_dict().items()
                if not k.startswith("backbone.") or is_adapter(k)
            }
            save_file(state, str(model_dir / MODEL_FILE), metadata={"format": "pt"})
            meta["lora"] = {
                "base_backbone": self.config.model.backbone,
                "base_checksum": self.base_checksum_,
            }
        else:
            save_model(self.model_, str(model_dir / MODEL_FILE))
        if self.trees_ is not None:
            self.trees_.save(model_dir)
            meta["blend"] = self.blend_
        (model_dir / "fintune_model.json").write_text(json.dumps(meta, indent=2))
        return model_dir

    @classmethod
    def load(cls, model_dir: str | Path) -> FineTuner:
        """Rebuild a saved model (weights only from safetensors; no code is executed)."""
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoTokenizer

        from ..model.backbones import build_backbone_from_config

        model_dir = Path(model_dir)
        meta_path = model_dir / "fintune_model.json"
        if not meta_path.is_file() or not (model_dir / MODEL_FILE).is_file():
            raise RunError(
                f"{model_dir} holds no saved model: pick a run that finished successfully."
            )
        meta = json.loads(meta_path.read_text())
        tuner = cls(RunConfig.from_dict(meta["config"]))
        tuner.preprocessor_ = Preprocessor.from_state(meta["preprocessing"])
        tuner.spec_ = tuner.preprocessor_.spec
        tuner.max_length_ = meta["max_length"]
        tuner.tokenizer_ = AutoTokenizer.from_pretrained(
            model_dir / "backbone", trust_remote_code=False
        )
        tuner._load_trees(model_dir, meta)
        if "lora" in meta:
            return tuner._load_lora(model_dir, meta)
        backbone_config = AutoConfig.from_pretrained(
            model_dir / "backbone", trust_remote_code=False
        )
        tuner.model_ = tuner._fusion_model(build_backbone_from_config(backbone_config))
        load_model(tuner.model_, str(model_dir / MODEL_FILE))
        tuner.model_.eval()
        return tuner

    def _load_trees(self, model_dir: Path, meta: dict) -> None:
        from ..model.trees import STATE_FILE, TreeModel

        self.trees_, self.blend_ = None, meta.get("blend")
        if self.blend_ is not None:
            if not (model_dir / STATE_FILE).is_file():
                raise RunError(
                    f"{model_dir} is a blend of network and trees but its tree model is missing: "
                    "retrain the run."
                )
            self.trees_ = TreeModel.load(model_dir)

    def _load_lora(self, model_dir: Path, meta: dict) -> FineTuner:
        """Rebuild a LoRA run: pretrained backbone, same adapters, saved adapter/head weights."""
        from safetensors.torch import load_file

        from ..model.adapters import is_adapter, weights_checksum

        base = meta["lora"]["base_backbone"]
        backbone, _ = load_backbone(base)
        checksum = weights_checksum(backbone)
        if abs(checksum - meta["lora"]["base_checksum"]) > 1e-6 * max(1.0, abs(checksum)):
            raise RunError(
                f"The pretrained weights of {base!r} differ from those this LoRA run was trained "
                "on: its adapters only fit the original weights. Restore that backbone or retrain."
            )
        self._build_model((backbone, self.tokenizer_))
        state = load_file(str(model_dir / MODEL_FILE))
        missing, unexpected = self.model_.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("backbone.") or is_adapter(k)]
        if missing or unexpected:
            raise RunError(
                f"{model_dir} does not match its LoRA settings (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}): retrain the run."
            )
        self.model_.eval()
        return self


def inspect_inputs(
    frame: pd.DataFrame, config: RunConfig, *, n_rows: int = 3, tokenizer=None
) -> list[dict]:
    """What the model reads for a few training rows: serialised text, tokens, numeric inputs."""
    from ..model.backbones import resolve

    spec = describe_table(frame, config.data)
    splits = split_rows(frame, spec, config.data, config.train.seed)
    train = frame.iloc[splits["train"]]
    pre = Preprocessor(
        spec,
        numeric_in_text=config.model.numeric_in_text,
        table_encoding=config.model.table_encoding,
    ).fit(train)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            resolve(config.model.backbone), trust_remote_code=False
        )
    sample = train.head(n_rows)
    features = pre.transform(sample)
    max_length = config.model.max_length or AUTO_MAX_LENGTH_CAP
    vocabulary = pre.cell_vocabulary
    rows = []
    for i, text in enumerate(features.texts):
        ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"] if text else []
        rows.append(
            {
                "row": int(sample.index[i]),
                "text": text,
                "tokens": tokenizer.convert_ids_to_tokens(ids),
                "cells": []
                if features.cells is None
                else [vocabulary[j] for j in features.cells[i]],
                "numeric": dict(
                    zip(pre.numeric_names, map(float, features.numeric[i]), strict=True)
                ),
                "target": str(sample[spec.target].iloc[i]),
            }
        )
    return rows
