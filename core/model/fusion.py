"""The fusion model: the pretrained encoder's reading of a row, numbers and table cells -> a head.

A row reaches the model in one of two ways (``ModelConfig.table_encoding``):

- **cells**: each categorical cell ("purpose: new car") is a string the backbone encodes once per
  distinct value (per step while its layers train; once in all at inference), and the row is the
  concatenation of its cell vectors (so the column of each stays known) with per-feature
  piecewise-linear embeddings of its numbers. Free-text columns still go through the backbone per
  row. A 1,000-row table with 60 distinct cells costs 60 short backbone passes per step instead of
  1,000 long ones.
- **row text**: the whole row serialised as one string, read by the backbone per row, with the
  numbers through one linear encoder (the first version's path).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def hidden_size(backbone: nn.Module) -> int:
    """The width of the backbone's token vectors."""
    config = backbone.config
    return config.hidden_size if hasattr(config, "hidden_size") else config.dim


def _numeric_embeddings(bins: list[list[float]], d_embedding: int) -> nn.Module:
    """Piecewise-linear embeddings (Gorishniy et al., 2022; version B of the TabM paper)."""
    from rtdl_num_embeddings import PiecewiseLinearEmbeddings

    with warnings.catch_warnings():
        # A 0/1 flag has one bin: the library warns that this is min-max scaling, which is right.
        warnings.simplefilter("ignore", UserWarning)
        return PiecewiseLinearEmbeddings(
            [torch.tensor(edges, dtype=torch.float32) for edges in bins],
            d_embedding,
            activation=False,
            version="B",
        )


