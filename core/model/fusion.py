"""The fusion model: pretrained encoder over the row's text + numeric encoder -> task head."""

from __future__ import annotations

import torch
from torch import nn


class FusionModel(nn.Module):
    """Mean-pooled backbone output and an encoding of the numeric columns, fused by an MLP head."""

    def __init__(
        self,
        *,
        backbone: nn.Module,
        d_numeric_in: int,
        n_outputs: int,
        d_numeric: int = 64,
        d_hidden: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.backbone = backbone
        d_text = (
            backbone.config.hidden_size
            if hasattr(backbone.config, "hidden_size")
            else backbone.config.dim
        )
        self.numeric_encoder = (
            nn.Sequential(nn.Linear(d_numeric_in, d_numeric), nn.GELU(), nn.Dropout(dropout))
            if d_numeric_in > 0
            else None
        )
        d_fused = d_text + (d_numeric if d_numeric_in > 0 else 0)
        self.head = nn.Sequential(
            nn.LayerNorm(d_fused),
            nn.Dropout(dropout),
            nn.Linear(d_fused, d_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_hidden, n_outputs),
        )

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, d)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, d)

    def fuse(self, pooled: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """Head outputs from pooled text vectors (B, d) and numeric inputs (B, d_numeric_in)."""
        if self.numeric_encoder is not None:
            pooled = torch.cat(
                [pooled, self.numeric_encoder(numeric.to(pooled.dtype))], dim=-1
            )  # (B, d + d_num)
        return self.head(pooled)  # (B, n_outputs)

    def forward(self, input_ids, attention_mask, numeric) -> torch.Tensor:
        return self.fuse(self.embed_text(input_ids, attention_mask), numeric)

    def make_parameter_groups(
        self, *, lr: float, head_lr: float, weight_decay: float
    ) -> list[dict]:
        """AdamW groups: no decay on biases, norms and embeddings; a higher rate for the new head."""
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
