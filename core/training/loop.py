"""The training loop: optimizer -> scheduler -> per epoch: train, evaluate, report, keep the best.

It knows nothing of threads, processes or UI: progress goes out through ``on_progress(event)``
and stopping comes in through ``should_stop()``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError, TrainingError
from ..stats.metrics import selection_score
from .devices import _autocast, autocast_dtype
from .events import EpochEvent, PhaseEvent, RankProgress, StepEvent

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[dict], None]  # each event of core.training.events, as its to_dict()


class TrainingCancelled(Exception):
    """Raised inside the loop when ``should_stop()`` turns true; not an error."""


@dataclass
class EncodedRows:
    """Tokenised rows: variable-length ids (padded per batch), numeric inputs and targets."""

    input_ids: list[list[int]]
    numeric: np.ndarray  # (N, d_numeric_in)
    targets: np.ndarray | None  # (N,) int64 class ids or float32 scaled values
    cells: np.ndarray | None = None  # (N, n_cell_columns) int64 cell vocabulary ids

    def __len__(self) -> int:
        return len(self.input_ids)


# --------------------------------------------------------------------------- batching


def batch_order(
    rows: EncodedRows,
    batch_size: int,
    *,
    shuffle: bool,
    generator: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """Row indices of each batch; training batches are length-bucketed, evaluation ones sorted."""
    lengths = _lengths(rows)
    if shuffle:
        order = generator.permutation(len(rows))
        # Sort within windows of 50 batches: similar lengths share a batch, order stays random.
        window = batch_size * 50
        chunks = [order[i : i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return [batches[i] for i in generator.permutation(len(batches))]
    order = np.argsort(lengths, kind="stable")  # evaluation: least padding
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _lengths(rows: EncodedRows) -> np.ndarray:
    return np.fromiter((len(ids) for ids in rows.input_ids), dtype=np.int64, count=len(rows))


def collate(rows: EncodedRows, index: np.ndarray, *, pad_id: int) -> dict[str, torch.Tensor]:
    """The rows ``index`` as tensors, padded to their own longest row."""
    width = max(1, max(len(rows.input_ids[i]) for i in index))  # rows without text: one pad
    ids = np.full((len(index), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(index), width), dtype=np.int64)
    for row, i in enumerate(index):
        sequence = rows.input_ids[i]
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    batch = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "numeric": torch.from_numpy(rows.numeric[index]),
    }
    if rows.cells is not None:
        batch["cells"] = torch.from_numpy(rows.cells[index])
    if rows.targets is not None:
        batch["targets"] = torch.from_numpy(rows.targets[index])
    return batch


def iterate_batches(
    rows: EncodedRows,
    batch_size: int,
    *,
    pad_id: int,
    shuffle: bool,
    generator: np.random.Generator | None = None,
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Batches padded to their own longest row; training batches are length-bucketed."""
    for index in batch_order(rows, batch_size, shuffle=shuffle, generator=generator):
        yield index, collate(rows, index, pad_id=pad_id)


def subset(rows: EncodedRows, index: np.ndarray) -> EncodedRows:
    """The rows at ``index``."""
    return EncodedRows(
        input_ids=[rows.input_ids[i] for i in index],
        numeric=rows.numeric[index],
        targets=None if rows.targets is None else rows.targets[index],
        cells=None if rows.cells is None else rows.cells[index],
    )


def model_inputs(batch: dict[str, torch.Tensor]) -> tuple:
    """The model's positional inputs from a collated batch."""
    return batch["input_ids"], batch["attention_mask"], batch["numeric"], batch.get("cells")


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cuda":
        # Page-locked host memory lets the copy run asynchronously with the previous step's kernels.
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_outputs(
    model: nn.Module,
    rows: EncodedRows,
    *,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
    prefix=None,
    store=None,
) -> np.ndarray:
    """Raw model outputs (logits or scaled values), in the rows' original order."""
    was_training = model.training
    model.eval()
    outputs: np.ndarray | None = None
    try:
        for index, batch in iterate_batches(rows, batch_size, pad_id=pad_id, shuffle=False):
            batch = _to_device(batch, device)
            with _autocast(device, dtype), _replaying(prefix, store, index, batch, device):
                out = model(*model_inputs(batch))
            out = out.float().cpu().numpy()
            if outputs is None:
                outputs = np.zeros((len(rows), out.shape[1]), dtype=np.float32)
            outputs[index] = out
    finally:
        model.train(was_training)
    return outputs if outputs is not None else np.zeros((0, 1), dtype=np.float32)


# --------------------------------------------------------------------------- frozen prefix


