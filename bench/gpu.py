"""GPU throughput and model FLOP utilisation (MFU) of FinTune's training step on a BERT-base
config, against Hugging Face's ``BertForSequenceClassification`` in the same precision.

    python -m bench.gpu [--batch-size 64] [--seq-len 128] [--steps 30] [--precision bf16]
                        [--compile] [--peak-tflops N]

Random weights (the speed of a step does not depend on them). Both sides get the same settings,
so the ratio measures the model and step, not the precision: bf16 autocast (``--precision fp32``
for fp32 on both), TF32 matmuls, ``torch.optim.AdamW`` fused on CUDA, the same batch, timed in
the same run in alternating rounds. Ours is the FusionModel and loss of real training; the
reference is ``BertForSequenceClassification`` with its own loss.

MFU = achieved model FLOP/s over the GPU's dense bf16 peak, with training FLOPs per step =
6 x non-embedding parameters x tokens + 12 x layers x d_model x seq_len x tokens (attention scores
and values, forward and backward). Embedding tables are lookups, not matmuls, so their parameters
are left out (counting them adds 27% on BERT-base at 64 x 128). Runs on CPU too (for a smoke test:
the MFU figure is then against --peak-tflops, which must be given).
"""

from __future__ import annotations

import argparse
import contextlib
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


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters that take part in matmuls: all but those of embedding tables (counted once)."""
    embedding = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if id(parameter) not in embedding and id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


def training_flops(
    n_params: int, *, n_layers: int, d_model: int, seq_len: int, tokens: int
) -> float:
    """Model FLOPs of one training step: 6 N T for the weights (forward 2, backward 4) plus the
    attention scores and values, 12 L d S T (PaLM's appendix B)."""
    return 6.0 * n_params * tokens + 12.0 * n_layers * d_model * seq_len * tokens


def autocast(device: torch.device, precision: str):
    """bf16 autocast, or nothing for fp32: the same for both sides."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW as core.training.loop makes it: fused on CUDA. The same for both sides."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")


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


def ours_step(device: torch.device, batch: dict, compile_model: bool, precision: str = "bf16"):
    """FinTune's training step: FusionModel, autocast, fused AdamW (on CUDA)."""
    model, _, _ = build_model(device)
    step_model = torch.compile(model) if compile_model else model
    optimizer = make_optimizer(model, device)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with autocast(device, precision):
            loss = loss_fn(
                step_model(batch["ids"], batch["mask"], batch["numeric"]).float(), batch["labels"]
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, model


def reference_step(device: torch.device, batch: dict, precision: str = "bf16"):
    """BertForSequenceClassification with its own loss, in the same precision and with the same
    fused AdamW as ours."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(_bert_config()).to(device)
    optimizer = make_optimizer(model, device)

    def step() -> None:
        with autocast(device, precision):
            loss = model(
                input_ids=batch["ids"], attention_mask=batch["mask"], labels=batch["labels"]
            ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, model


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


def main(argv: list[str] | None = None) -> None:
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
    parser.add_argument(
        "--precision",
        choices=["bf16", "fp32"],
        default="bf16",
        help="both sides: bf16 autocast (default) or fp32",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile our model first")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="override the device's bf16 peak"
    )
    args = parser.parse_args(argv)

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
    fused = "fused AdamW" if device.type == "cuda" else "AdamW (fused only on CUDA)"
    both = f"{args.precision} {'autocast' if args.precision == 'bf16' else 'weights and maths'}"
    print(
        f"batch {args.batch_size} x seq {args.seq_len}, {args.steps} timed steps per round, "
        f"{args.rounds} rounds (ours and the reference alternate; medians over all timed steps)"
    )
    tf32 = ", TF32 matmuls" if device.type == "cuda" else ""
    print(f"both sides: {both}, {fused}{tf32}")
    print(
        "MFU: model FLOPs per step = 6 x non-embedding parameters x tokens + 12 x layers x "
        "d_model x seq_len x tokens (attention), over the dense bf16 peak"
    )

    # One model of each kind, alternated round by round so both see the same machine state.
    steps = {
        "FinTune (FusionModel" + (", compiled)" if args.compile else ")"): ours_step(
            device, batch, args.compile, args.precision
        ),
        "reference (HF BertForSequenceClassification)": reference_step(
            device, batch, args.precision
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, (step, _) in steps.items():
            times[name] += time_steps(step, device, args.steps, args.warmup)
    medians = {}
    for name, (_, model) in steps.items():
        seconds = statistics.median(times[name])
        medians[name] = seconds
        n_params = non_embedding_parameters(model)
        flops = training_flops(
            n_params, n_layers=n_layers, d_model=d_model, seq_len=args.seq_len, tokens=tokens
        )
        achieved = flops / seconds / 1e12
        mfu = f"   MFU {achieved / peak:.1%} of {peak:.0f}" if peak else ""
        total = sum(p.numel() for p in model.parameters())
        print(
            f"{name}: {n_params / 1e6:.1f}M non-embedding parameters ({total / 1e6:.1f}M in all), "
            f"median step {seconds * 1e3:.1f} ms, "
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
