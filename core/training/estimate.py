"""How long a run will take on this machine, said before it starts; and the named presets.

The estimate comes from a measurement, not a table of guesses: a few timed batches of this
backbone on this device at the run's own token length, forward only and forward + backward, and
a few steps of a head the run's size (:func:`measure_speed`). The run's shape (rows, epochs, what
the backbone reads, how much of it trains) turns those speeds into seconds (:func:`estimate_run`).
Every allowed epoch is counted: early stopping can end a run sooner.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass

import pandas as pd

from ..config import AUTO_SCHEDULE, ModelConfig, RunConfig
from ..data.preprocess import Preprocessor
from ..data.schema import TableSpec

logger = logging.getLogger(__name__)

PRESETS = ("Quick demo", "Balanced", "Best quality")
PRESET_FIELDS = {"model": ("freeze_depth",), "train": ("epochs", "patience")}  # what presets set
QUICK_LIMIT_S = 180  # on a CPU, Quick demo is suggested when Balanced would take longer
WORKER_START_S = 5.0  # queueing, a worker process importing torch (measured 4-6 s, 2 cores)
REPORT_S = 3.0  # trees, intervals, baselines, stability checks of a small table (measured)
SPEED_BATCH = 16
SPEED_MIN_S = 0.3  # each kind of step is timed for two batches and at least this long


# --------------------------------------------------------------------------- presets


def presets(spec: TableSpec, layers: int, model: ModelConfig | None = None) -> dict[str, dict]:
    """Each preset's settings as ``RunConfig.replace`` sections, for this table and a backbone of
    ``layers`` layers (``model``: the other model settings, e.g. LoRA or how a table is read).

    Quick demo finishes in about a minute on a CPU; Balanced is the defaults; Best quality trains
    the whole backbone on text, and on tables keeps it frozen with more patience: there the
    frozen head is level with LightGBM, and training the backbone was slower and not better
    (docs/benchmarks.md).
    """
    from ..model.backbones import resolve_freeze_depth, trains_head_only

    auto = dataclasses.replace(model or ModelConfig(), freeze_depth="auto")
    schedule = AUTO_SCHEDULE[trains_head_only(auto, spec, layers)]
    balanced = {"model": {"freeze_depth": "auto"}, "train": {"epochs": "auto", "patience": "auto"}}
    if resolve_freeze_depth(auto, spec, layers) == 0:  # text: the backbone trains by default
        quick = {"model": {"freeze_depth": max(0, layers - 1)}, "train": {"epochs": 2}}
        best = {"model": {"freeze_depth": 0}, "train": {"epochs": 6, "patience": 3}}
    else:  # a table: the frozen backbone reads each cell once
        quick = {"train": {"epochs": min(10, schedule["epochs"] // 2), "patience": 3}}
        best = {"train": {"epochs": 2 * schedule["epochs"], "patience": 2 * schedule["patience"]}}
    filled = {}
    for name, settings in zip(PRESETS, (quick, balanced, best), strict=True):
        filled[name] = {
            section: {f: settings.get(section, {}).get(f, "auto") for f in fields}
            for section, fields in PRESET_FIELDS.items()
        }
    return filled


def preset_note(name: str, spec: TableSpec, layers: int, model: ModelConfig | None = None) -> str:
    """One plain sentence on what preset ``name`` does on this table."""
    from ..model.backbones import resolve_freeze_depth

    auto = dataclasses.replace(model or ModelConfig(), freeze_depth="auto")
    text = resolve_freeze_depth(auto, spec, layers) == 0
    settings = presets(spec, layers, model)[name]["train"]
    if name == "Balanced":
        return "The defaults: freeze depth, epochs and patience auto."
    if name == "Quick demo":
        return (
            f"All but the top layer frozen, {settings['epochs']} epochs: a first look in minutes."
            if text
            else f"The defaults with at most {settings['epochs']} epochs."
        )
    return (
        f"The whole backbone fine-tunes, up to {settings['epochs']} epochs, patience "
        f"{settings['patience']}."
        if text
        else f"The defaults with more patience ({settings['patience']} epochs, up to "
        f"{settings['epochs']}). On tables the frozen backbone and head are level with LightGBM; "
        "training the backbone was slower and not better (docs/benchmarks.md)."
    )


def matching_preset(
    config: RunConfig, spec: TableSpec, layers: int, model: ModelConfig | None = None
) -> str | None:
    """The preset whose settings ``config`` has, or None (custom settings)."""
    for name, settings in presets(spec, layers, model or config.model).items():
        if all(
            getattr(getattr(config, section), f) == value
            for section, values in settings.items()
            for f, value in values.items()
        ):
            return name
    return None


def suggested_preset(balanced_s: float, device_type: str) -> str:
    """Quick demo on a CPU where Balanced would take over ~3 minutes, else Balanced."""
    return "Quick demo" if device_type == "cpu" and balanced_s > QUICK_LIMIT_S else "Balanced"


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Speed:
    """A backbone's measured speed on one device, at one token length."""

    forward_rows_per_s: float  # no gradient
    train_rows_per_s: float  # forward + backward through every layer
    load_s: float  # loading the backbone from disk


