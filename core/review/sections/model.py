"""The model report's sections on the model: how it was built, and what reproducing it needs."""

from __future__ import annotations

import json
from datetime import datetime

from ...stats.metrics import format_number, metric_label
from .. import facts as f
from ..page import Html, code, esc, p, share, table
from ..page import facts as pairs_table


def model_section(run: f.RunFacts) -> list:
    """Backbone, adaptation, head, loss, optimiser and the training history."""
    metrics, model, train = run.metrics, run.config.model, run.config.train
    layers = f.backbone_layers(run.tuner)
    trainable, total = metrics.get("trainable_parameters"), metrics.get("total_parameters")
    lora = f.lora_settings(run)
    depth = model.freeze_depth
    if depth == "auto":  # a run that stopped before its model was built
        freeze = "auto (not resolved: the model was never built)"
    elif depth:
        of = f" of {layers}" if layers else ""
        freeze = f"embeddings + bottom {depth}{of} encoder layers frozen" + (
            ", without adapters" if lora else ""
        )
    elif lora:
        freeze = "0: adapters in every layer"
    else:
        freeze = "nothing frozen: the whole backbone trains"
    pairs: list[tuple[str, object]] = [
        ("Backbone", model.backbone),
        ("Encoder layers", layers or "not known"),
    ]
    if lora:
        pairs += _lora_rows(lora, depth)
    head_lr = train.head_lr if train.head_lr == "auto" else f"{train.head_lr:g}"  # auto: unbuilt
    pairs += [
        ("Freeze depth", freeze),
        (
            "Trainable / total parameters",
            f"{format_number(trainable)} / {format_number(total)}"
            + (f" ({share(trainable, total)} trainable)" if trainable and total else ""),
        ),
        (
            "Max length (tokens)",
            f"{format_number(metrics.get('max_length'))}"
            + (
                " (set)"
                if model.max_length
                else " (automatic: 95th percentile of training lengths, capped)"
            ),
        ),
        ("Numbers in the text", model.numeric_in_text),
        (
            "Head",
            f"numeric encoder width {model.d_numeric}, hidden width {model.d_hidden}, dropout "
            f"{model.dropout:g}",
        ),
        ("Loss", train.loss + (f" (gamma {train.focal_gamma:g})" if train.loss == "focal" else "")),
        ("Class weights", train.class_weights),
        (
            "Optimiser",
            f"AdamW, backbone lr {train.lr:g}, head lr {head_lr}, weight decay "
            f"{train.weight_decay:g}, warm-up {train.warmup_ratio:g}, gradient clip "
            f"{train.max_grad_norm:g}",
        ),
        ("Batch size", train.batch_size),
        (
            "Epochs run / allowed",
            f"{format_number(metrics.get('epochs_run'))} / {train.epochs}"
            + (f", at most {train.max_steps} steps" if train.max_steps else "")
            + f", patience {train.patience}",
        ),
    ]
    parts: list = [pairs_table(pairs)]
    epochs = f.epochs(run)
    if epochs:
        from ...stats.metrics import headline_metric

        metric = headline_metric(run.task)
        best = f.best_epoch(run)
        parts.append(Html("<h3>Training history</h3>"))
        header = ["epoch", "steps", "train loss", f"validation {metric_label(metric)}", "kept"]
        parts.append(
            table(
                header,
                [
                    [
                        e["epoch"],
                        e.get("step"),
                        e.get("train_loss"),
                        e.get("val", {}).get(metric),
                        "best: these weights" if e["epoch"] == best else "",
                    ]
                    for e in epochs
                ],
            )
        )
    return parts


def _lora_rows(lora: dict, freeze_depth: int) -> list[tuple[str, object]]:
    rank, alpha = lora["lora_rank"], lora.get("lora_alpha")
    where = (
        f"in encoder layers {freeze_depth} and above" if freeze_depth else "in every encoder layer"
    )
    targets = lora.get("lora_targets")
    if not targets:
        targets = "every linear layer of each block (default)"
    elif isinstance(targets, (list, tuple)):
        targets = ", ".join(map(str, targets))
    return [
        (
            "Adaptation",
            "LoRA: every pretrained weight frozen; low-rank updates learned beside the "
            f"target layers {where}",
        ),
        ("LoRA rank", rank),
        ("LoRA alpha", f"{alpha:g}" if alpha is not None else f"{2 * rank:g} (default: 2 × rank)"),
        ("LoRA dropout", lora.get("lora_dropout")),
        ("LoRA target layers", str(targets)),
    ]


def reproducibility_section(run: f.RunFacts) -> list:
    """Seed, device, times, weights checksum, the environment writing the report, config.json."""
    status, train = run.status, run.config.train
    weights = run.path / "model" / "model.safetensors"
    pairs: list[tuple[str, object]] = [
        ("Seed (split, head initialisation, shuffling)", train.seed),
        ("Device / precision asked for", f"{train.device} / {train.precision}"),
        (
            "Processes",
            run.metrics.get("processes") or status.get("processes") or train.num_processes,
        ),
        (
            "torch.compile / frozen-prefix cache",
            f"{format_number(train.compile)} / {format_number(train.cache_frozen_prefix)}",
        ),
        ("Created", status.get("created") or "not recorded"),
        ("Started", status.get("started") or "not recorded"),
        ("Finished", status.get("finished") or "not recorded"),
        ("Run time (start to finish)", _duration(status.get("started"), status.get("finished"))),
    ]
    if run.metrics.get("training_seconds") is not None:
        pairs.append(("Training loop time", f"{run.metrics['training_seconds']:.0f} s"))
    if run.metrics.get("peak_memory_mb") is not None:
        pairs.append(("Peak memory", f"{run.metrics['peak_memory_mb']:,.0f} MiB"))
    pairs.append(
        (
            "model.safetensors SHA-256",
            code(f.sha256_file(weights)) if weights.is_file() else "no weights file",
        )
    )
    if f.lora_settings(run):
        pairs.append(
            (
                "Pretrained weights",
                "not in model.safetensors, which holds the adapters and the head: they are "
                f"loaded from {run.config.model.backbone} and checked against the checksum "
                "saved at training",
            )
        )
    return [
        pairs_table(pairs),
        Html("<h3>Software and machine</h3>"),
        p(
            "The run folder does not record the environment it was trained in: these are the "
            "versions and machine that wrote this report. Write the report where the model was "
            "trained to document that environment.",
            "note",
        ),
        pairs_table(f.environment(run)),
        Html(
            "<details><summary>Full run configuration (config.json)</summary>"
            f"<pre>{esc(json.dumps(run.raw_config, indent=2))}</pre></details>"
        ),
    ]


def _duration(start: str | None, end: str | None) -> str:
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return "not recorded"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
