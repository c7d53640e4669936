"""The run's model as explanations call it: eval mode, its precision, and a cache of backbone
vectors per distinct text, so a text the backbone has read is never read again."""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError

DEFAULT_CACHE_SIZE = 50_000  # pooled vectors (~1.5 KB each for a 384-wide backbone)


@dataclass(frozen=True)
class ExplainStats:
    """What an explanation cost. Backbone passes are the expensive part; model rows are cheap."""

    model_rows: int  # rows the prediction function evaluated (masked samples x background rows)
    backbone_passes: int  # distinct texts actually sent through the backbone
    seconds: float
    precision: str  # "bf16" or "fp32": the backbone's compute type


def backbone_dtype(device, precision: str):
    from ..training.devices import autocast_dtype

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"Precision {precision!r} is unknown: use auto, fp32, bf16 or fp16.")
    return autocast_dtype(device, precision)


class CachedModel:
    """The run's model as a function of table rows, with backbone outputs cached by text.

    ``model(frame) -> (N,)`` returns the explained output per row. The pooled backbone vector of
    each serialised text is kept in an LRU dict, so only texts never seen in this session reach
    the backbone; those are deduplicated and run in length-sorted batches.
    """

    def __init__(
        self,
        tuner,
        *,
        output_index: int,
        precision: str = "auto",
        batch_size: int = 32,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ):
        import torch

        from ..training.devices import resolve_device

        self.tuner = tuner
        self.output_index = output_index
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.device = resolve_device(tuner.config.train.device)
        self.dtype = backbone_dtype(self.device, precision)
        self.precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        self.model_rows = 0
        self.backbone_passes = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._started = time.perf_counter()

    @contextlib.contextmanager
    def serving(self) -> Iterator[CachedModel]:
        """Put the model on the device in eval mode for the session, and back afterwards."""
        model = self.tuner.model_
        was_training = model.training
        # eval() only when needed: it drops a frozen model's cached cell vectors, which stay
        # valid from one explanation to the next while nothing trains.
        if was_training:
            model.eval()
        model.to(self.device)
        had_cells = getattr(model, "_cell_table", None) is not None
        try:
            yield self
        finally:
            if not had_cells and getattr(model, "_cell_table", None) is not None:
                self.backbone_passes += len(model.cell_ids)  # the cell vocabulary, encoded now
            if was_training:
                model.train()
            model.to("cpu")

    def stats(self) -> ExplainStats:
        return ExplainStats(
            model_rows=self.model_rows,
            backbone_passes=self.backbone_passes,
            seconds=time.perf_counter() - self._started,
            precision=self.precision,
        )

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        import torch

        pre, model = self.tuner.preprocessor_, self.tuner.model_
        pooled = (
            torch.from_numpy(self.embed(pre.texts(frame))).to(self.device)  # (N, d)
            if pre.reads_row_text
            else None
        )
        numeric = torch.from_numpy(pre.numeric(frame)).to(self.device)  # (N, d_numeric_in)
        cells = pre.cells(frame)
        cells = None if cells is None else torch.from_numpy(cells).to(self.device)
        with torch.no_grad():
            # Cached pooled vectors instead of a backbone pass; only the fusion head runs (cells
            # are looked up in the model's own table, encoded once per session).
            outputs = model.fuse(pooled, numeric, cells).float().cpu().numpy()  # (N, n_outputs)
        outputs = self.tuner.blend_outputs(frame, outputs)  # the trees' part, when the run has it
        self.model_rows += len(frame)
        predictions = self.tuner.outputs_to_predictions(outputs).astype(np.float64)
        return predictions if predictions.ndim == 1 else predictions[:, self.output_index]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Pooled backbone vectors (N, d) for texts, running the backbone only on unseen ones."""
        found: dict[str, np.ndarray] = {}
        missing = []
        for text in dict.fromkeys(texts):  # dedupe, keep order
            vector = self._cache.get(text)
            if vector is None:
                missing.append(text)
            else:
                self._cache.move_to_end(text)
                found[text] = vector
        if missing:
            found.update(self._run_backbone(missing))
        return np.stack([found[text] for text in texts]).astype(np.float32, copy=False)

    def _run_backbone(self, texts: list[str]) -> dict[str, np.ndarray]:
        import torch

        from ..training.loop import EncodedRows, iterate_batches

        tuner = self.tuner
        ids = tuner.tokenizer_(texts, truncation=True, max_length=tuner.max_length_)["input_ids"]
        rows = EncodedRows(
            input_ids=ids, numeric=np.zeros((len(ids), 0), dtype=np.float32), targets=None
        )
        autocast = (
            contextlib.nullcontext()
            if self.dtype is None
            else torch.autocast(device_type=self.device.type, dtype=self.dtype)
        )
        vectors: dict[str, np.ndarray] = {}
        # shuffle=False sorts by length: batches carry little padding.
        for index, batch in iterate_batches(
            rows, self.batch_size, pad_id=tuner.pad_id_, shuffle=False
        ):
            with torch.no_grad(), autocast:
                pooled = tuner.model_.embed_text(
                    batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
                )  # (B, d)
            pooled = pooled.float().cpu().numpy()
            for row, i in enumerate(index):
                vectors[texts[i]] = pooled[row]
        self.backbone_passes += len(texts)
        for text, vector in vectors.items():
            self._cache[text] = vector
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vectors