def _make_prefix(model: nn.Module, depth: int, config: TrainConfig):
    from ..model.prefix_cache import FrozenPrefix, supports_prefix_cache

    if (
        depth <= 0
        or not config.cache_frozen_prefix
        or not getattr(model, "reads_row_text", True)  # cells alone: a few short strings a step
        # The cached prefix stands in for the backbone's bottom layers on the rows' texts, so
        # the cells could not be encoded while it is in place.
        or getattr(model, "n_cell_columns", 0)
        or not supports_prefix_cache(model.backbone)
    ):
        return None
    return FrozenPrefix(model.backbone, depth)


def _make_stores(prefix, model: nn.Module, *splits: EncodedRows) -> dict:
    from ..model.prefix_cache import PrefixStore

    if prefix is None:
        return {}
    d_model = model.backbone.config.hidden_size
    return {
        name: PrefixStore(
            np.fromiter(map(len, rows.input_ids), dtype=np.int64, count=len(rows)), d_model
        )
        for name, rows in zip(("train", "val"), splits, strict=True)
    }


@contextlib.contextmanager
def _replaying(prefix, store, index: np.ndarray, batch: dict, device: torch.device):
    """Run the model from the cached frozen prefix of these rows (computing it the first time)."""
    if prefix is None or store is None:
        yield
        return
    if store.filled[index].all():
        states = store.get(index, batch["input_ids"].shape[1]).to(device, non_blocking=True)
    else:
        states = prefix.compute(batch["input_ids"], batch["attention_mask"])
        store.put(index, states)
    with prefix.top_only(states):
        yield


# --------------------------------------------------------------------------- the loop


def _has_unused_parameters(
    model: nn.Module, rows: EncodedRows, pad_id: int, device, dtype, prefix
) -> bool:
    """True if a forward/backward pass on two rows leaves a trainable weight without a gradient."""
    if prefix is not None:
        return (
            False  # the cached prefix holds only frozen layers; every trainable layer runs above it
        )
    batch = _to_device(collate(rows, np.arange(min(2, len(rows))), pad_id=pad_id), device)
    with _autocast(device, dtype):
        out = model(*model_inputs(batch))
    out.float().sum().backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    if unused:
        logger.info(
            "%d trainable tensors get no gradient (e.g. %s): DDP will look for them each step",
            len(unused),
            unused[0],
        )
    return bool(unused)


def _lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = max(total_steps - warmup_steps, 1)
        return max(0.0, (total_steps - step) / remaining)

    return factor