class FusionModel(nn.Module):
    """Backbone vectors of the row's text and cells, numeric embeddings: fused by an MLP head."""

    def __init__(
        self,
        *,
        backbone: nn.Module,
        d_numeric_in: int,
        n_outputs: int,
        d_numeric: int = 64,
        d_hidden: int = 256,
        dropout: float = 0.1,
        reads_row_text: bool = True,
        numeric_bins: list[list[float]] | None = None,
        cell_token_ids: list[list[int]] | None = None,
        n_cell_columns: int = 0,
        d_cell: int = 32,
        pad_id: int = 0,
    ):
        super().__init__()
        self.backbone = backbone
        self.reads_row_text = reads_row_text
        d_text = hidden_size(backbone)
        d_fused = d_text if reads_row_text else 0
        # -- numbers: per-feature piecewise-linear embeddings when bins are given, else one linear
        self.numeric_bins = numeric_bins
        if numeric_bins:
            self.numeric_encoder = _numeric_embeddings(numeric_bins, d_cell)
            d_fused += len(numeric_bins) * d_cell
        elif d_numeric_in > 0:
            self.numeric_encoder = nn.Sequential(
                nn.Linear(d_numeric_in, d_numeric), nn.GELU(), nn.Dropout(dropout)
            )
            d_fused += d_numeric
        else:
            self.numeric_encoder = None
        # -- cells: the vocabulary's token ids (padded), encoded by the backbone on demand
        self.n_cell_columns = n_cell_columns if cell_token_ids else 0
        if self.n_cell_columns:
            width = max(len(ids) for ids in cell_token_ids)
            ids = torch.full((len(cell_token_ids), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(cell_token_ids), width), dtype=torch.long)
            for i, sequence in enumerate(cell_token_ids):
                ids[i, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
                mask[i, : len(sequence)] = 1
            # Not saved: rebuilt from the preprocessing state (the vocabulary) and the tokenizer.
            self.register_buffer("cell_ids", ids, persistent=False)
            self.register_buffer("cell_mask", mask, persistent=False)
            self.cell_projection = nn.Sequential(nn.Linear(d_text, d_cell), nn.LayerNorm(d_cell))
            d_fused += self.n_cell_columns * d_cell
        self._cell_table: torch.Tensor | None = None  # every cell's vector, while nothing trains
        d_fused = max(d_fused, 1)
        self.head = nn.Sequential(
            nn.LayerNorm(d_fused),
            nn.Dropout(dropout),
            nn.Linear(d_fused, d_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_hidden, n_outputs),
        )

    # ----------------------------------------------------------------- the backbone's part

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled backbone vectors (B, d) of tokenised texts."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, d)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, d)

    @property
    def backbone_trains(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    def train(self, mode: bool = True) -> FusionModel:
        # Into training with a backbone that learns: its weights will change, so the cell vectors
        # are computed again at the next eval. Not on the way out: a loaded model (every weight
        # requires grad) would re-encode its vocabulary at each eval() call, 1.6 s per predict.
        if mode and self.backbone_trains:
            self._cell_table = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._cell_table = None  # new weights (the best epoch's, a saved run's): new cell vectors
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def cell_vectors(self, cells: torch.Tensor) -> torch.Tensor:
        """The projected vector of each cell (B, n_cells, d_cell) for vocabulary ids (B, n_cells).

        While the backbone trains, only the distinct cells of this batch go through it; otherwise
        the whole vocabulary is encoded once and looked up.
        """
        if self.training and self.backbone_trains:
            distinct, inverse = torch.unique(cells, return_inverse=True)
            ids, mask = self.cell_ids[distinct], self.cell_mask[distinct]
            width = int(mask.sum(1).max())
            vectors = self.embed_text(ids[:, :width], mask[:, :width])  # (U, d)
            return self.cell_projection(vectors)[inverse]  # (B, n_cells, d_cell)
        return self.cell_projection(self._frozen_cell_table())[cells]

    def _frozen_cell_table(self) -> torch.Tensor:
        table = self._cell_table
        if table is None or table.device != self.cell_ids.device:
            # The frozen backbone's features, without dropout noise: computed once for all epochs
            # and for inference alike (a frozen run encodes each cell once in all).
            training = self.backbone.training
            self.backbone.eval()
            try:
                with torch.no_grad():
                    chunks = [
                        self.embed_text(self.cell_ids[i : i + 256], self.cell_mask[i : i + 256])
                        for i in range(0, len(self.cell_ids), 256)
                    ]
            finally:
                self.backbone.train(training)
            table = torch.cat(chunks).float()  # (V, d)
            self._cell_table = table
        return table

    # ----------------------------------------------------------------- fusion

    def fuse(
        self,
        pooled: torch.Tensor | None,
        numeric: torch.Tensor,
        cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Head outputs from pooled text vectors (B, d) or None, numbers (B, d_numeric_in) and
        cell ids (B, n_cells)."""
        parts = [pooled] if self.reads_row_text else []
        dtype = self.head[2].weight.dtype if pooled is None else pooled.dtype
        if self.numeric_encoder is not None:
            encoded = self.numeric_encoder(numeric.float())
            parts.append(encoded.flatten(1))  # (B, n_numeric * d) or (B, d_numeric)
        if self.n_cell_columns:
            parts.append(self.cell_vectors(cells).flatten(1))  # (B, n_cells * d_cell)
        if not parts:
            parts.append(numeric.new_zeros((len(numeric), 1)))
        fused = torch.cat([p.to(dtype) for p in parts], dim=-1)
        return self.head(fused)  # (B, n_outputs)

    def forward(self, input_ids, attention_mask, numeric, cells=None) -> torch.Tensor:
        pooled = self.embed_text(input_ids, attention_mask) if self.reads_row_text else None
        return self.fuse(pooled, numeric, cells)

    def make_parameter_groups(
        self, *, lr: float, head_lr: float, weight_decay: float
    ) -> list[dict]:
        """AdamW groups: no decay on biases, norms and embeddings; a higher rate for new parts."""
        groups: dict[tuple[bool, bool], list] = {}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            # The head and LoRA adapters start from scratch: they take the higher learning rate.
            is_new = not name.startswith("backbone.") or "lora_" in name
            no_decay = parameter.ndim < 2 or "norm" in name.lower() or "embed" in name.lower()
            groups.setdefault((is_new, no_decay), []).append(parameter)
        return [
            {
                "params": params,
                "lr": head_lr if is_new else lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
            for (is_new, no_decay), params in groups.items()
        ]