_speeds: dict[tuple, Speed] = {}
_heads: dict[tuple, float] = {}
_measuring = threading.Lock()  # one measurement at a time: two would slow each other down


def measure_speed(backbone: str, device: str, precision: str, length: int) -> Speed:
    """Rows per second of ``backbone`` on ``device`` at ``length`` tokens, forward only and with
    the backward pass, each timed after a warm-up (cached per process)."""
    import torch

    from ..model.backbones import load_backbone
    from .devices import autocast_dtype, resolve_device

    key = (backbone, device, precision, length)
    with _measuring:
        if key in _speeds:
            return _speeds[key]
        started = time.perf_counter()
        model, _ = load_backbone(backbone)
        load_s = time.perf_counter() - started
        target = resolve_device(device)
        dtype = autocast_dtype(target, precision)
        model.to(target)
        ids = torch.randint(1000, 2000, (SPEED_BATCH, length), device=target)
        mask = torch.ones_like(ids)

        def step(train: bool) -> None:
            model.train(train)
            with torch.autocast(target.type, dtype=dtype, enabled=dtype is not None):
                with torch.set_grad_enabled(train):
                    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            if train:
                hidden.float().mean().backward()
            if target.type == "cuda":
                torch.cuda.synchronize(target)

        forward, backward = (_rows_per_s(lambda t=t: step(t)) for t in (False, True))
        _speeds[key] = Speed(forward, backward, load_s)
        logger.info("measured %s on %s at %d tokens: %s", backbone, device, length, _speeds[key])
        return _speeds[key]


def measure_head(d_in: int, d_hidden: int, n_outputs: int, batch_size: int) -> float:
    """Seconds of one optimiser step of a head this size on the CPU (cached per process)."""
    import torch
    from torch import nn

    key = (d_in, d_hidden, n_outputs, batch_size)
    with _measuring:
        if key not in _heads:
            head = nn.Sequential(
                nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, n_outputs)
            )
            optimizer = torch.optim.AdamW(head.parameters())
            x = torch.randn(batch_size, d_in)

            def step() -> None:
                optimizer.zero_grad(set_to_none=True)
                head(x).float().mean().backward()
                nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                optimizer.step()

            _heads[key] = batch_size / _rows_per_s(step, batch=batch_size)
        return _heads[key]


def _rows_per_s(step, *, batch: int = SPEED_BATCH) -> float:
    step()  # warm-up: the first call picks kernels and allocates
    batches, started = 0, time.perf_counter()
    while batches < 2 or time.perf_counter() - started < SPEED_MIN_S:
        step()
        batches += 1
    return batches * batch / (time.perf_counter() - started)


