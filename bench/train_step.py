"""One training step of each side, on the same batch: where a freeze-0 step's time goes.

    python -m bench.train_step [--precision bf16|fp32] [--cpu-isa native|avx2] [--steps 15]
                               [--rounds 2] [--backbone PATH]

The Trainer's model (``BertForSequenceClassification``: pooler and classifier) and ours
(``FusionModel``: the backbone, mean pooling and its fusion head) take the same 32 sentiment rows
padded to 64 tokens, cross-entropy on 3 classes, every weight trained, fused AdamW and gradient
clipping at 1.0, as both run in ``bench.train_speed`` at freeze 0. Prints the median milliseconds
of the forward pass, the backward pass and clipping with the optimiser step, after 3 warm-up
steps, for ``--rounds`` alternating rounds (the machine drifts; alternation shows how much).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from . import cpu_isa

ROWS, MAX_LENGTH, N_CLASSES, WARM_UP = 32, 64, 3, 3


def time_steps(model, forward, labels, *, steps: int, dtype) -> dict[str, float]:
    """Median ms of each part of ``steps`` training steps of ``model`` (after warm-up)."""
    import torch

    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=5e-5, fused=True)
    parts: dict[str, list[float]] = {"forward": [], "backward": [], "clip+optimiser": []}
    for step in range(WARM_UP + steps):
        started = time.perf_counter()
        autocast = (
            torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
        )
        with autocast:
            logits = forward()
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        forwarded = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        backwarded = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimiser.step()
        ended = time.perf_counter()
        if step >= WARM_UP:
            parts["forward"].append(forwarded - started)
            parts["backward"].append(backwarded - forwarded)
            parts["clip+optimiser"].append(ended - backwarded)
    return {name: 1000 * statistics.median(values) for name, values in parts.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--cpu-isa", choices=cpu_isa.CHOICES, default="native")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backbone", default=None, help="a local backbone (default: MiniLM)")
    args = parser.parse_args(argv)
    cpu_isa.restrict(args.cpu_isa, "bench.train_step", argv)

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.model.backbones import bundled_minilm_path, load_backbone
    from core.model.fusion import FusionModel

    from .train_speed import sample_table

    path = args.backbone or str(bundled_minilm_path())
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = sample_table(2000)["text"].tolist()[:ROWS]
    batch = tokenizer(
        texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = torch.arange(ROWS) % N_CLASSES
    torch.manual_seed(0)
    reference = AutoModelForSequenceClassification.from_pretrained(path, num_labels=N_CLASSES)
    backbone, _ = load_backbone(path)
    ours = FusionModel(backbone=backbone, d_numeric_in=0, n_outputs=N_CLASSES)
    no_numbers = torch.zeros(ROWS, 0)
    sides = {
        "Trainer's BertForSequenceClassification": (
            reference,
            lambda: reference(input_ids=ids, attention_mask=mask).logits,
        ),
        "FinTune FusionModel": (ours, lambda: ours(ids, mask, no_numbers, None)),
    }
    print(
        f"{ROWS} rows x {MAX_LENGTH} tokens, {args.precision}, fused AdamW, clipping; "
        f"{cpu_isa.describe(args.cpu_isa)}; {torch.get_num_threads()} threads; medians of "
        f"{args.steps} steps after {WARM_UP} warm-up",
        flush=True,
    )
    for round_ in range(1, args.rounds + 1):
        for name, (model, forward) in sides.items():
            parts = time_steps(model, forward, labels, steps=args.steps, dtype=dtype)
            shown = "  ".join(f"{part} {ms:6.1f} ms" for part, ms in parts.items())
            print(f"round {round_}  {name:40s} {shown}  step {sum(parts.values()):6.1f} ms")


if __name__ == "__main__":
    main()
