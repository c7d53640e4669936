"""GPU throughput and model FLOP utilisation (MFU) of FinTune's training step on a BERT-base
config.

    python -m bench.gpu [--batch-size 64] [--seq-len 128] [--steps 30] [--compile]

Random weights (the speed of a step does not depend on them), bf16 autocast, TF32 matmuls, fused
AdamW, the same FusionModel and loss as real training. The reference, timed in the same run on the
same batch, is what a plain PyTorch loop over Hugging Face's ``BertForSequenceClassification``
does by default: fp32 weights and maths, ``torch.optim.AdamW`` without fusing. MFU = achieved
model FLOP/s over the GPU's dense bf16 peak, with training FLOPs = 6 * parameters * tokens + 12 *
layers * d_model * seq_len * tokens (attention scores and values, forward and backward). Runs on
CPU too (for a smoke test: the MFU figure is then against --peak-tflops, which must be given).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

# Dense bf16 peaks (TFLOP/s) from NVIDIA's data sheets, by a substring of the device name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def build_model(device: torch.device) -> tuple[nn.Module, int, int]:
    from transformers import BertModel

    from core.model.fusion import FusionModel

    config = _bert_config()
    model = FusionModel(
        backbone=BertModel(config, add_pooling_layer=False), d_numeric_in=8, n_outputs=2
    )
    return model.to(device), config.num_hidden_layers, config.hidden_size


def _bert_config():
    from transformers import BertConfig

    return BertConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        vocab_size=30522,
        max_position_embeddings=512,
    )


def ours_step(device: torch.device, batch: dict, compile_model: bool):
    """FinTune's training step: FusionModel, bf16 autocast, fused AdamW."""
    model, _, _ = build_model(device)
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = loss_fn(
                step_model(batch["ids"], batch["mask"], batch["numeric"]).float(), batch["labels"]
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, sum(p.numel() for p in model.parameters())


def reference_step(device: torch.device, batch: dict):
    """A plain loop's defaults: BertForSequenceClassification in fp32 with unfused AdamW."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(_bert_config()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = model(
            input_ids=batch["ids"], attention_mask=batch["mask"], labels=batch["labels"]
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, sum(p.numel() for p in model.parameters())


def time_steps(step, device: torch.device, n_steps: int, warmup: int) -> list[float]:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(n_steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternate ours and the reference this many times"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile our model first")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="override the device's bf16 peak"
    )
    args = parser.parse_args()

    from core.training.devices import device_label, resolve_device

    device = resolve_device("auto")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    batch = {
        "ids": torch.randint(1000, 30000, (args.batch_size, args.seq_len), device=device),
        "numeric": torch.randn(args.batch_size, 8, device=device),
        "labels": torch.randint(0, 2, (args.batch_size,), device=device),
    }
    batch["mask"] = torch.ones_like(batch["ids"])
    config = _bert_config()
    n_layers, d_model = config.num_hidden_layers, config.hidden_size
    tokens = args.batch_size * args.seq_len
    peak = peak_tflops(device, args.peak_tflops)
    print(f"device: {device_label(device)}")
    print(
        f"batch {args.batch_size} x seq {args.seq_len}, {args.steps} timed steps per round, "
        f"{args.rounds} rounds (ours and the reference alternate; medians over all timed steps)"
    )

    # One model of each kind, alternated round by round so both see the same machine state.
    steps = {
        "FinTune (bf16 autocast, fused AdamW" + (", compiled)" if args.compile else ")"): ours_step(
            device, batch, args.compile
        ),
        "reference (HF BertForSequenceClassification, fp32)": reference_step(device, batch),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, (step, _) in steps.items():
            times[name] += time_steps(step, device, args.steps, args.warmup)
    medians = {}
    for name, (_, n_params) in steps.items():
        seconds = statistics.median(times[name])
        medians[name] = seconds
        flops = 6 * n_params * tokens + 12 * n_layers * d_model * args.seq_len * tokens
        achieved = flops / seconds / 1e12
        mfu = f"   MFU {achieved / peak:.1%} of {peak:.0f}" if peak else ""
        print(
            f"{name}: {n_params / 1e6:.1f}M parameters, median step {seconds * 1e3:.1f} ms, "
            f"samples/s {args.batch_size / seconds:,.0f}, tokens/s {tokens / seconds:,.0f}, "
            f"model TFLOP/s {achieved:.1f}{mfu}"
        )
    ours, reference = medians.values()
    print(f"speed-up ours / reference: {reference / ours:.2f}x")
    if not peak:
        print("MFU: unknown peak for this device (pass --peak-tflops)")
    if device.type == "cuda":
        print(
            f"peak GPU memory (both models) {torch.cuda.max_memory_allocated(device) / 2**30:.1f} "
            "GiB"
        )


if __name__ == "__main__":
    main()
