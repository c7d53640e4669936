"""Low-rank adapters (LoRA, through the ``peft`` library): fine-tuning a small fraction of weights.

Freezing layers is one way to train cheaply; LoRA is the other. It leaves every pretrained weight
frozen and learns, beside chosen linear layers, a low-rank update ``B @ A`` (rank r, scaled by
alpha / r). With a freeze depth N > 0 the adapters go only into layers N and above, so the frozen
bottom still runs once per row through the prefix cache.

Default targets, per backbone family: every linear layer inside each transformer block
(BERT / RoBERTa / ELECTRA / MiniLM: query, key, value, attention.output.dense, intermediate.dense,
output.dense; DistilBERT: q_lin, k_lin, v_lin, out_lin, lin1, lin2; DeBERTa-v2/v3: query_proj,
key_proj, value_proj and the dense layers). Attention-only LoRA (query, value) learns less on
short financial texts; all-linear adapters still train well under 5% of the weights.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ..errors import ConfigError
from .backbones import find_layers

logger = logging.getLogger(__name__)

MARKER = "lora_"  # every adapter tensor's name contains it


def _layers_path(backbone: nn.Module) -> str:
    layers = find_layers(backbone)
    for name, module in backbone.named_modules():
        if module is layers:
            return name
    raise ConfigError(
        "The encoder layers of this backbone are not reachable by name: LoRA cannot target them."
    )


def target_names(
    backbone: nn.Module, targets: tuple[str, ...] | None, from_layer: int = 0
) -> list[str]:
    """Full names of the linear layers that get adapters: in blocks ``from_layer`` and above, those
    whose own name (``query``) or path inside the block (``attention.output.dense``) is in
    ``targets`` (all linear layers of the block when ``targets`` is None)."""
    path = _layers_path(backbone)
    names, seen = [], set()
    for index, layer in enumerate(find_layers(backbone)):
        for name, module in layer.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            seen.add(name.split(".")[-1])
            if index >= from_layer and (
                targets is None or name in targets or name.split(".")[-1] in targets
            ):
                names.append(f"{path}.{index}.{name}")
    if not names:
        if from_layer >= len(find_layers(backbone)):
            raise ConfigError(
                f"LoRA with freeze depth {from_layer} leaves no layer for adapters: lower the "
                "freeze depth."
            )
        raise ConfigError(
            f"LoRA targets {', '.join(targets or ())} match no linear layer of this backbone: "
            f"choose among {', '.join(sorted(seen))}."
        )
    return names


def adapter_parameter_count(
    backbone: nn.Module, *, rank: int, targets: tuple[str, ...] | None, from_layer: int = 0
) -> int:
    """Parameters LoRA would add (rank x (in + out) per targeted linear layer), without changing the
    model."""
    total = 0
    for name in target_names(backbone, targets, from_layer):
        linear = backbone.get_submodule(name)
        total += rank * (linear.in_features + linear.out_features)
    return total


def add_lora(
    backbone: nn.Module,
    *,
    rank: int,
    alpha: float,
    dropout: float,
    targets: tuple[str, ...] | None,
    from_layer: int = 0,
) -> int:
    """Inject adapters in place and freeze every pretrained weight; return the adapter parameter
    count."""
    from peft import LoraConfig, inject_adapter_in_model

    names = target_names(backbone, targets, from_layer)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none"
    )
    inject_adapter_in_model(config, backbone)
    count = 0
    for name, parameter in backbone.named_parameters():
        parameter.requires_grad = MARKER in name
        count += parameter.numel() if parameter.requires_grad else 0
    logger.info(
        "LoRA r=%d alpha=%g on %d linear layers: %d adapter parameters",
        rank,
        alpha,
        len(names),
        count,
    )
    return count


def is_adapter(name: str) -> bool:
    """True for the name of a LoRA adapter parameter."""
    return MARKER in name


def has_adapters(model: nn.Module) -> bool:
    """True when ``model`` carries LoRA adapters."""
    return any(is_adapter(name) for name, _ in model.named_parameters())


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each adapter folded into its linear layer (W + B A * alpha / r):
    plain torch modules, the same outputs, nothing of peft left in the forward pass."""
    from peft.tuners.lora import LoraLayer

    plain = copy.deepcopy(model)
    replacements = [
        (name, module) for name, module in plain.named_modules() if isinstance(module, LoraLayer)
    ]
    for name, module in replacements:
        with torch.no_grad():
            module.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(
            plain.get_submodule(parent_name) if parent_name else plain,
            child,
            module.get_base_layer(),
        )
    return plain


def weights_checksum(backbone: nn.Module) -> float:
    """A cheap fingerprint of the pretrained (non-adapter) weights: a LoRA run saves only adapters,
    so loading it must find the very same base weights."""
    with torch.no_grad():
        total = 0.0
        for name, parameter in backbone.named_parameters():
            if not is_adapter(name):
                total += float(parameter.detach().double().abs().sum())
    return total
