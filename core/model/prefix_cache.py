"""Frozen-prefix caching: the frozen bottom of a backbone gives the same output every epoch.

When the embeddings and the bottom N layers are frozen, their output for a row never changes, so
it is computed once (in eval mode, without gradients), stored in fp16, and later epochs run only
the top layers. Each store (the training rows', the validation rows') holds at most
``DEFAULT_BUDGET_BYTES`` in RAM; past that it is a file-backed memmap in the temporary folder
instead, deleted when the store is closed or collected. Because the prefix runs in eval mode,
dropout in the frozen layers is off with the cache (it is on without it).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile

import numpy as np
import torch
from torch import nn

from .backbones import find_layers

logger = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 2 * 1024**3


class _CachedEmbeddings(nn.Module):
    """Stands in for the embeddings: returns the cached prefix output of the current batch."""

    def __init__(self):
        super().__init__()
        self.states: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.states


def supports_prefix_cache(backbone: nn.Module) -> bool:
    """Layouts where slicing the layer list is exact (DeBERTa's first-layer conv is not)."""
    encoder = getattr(backbone, "encoder", None)
    return getattr(encoder, "conv", None) is None


class PrefixStore:
    """Per-row prefix outputs of variable length, in one flat fp16 array (RAM or memmap)."""

    def __init__(self, lengths: np.ndarray, d_model: int, *, budget_bytes: int | None = None):
        # Read at call time, not bound as a default argument, so the module's budget can be changed.
        budget_bytes = DEFAULT_BUDGET_BYTES if budget_bytes is None else budget_bytes
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        shape = (int(self.offsets[-1]), d_model)
        size = shape[0] * shape[1] * 2
        if size <= budget_bytes:
            self.values = np.empty(shape, dtype=np.float16)
            self._file = None
        else:
            self._file = tempfile.NamedTemporaryFile(prefix="fintune-prefix-", suffix=".f16")
            self.values = np.memmap(self._file.name, dtype=np.float16, mode="w+", shape=shape)
            logger.info("prefix cache of %.1f GB spills to %s", size / 1e9, self._file.name)
        self.filled = np.zeros(len(self.lengths), dtype=bool)

    @property
    def spilled(self) -> bool:
        """True when the store is a file on disk rather than RAM."""
        return self._file is not None

    def close(self) -> None:
        """Release the values; a spilled store's file is deleted."""
        self.values = np.empty((0, self.values.shape[1]), dtype=np.float16)
        if self._file is not None:
            self._file.close()  # NamedTemporaryFile deletes its file on close
            self._file = None

    def put(self, rows: np.ndarray, states: torch.Tensor) -> None:
        host = states.detach().to("cpu", torch.float16).numpy()  # (B, T, d)
        for i, row in enumerate(rows):
            start, end = self.offsets[row], self.offsets[row + 1]
            self.values[start:end] = host[i, : end - start]
        self.filled[rows] = True

    def get(self, rows: np.ndarray, width: int) -> torch.Tensor:
        out = np.zeros((len(rows), width, self.values.shape[1]), dtype=np.float32)  # (B, T, d)
        for i, row in enumerate(rows):
            start, end = self.offsets[row], self.offsets[row + 1]
            out[i, : end - start] = self.values[start:end]
        return torch.from_numpy(out)


class FrozenPrefix:
    """Runs the frozen part of ``backbone`` once per row and replays it from a store afterwards."""

    def __init__(self, backbone: nn.Module, depth: int):
        self.backbone = backbone
        self.layers = find_layers(backbone)
        self._parent, self._attribute = _layer_container(backbone)
        self._embedding_names = [name for name, _ in backbone.named_children() if "embed" in name]
        self.depth = depth
        if depth >= len(self.layers) and not self._runs_without_layers():
            # DeBERTa's encoder fails with no layer to run (its output is set inside the layer
            # loop), so with every layer frozen the last one is not cached but run each step.
            self.depth = len(self.layers) - 1
            logger.info("every layer frozen: the prefix cache keeps %d of them", self.depth)

    def _runs_without_layers(self) -> bool:
        """True when the backbone runs from cached states with an empty layer list."""
        parameter = next(self.backbone.parameters())
        ids = torch.ones((1, 2), dtype=torch.long, device=parameter.device)
        states = torch.zeros((1, 2, self.backbone.config.hidden_size), device=parameter.device)
        was_training = self.backbone.training
        self.backbone.eval()  # no dropout: the probe must not draw from the random generator
        try:
            with torch.no_grad(), self.top_only(states, depth=len(self.layers)):
                self.backbone(input_ids=ids, attention_mask=torch.ones_like(ids))
        except Exception:  # any failure means: do not run it that way
            return False
        finally:
            self.backbone.train(was_training)
        return True

    @torch.no_grad()
    def compute(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Output of the embeddings and the bottom ``depth`` layers, in eval mode."""
        layers = getattr(self._parent, self._attribute)
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            setattr(self._parent, self._attribute, nn.ModuleList(list(self.layers)[: self.depth]))
            return self.backbone(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
        finally:
            setattr(self._parent, self._attribute, layers)
            self.backbone.train(was_training)

    @contextlib.contextmanager
    def top_only(self, states: torch.Tensor, *, depth: int | None = None):
        """Within this block the backbone starts from ``states`` and runs only the top layers
        (those above ``depth``, by default the cached depth)."""
        depth = self.depth if depth is None else depth
        saved_layers = getattr(self._parent, self._attribute)
        saved_embeddings = {name: getattr(self.backbone, name) for name in self._embedding_names}
        stand_in = _CachedEmbeddings()
        stand_in.states = states
        try:
            setattr(self._parent, self._attribute, nn.ModuleList(list(self.layers)[depth:]))
            for index, name in enumerate(self._embedding_names):
                # The first embedding module yields the cached states; any projection after it
                # passes them on.
                setattr(self.backbone, name, stand_in if index == 0 else nn.Identity())
            yield
        finally:
            setattr(self._parent, self._attribute, saved_layers)
            for name, module in saved_embeddings.items():
                setattr(self.backbone, name, module)


def _layer_container(backbone: nn.Module) -> tuple[nn.Module, str]:
    layers = find_layers(backbone)
    for module in backbone.modules():
        for name, child in module.named_children():
            if child is layers:
                return module, name
    raise AssertionError("layer list not found among the backbone's children")