# --------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class RunEstimate:
    """Seconds a run should take here, by part, and the measurement they came from."""

    seconds: float
    start_up_s: float  # worker start, backbone load
    training_s: float  # every allowed epoch, validation included; frozen parts once
    report_s: float  # trees, test scoring, intervals, baselines
    epochs: int
    length: int  # tokens per row the speed was measured at
    speed: Speed
    backbone: str
    device: str  # "CPU" or "GPU"

    def describe(self) -> str:
        """The estimate in words, with the measurement it rests on."""
        return (
            f"about {_duration(self.seconds)} on this {self.device} (measured: "
            f"{self.backbone} {self.speed.forward_rows_per_s:,.0f} rows/s forward, "
            f"{self.speed.train_rows_per_s:,.0f} with backward, at {self.length} tokens a row; "
            f"up to {self.epochs} epochs); early stopping can end it sooner"
        )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def estimate_run(config: RunConfig, frame: pd.DataFrame, spec: TableSpec) -> RunEstimate:
    """Seconds the run of ``config`` on ``frame`` should take on its device, from measurements of
    its backbone there (the first call per backbone, device and length takes a few seconds)."""
    from ..model.backbones import describe_backbone, resolve, resolve_freeze_depth
    from ..model.backbones import trains_head_only as head_only_rule
    from .devices import resolve_device

    m, t = config.model, config.train
    layers = describe_backbone(m.backbone).n_layers
    depth = resolve_freeze_depth(m, spec, layers)
    head_only = head_only_rule(m, spec, layers)
    t = t.resolved(head_only=head_only)
    n_val = int(len(frame) * config.data.val_fraction)
    n_test = int(len(frame) * config.data.test_fraction)
    n_train = len(frame) - n_val - n_test
    pre = Preprocessor(spec, numeric_in_text=m.numeric_in_text, table_encoding=m.table_encoding)
    pre.fit(frame)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(m.backbone), trust_remote_code=False)
    length = 8
    if pre.reads_row_text:
        sample = frame.sample(min(len(frame), 2000), random_state=0)
        lengths = sorted(len(ids) for ids in tokenizer(pre.texts(sample))["input_ids"])
        cap = min(max(16, lengths[int(0.95 * (len(lengths) - 1))]), m.max_length or 256)
        # Training batches are bucketed by length: a batch costs about the rows' mean length.
        length = max(8, round(sum(min(n, cap) for n in lengths) / len(lengths)))
    speed = measure_speed(m.backbone, t.device, t.precision, length)
    trained = 0.0 if head_only else (layers - depth) / layers  # share of layers that learn
    steps = -(-n_train // t.batch_size)
    if t.max_steps:
        epochs = min(t.epochs, -(-t.max_steps // steps))
    else:
        epochs = t.epochs
    first, per_epoch = 0.0, 0.0  # seconds in the first epoch only, and in each epoch
    if pre.reads_row_text:
        # Trainable layers run forward and backward on each training row every epoch, forward
        # on each validation row; frozen layers run forward, once if their output is cached.
        per_epoch += trained * (n_train / speed.train_rows_per_s + n_val / speed.forward_rows_per_s)
        frozen = (1 - trained) * (n_train + n_val) / speed.forward_rows_per_s
        if depth > 0 and t.cache_frozen_prefix and not pre.cell_columns:
            first += frozen
        else:
            per_epoch += frozen
    vocabulary = len(pre.cell_vocabulary) if pre.cell_values_ else 0
    if vocabulary:
        width = max(len(ids) for ids in tokenizer(pre.cell_vocabulary)["input_ids"])
        cells = measure_speed(m.backbone, t.device, t.precision, min(width, 32))
        if trained:  # each step's distinct cells go through the training backbone
            distinct = min(vocabulary, t.batch_size * len(pre.cell_columns))
            per_epoch += steps * distinct / cells.train_rows_per_s
            per_epoch += vocabulary / cells.forward_rows_per_s  # validation: every cell
        else:
            first += vocabulary / cells.forward_rows_per_s
    d_in = len(pre.numeric_names) * m.d_cell + len(pre.cell_columns) * m.d_cell
    d_in += m.d_hidden if pre.reads_row_text else 0  # the text's projection, roughly
    n_outputs = 1 if spec.task == "regression" else len(spec.classes)
    per_epoch += steps * measure_head(max(d_in, 1), m.d_hidden, n_outputs, t.batch_size)
    start_up = WORKER_START_S + speed.load_s
    report = REPORT_S + (n_val + n_test) / speed.forward_rows_per_s * pre.reads_row_text
    training = first + epochs * per_epoch
    return RunEstimate(
        seconds=start_up + training + report,
        start_up_s=start_up,
        training_s=training,
        report_s=report,
        epochs=epochs,
        length=length,
        speed=speed,
        backbone=m.backbone,
        device="GPU" if resolve_device(t.device).type != "cpu" else "CPU",
    )