class FocalLoss(nn.Module):
    """Multiclass focal loss (Lin et al., 2017): cross-entropy scaled by (1 − p_true)^gamma, so
    easy, confidently right rows (most legitimate transactions) weigh little and rare hard ones
    drive learning. ``weight`` plays the role of focal loss's alpha (per-class weights)."""

    def __init__(self, *, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = (
            torch.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
        )  # (B,)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.weight is not None:
            w = self.weight[target]
            return (w * loss).sum() / w.sum()
        return loss.mean()


def _loss_fn(task: str, class_weights: torch.Tensor | None, config: TrainConfig) -> nn.Module:
    if task == "regression":
        return nn.MSELoss()
    if config.loss == "focal":
        return FocalLoss(gamma=config.focal_gamma, weight=class_weights)
    return nn.CrossEntropyLoss(weight=class_weights)


def train(
    model: nn.Module,
    train_rows: EncodedRows,
    val_rows: EncodedRows,
    *,
    config: TrainConfig,
    task: str,
    pad_id: int,
    score_outputs: Callable[[np.ndarray], dict[str, float]],
    class_weights: np.ndarray | None = None,
    frozen_depth: int = 0,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_best: Callable[[dict], None] | None = None,
    cluster=None,
    best_state_out: dict | None = None,
    best_val_out: dict | None = None,
) -> list[dict]:
    """Fine-tune ``model`` in place and restore its best validation checkpoint; return epoch events.

    With ``frozen_depth`` > 0 (and ``config.cache_frozen_prefix``) the frozen embeddings and
    bottom layers run once per row; later epochs replay their output and run only the top layers.

    ``cluster`` (a :class:`core.distributed.Cluster`) is the launched process group when several
    processes train together; each then takes its share of every global batch and of the
    validation rows, and only the main one reports progress and takes checkpoints. Under FSDP the
    model's weights end sharded: the best weights then go to ``best_state_out`` for the caller to
    load into a plain model, and no checkpoints are taken.

    ``best_val_out["val"]`` receives the best epoch's validation outputs when they are what the
    restored model computes (no cached prefix, no compiled graph, no shards): the run's report
    reads them back instead of scoring the validation rows again.
    """
    from .distributed import current_cluster

    cluster = cluster or current_cluster(config.device)
    if not cluster.is_main or cluster.is_fsdp:
        on_best = None  # a sharded model cannot be saved mid-run by one process
    if not cluster.is_main:
        on_progress = None
    on_progress = on_progress or (lambda event: None)
    should_stop = should_stop or (lambda: False)
    world = cluster.world
    if config.batch_size < world or len(val_rows) < world:
        raise ConfigError(
            f"{world} processes need at least {world} rows per batch and {world} validation rows "
            f"(batch size {config.batch_size}, {len(val_rows)} validation rows): raise the batch "
            "size or use fewer processes."
        )
    device = cluster.device
    dtype = autocast_dtype(device, config.precision)
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(
        config.seed
    )  # the same on every rank: all agree on the global batches
    model.to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if "auto" in (config.epochs, config.patience, config.head_lr):  # FineTuner resolves them
        raise ValueError("train() needs a resolved TrainConfig: see TrainConfig.resolved.")
    # -- optimizer and schedule (the schedule drives the raw optimizer's groups, wrapped or not)
    groups = model.make_parameter_groups(
        lr=config.lr, head_lr=config.head_lr, weight_decay=config.weight_decay
    )
    # Fused AdamW on GPUs and CPUs alike: on 2 CPU cores MiniLM's update takes 14 ms fused
    # against 68-79 ms with the default foreach kernels (a fifth of a step at batch 32).
    optimizer = torch.optim.AdamW(
        groups, fused=device.type in ("cuda", "cpu") and not cluster.is_fsdp
    )
    # The loop skips a last batch too small to give every process a row (below).
    steps_per_epoch = len(train_rows) // config.batch_size + (
        len(train_rows) % config.batch_size >= world
    )
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(max(1, int(config.warmup_ratio * total_steps)), total_steps)
    )
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    weights = (
        torch.tensor(class_weights, dtype=torch.float32, device=device)
        if class_weights is not None
        else None
    )
    loss_fn = _loss_fn(task, weights, config)
    # FSDP re-wraps the layers that the prefix cache would swap: it trains without the cache.
    prefix = None if cluster.is_fsdp else _make_prefix(model, frozen_depth, config)
    # Each rank scores its share of the validation rows; under FSDP every forward pass is a
    # collective, so all ranks score all rows (the same number of passes each).
    val_shards = [np.arange(len(val_rows))[rank::world] for rank in range(world)]
    if cluster.is_fsdp:
        val_shards = [np.arange(len(val_rows))]
    my_val = val_rows if len(val_shards) == 1 else subset(val_rows, val_shards[cluster.rank])
    stores = _make_stores(prefix, model, train_rows, my_val)
    unused = (
        cluster.distributed
        and not cluster.is_fsdp
        and _has_unused_parameters(model, train_rows, pad_id, device, dtype, prefix)
    )
    wrapped, optimizer = cluster.wrap(model, optimizer, unused_parameters=unused)
    trainable = [
        p for p in wrapped.parameters() if p.requires_grad
    ]  # FSDP replaces the parameter objects
    # The prefix cache swaps modules between calls, which a compiled graph cannot follow; it is the
    # larger saving, so compilation applies only where no prefix is cached.
    forward = torch.compile(wrapped, dynamic=True) if config.compile and prefix is None else wrapped

    if cluster.distributed:
        on_progress(PhaseEvent(phase=f"Training on {cluster.describe()}").to_dict())
    history: list[dict] = []
    best_score, best_state, best_val, stale_epochs = -math.inf, None, None, 0
    # The validation pass ran the very model the report will (fp16 cached states would not be).
    val_is_exact = prefix is None and forward is wrapped and not cluster.is_fsdp
    step, started = 0, time.perf_counter()
    samples_seen = 0.0
    rank_rows = np.zeros(world)
    model.train()
    try:
        for epoch in range(1, config.epochs + 1):
            # -- train
            epoch_loss, epoch_rows = 0.0, 0.0
            for global_index in batch_order(
                train_rows, config.batch_size, shuffle=True, generator=generator
            ):
                if len(global_index) < world:
                    continue  # a last batch too small to give every process a row
                index = cluster.shard(global_index)
                batch = _to_device(collate(train_rows, index, pad_id=pad_id), device)
                try:
                    with (
                        _autocast(device, dtype),
                        _replaying(prefix, stores.get("train"), index, batch, device),
                    ):
                        out = forward(*model_inputs(batch))
                    targets = batch["targets"]
                    loss = (
                        loss_fn(out.float().squeeze(-1), targets)
                        if task == "regression"
                        else loss_fn(out.float(), targets)
                    )
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"The loss became {loss.item()} at step {step + 1} (epoch {epoch}): "
                            f"lower the learning rate (e.g. to {config.lr / 4:.0e}) or check "
                            "numeric columns for extreme values.",
                            kind="non_finite_loss",
                        )
                    step_lr = scheduler.get_last_lr()[0]  # the rate this step is taken with
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)
                        cluster.clip_grad_norm_(trainable, config.max_grad_norm)
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        cluster.clip_grad_norm_(trainable, config.max_grad_norm)
                        optimizer.step()
                    scheduler.step()
                except torch.OutOfMemoryError as exc:
                    raise _oom_error(config, device) from exc
                except RuntimeError as exc:
                    if "out of memory" in str(exc).lower():
                        raise _oom_error(config, device) from exc
                    raise
                step += 1
                # Every rank's loss, rows and stop request: progress shows them all, and all ranks
                # stop at the same step (a rank leaving alone would leave the others waiting).
                totals = cluster.step_totals(loss * len(targets), len(targets), should_stop())
                if totals[:, 2].any():
                    raise TrainingCancelled()
                n = float(totals[:, 1].sum())
                rank_rows += totals[:, 1]
                samples_seen += n
                epoch_loss += float(totals[:, 0].sum())
                epoch_rows += n
                elapsed = time.perf_counter() - started
                ranks = (
                    tuple(
                        RankProgress(
                            rank=r,
                            loss=float(totals[r, 0] / max(totals[r, 1], 1.0)),
                            samples_per_s=float(rank_rows[r] / elapsed),
                        )
                        for r in range(world)
                    )
                    if world > 1
                    else None
                )
                on_progress(
                    StepEvent(
                        step=step,
                        total_steps=total_steps,
                        epoch=epoch,
                        loss=float(totals[:, 0].sum()) / max(n, 1.0),
                        lr=step_lr,
                        samples_per_s=samples_seen / elapsed,
                        eta_s=elapsed / step * (total_steps - step),
                        elapsed_s=elapsed,
                        processes=world if world > 1 else None,
                        ranks=ranks,
                    ).to_dict()
                )
                if step >= total_steps:
                    break

            # -- evaluate (each rank its share of the rows), report, keep the best
            local_outputs = predict_outputs(
                forward,
                my_val,
                batch_size=max(1, config.batch_size * 2 // world),
                pad_id=pad_id,
                device=device,
                dtype=dtype,
                prefix=prefix,
                store=stores.get("val"),
            )
            val_outputs = cluster.gather_rows(local_outputs, val_shards, len(val_rows))
            val_metrics = score_outputs(
                val_outputs
            )  # the same outputs on every rank: the same decisions
            score = selection_score(task, val_metrics)
            event = EpochEvent(
                epoch=epoch,
                step=step,
                total_steps=total_steps,
                train_loss=epoch_loss / max(epoch_rows, 1.0),
                val=val_metrics,
                elapsed_s=time.perf_counter() - started,
            ).to_dict()
            history.append(event)
            on_progress(event)
            if score > best_score:
                best_score, stale_epochs = score, 0
                best_state = cluster.full_state(model, wrapped)
                best_val = val_outputs
                if on_best is not None:
                    on_best(
                        event
                    )  # the model holds the best weights right now: a checkpoint can be taken
            else:
                stale_epochs += 1
            if stale_epochs >= config.patience or step >= total_steps:
                break
    except TrainingCancelled:
        # Every rank stops at the same step, so all can leave the process group cleanly.
        del forward, wrapped, optimizer, scheduler, trainable
        cluster.finish()
        raise
    del forward, wrapped, optimizer, scheduler, trainable
    sharded = cluster.is_fsdp
    cluster.finish()

    if best_state_out is not None and best_state is not None:
        best_state_out.update(best_state)
    if best_val_out is not None and best_val is not None and val_is_exact:
        best_val_out["val"] = best_val
    if best_state is not None and not sharded:
        model.load_state_dict(best_state, strict=False)
    return history


def _oom_error(config: TrainConfig, device: torch.device) -> TrainingError:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    smaller = max(1, config.batch_size // 2)
    return TrainingError(
        f"Out of memory on {device.type} with batch size {config.batch_size}: try batch size "
        f"{smaller} (or a shorter max length, or a higher freeze depth).",
        kind="out_of_memory",
    )
