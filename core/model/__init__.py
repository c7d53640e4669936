"""The network: pretrained backbones, LoRA adapters, the fusion head, the frozen-prefix cache."""
