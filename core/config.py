"""One frozen configuration tree for a run, saved into every run folder.

Defaults have one home: :func:`default_config`. The CLI and the dashboard pre-fill from it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

Role = Literal["numeric", "categorical", "text", "datetime", "id", "ignore"]
ROLES: tuple[str, ...] = ("numeric", "categorical", "text", "datetime", "id", "ignore")
Task = Literal["binary", "multiclass", "regression"]
DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
DEFAULT_EXPLAIN_ROWS = 200  # rows explained when nobody says otherwise (page and CLI)
DEFAULT_LORA_RANK = 8  # the rank offered when LoRA is switched on (Model page, sweep's LoRA point)
LORA_FIELDS = (
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "lora_targets",
)  # ModelConfig's LoRA settings


@dataclass(frozen=True)
class DataConfig:
    """What to learn from the table: the target, column-role overrides and the split."""

    target: str
    roles: dict[str, str] = field(default_factory=dict)  # overrides of the inferred roles
    task: str | None = None  # None: inferred from the target
    split: str = (
        "auto"  # "auto" (by time when a date column exists), "random" (stratified), "time:<column>"
    )
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    embargo: int = 0  # time splits: distinct dates left out between train|val and val|test
    positive_class: str | None = (
        None  # binary: the event class scored by KS, lift, thresholds; None: the rarer
    )

    def __post_init__(self):
        if not self.target:
            raise ConfigError("No target column given: name the column to predict (the target).")
        for column, role in self.roles.items():
            if role not in ROLES:
                raise ConfigError(
                    f"Role {role!r} for column {column!r} is unknown: use one of "
                    f"{', '.join(ROLES)}."
                )
        if self.task not in (None, "binary", "multiclass", "regression"):
            raise ConfigError(
                f"Task {self.task!r} is unknown: use binary, multiclass or regression."
            )
        if not (
            self.split in ("auto", "random")
            or (self.split.startswith("time:") and len(self.split) > 5)
        ):
            raise ConfigError(
                f"Split {self.split!r} is unknown: use 'auto', 'random' or 'time:<date column>'."
            )
        if self.embargo < 0:
            raise ConfigError(f"embargo is {self.embargo}: use 0 or more dates.")
        if self.embargo and self.split == "random":
            raise ConfigError(
                "An embargo needs a time split: use split 'time:<date column>' or 'auto'."
            )
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise ConfigError(f"{name} is {value}: choose a fraction between 0 and 0.5.")

    @property
    def time_column(self) -> str | None:
        return self.split[5:] if self.split.startswith("time:") else None


@dataclass(frozen=True)
class ModelConfig:
    """The backbone, how much of it trains, and the fusion head."""

    backbone: str = DEFAULT_BACKBONE
    # Embeddings + bottom N encoder layers frozen. "auto" (core.model.backbones.auto_freeze_depth):
    # the whole backbone on tables with columns besides free text, none on text-only data.
    freeze_depth: int | str = "auto"
    max_length: int | None = None  # None: the 95th percentile of training lengths, capped at 256
    numeric_in_text: str = (
        "auto"  # "auto": binned numbers go to the text only when it would be empty
    )
    # "auto" / "cells": categorical cells encoded once per distinct value, numbers embedded per
    # feature; "row_text": each whole row serialised as one text (the first version's path).
    table_encoding: str = "auto"
    d_cell: int = 32  # width of each cell's and each number's vector in cells mode
    # "auto": LightGBM on the table's columns, blended with the network by one weight fitted on
    # validation rows (kept only when it helps there); "off": the network alone.
    trees: str = "auto"
    d_numeric: int = 64
    d_hidden: int = 256
    dropout: float = 0.1
    lora_rank: int = 0  # > 0: LoRA adapters of this rank instead of training the backbone's weights
    lora_alpha: float | None = None  # adapter scale alpha / rank; None: 2 x rank
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | None = (
        None  # linear layers that get adapters; None: all in each block
    )

    def __post_init__(self):
        if isinstance(self.lora_targets, str):
            object.__setattr__(
                self,
                "lora_targets",
                tuple(t.strip() for t in self.lora_targets.split(",") if t.strip()),
            )
        elif self.lora_targets is not None:
            object.__setattr__(
                self, "lora_targets", tuple(self.lora_targets)
            )  # a list after a JSON round trip
        if self.lora_targets == ():
            object.__setattr__(self, "lora_targets", None)
        if not 0 <= self.lora_rank <= 1024:
            raise ConfigError(
                f"lora_rank is {self.lora_rank}: use 0 (no LoRA) or a rank such as 8 or 16."
            )
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise ConfigError(
                f"lora_alpha is {self.lora_alpha}: use a positive scale such as 16 "
                "(or leave it unset)."
            )
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout is {self.lora_dropout}: choose in [0, 1).")
        if isinstance(self.freeze_depth, str) and self.freeze_depth.strip().isdigit():
            object.__setattr__(self, "freeze_depth", int(self.freeze_depth))
        if self.freeze_depth != "auto" and (
            isinstance(self.freeze_depth, bool)
            or not isinstance(self.freeze_depth, int)
            or self.freeze_depth < 0
        ):
            raise ConfigError(
                f"freeze_depth is {self.freeze_depth!r}: use auto, or a number of layers "
                "(0 or more)."
            )
        if self.max_length is not None and not 8 <= self.max_length <= 4096:
            raise ConfigError(f"max_length is {self.max_length}: choose between 8 and 4096 tokens.")
        if self.numeric_in_text not in ("auto", "always", "never"):
            raise ConfigError(
                f"numeric_in_text is {self.numeric_in_text!r}: use auto, always or never."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout is {self.dropout}: choose in [0, 1).")
        if self.table_encoding not in ("auto", "cells", "row_text"):
            raise ConfigError(
                f"table_encoding is {self.table_encoding!r}: use auto, cells or row_text."
            )
        if self.trees not in ("auto", "off"):
            raise ConfigError(f"trees is {self.trees!r}: use auto or off.")
        if not 1 <= self.d_cell <= 1024:
            raise ConfigError(f"d_cell is {self.d_cell}: choose between 1 and 1024.")

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha if self.lora_alpha is not None else 2.0 * self.lora_rank


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    # "auto" (TrainConfig.resolved): 4 epochs, patience 2, while backbone weights train; 30 and 6
    # when only the head trains, where an epoch is a pass of the small head (milliseconds).
    epochs: int | str = "auto"
    batch_size: int = 32
    lr: float = 5e-5  # backbone learning rate
    head_lr: float | str = "auto"  # the fresh head learns faster: auto is 1e-3 (3e-4 head only)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    patience: int | str = "auto"  # epochs without validation improvement before stopping
    class_weights: str = "auto"  # "auto": balanced weights when the rarest class is under 25%
    loss: str = "cross_entropy"  # classification loss: cross_entropy | focal
    focal_gamma: float = 2.0  # focal loss: how much easy rows are down-weighted (0 = cross-entropy)
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = (
        "auto"  # auto (bf16 on GPUs and bf16-capable CPUs, else fp16 / fp32) | fp32 | bf16 | fp16
    )
    max_steps: int | None = None  # stop after this many optimiser steps (quick trials, tests)
    cache_frozen_prefix: bool = True  # compute frozen layers once, replay them in later epochs
    compile: bool = False  # torch.compile the model (used when no frozen prefix is cached)
    num_processes: int = (
        1  # data-parallel processes (GPUs); batch_size is the global batch across them
    )

    def __post_init__(self):
        for name in ("epochs", "patience"):
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().isdigit():
                object.__setattr__(self, name, int(value))
            elif value != "auto" and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} is {value!r}: use auto, or a whole number 1 or more.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size is {self.batch_size}: use 1 or more.")
        if self.head_lr != "auto" and isinstance(self.head_lr, str):
            try:
                object.__setattr__(self, "head_lr", float(self.head_lr))
            except ValueError:
                raise ConfigError(
                    f"head_lr is {self.head_lr!r}: use auto or a rate such as 1e-3."
                ) from None
        head_lr = AUTO_SCHEDULE[False]["head_lr"] if self.head_lr == "auto" else self.head_lr
        if not 0 < self.lr < 1 or not 0 < head_lr < 1:
            raise ConfigError(
                f"learning rates {self.lr}, {self.head_lr}: use values in (0, 1), e.g. 5e-5."
            )
        if self.class_weights not in ("auto", "balanced", "none"):
            raise ConfigError(
                f"class_weights is {self.class_weights!r}: use auto, balanced or none."
            )
        if self.loss not in ("cross_entropy", "focal"):
            raise ConfigError(f"loss is {self.loss!r}: use cross_entropy or focal.")
        if not 0.0 <= self.focal_gamma <= 10.0:
            raise ConfigError(
                f"focal_gamma is {self.focal_gamma}: choose between 0 and 10 (2 is usual)."
            )
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision is {self.precision!r}: use auto, fp32, bf16 or fp16.")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio is {self.warmup_ratio}: choose in [0, 1).")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps is {self.max_steps}: use 1 or more, or leave it unset.")
        if self.num_processes < 1:
            raise ConfigError(f"num_processes is {self.num_processes}: use 1 or more.")
        if self.batch_size < self.num_processes:
            raise ConfigError(
                f"batch_size {self.batch_size} is smaller than num_processes "
                f"{self.num_processes}: the batch is shared out among the processes; use a batch "
                f"size of {self.num_processes} or more."
            )

    def resolved(self, *, head_only: bool) -> TrainConfig:
        """Epochs, patience and head learning rate as a run trains them: "auto" read for a run
        where only the head trains (core.model.backbones.trains_head_only) or one where backbone
        weights train.

        Only the head: its epochs cost milliseconds, and on German credit up to 30 epochs at a
        head rate of 3e-4, patience 6, brought the network alone from 0.775 to within 0.01 AUC
        of LightGBM (5 folds, docs/benchmarks.md); 4 epochs at 1e-3 stopped it early, and 30 at
        1e-3 overfit. Backbone weights training: 4 epochs, patience 2, head rate 1e-3, where each
        epoch is the cost.
        """
        auto = AUTO_SCHEDULE[head_only]
        return dataclasses.replace(
            self, **{name: auto[name] for name in auto if getattr(self, name) == "auto"}
        )


# What "auto" stands for, by whether only the head trains (TrainConfig.resolved)
AUTO_SCHEDULE = {
    False: {"epochs": 4, "patience": 2, "head_lr": 1e-3},
    True: {"epochs": 30, "patience": 6, "head_lr": 3e-4},
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; frozen and written to ``config.json``."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """The config saved as ``raw`` (a parsed config.json); a wrong shape, a setting of the wrong
        type or out of range raises ConfigError naming the setting."""
        if not isinstance(raw, dict):
            raise ConfigError(
                f"the run config is {_kind(raw)}, not an object of settings: recreate the run."
            )
        if "data" not in raw:
            raise ConfigError("the run config has no data section (the target): recreate the run.")
        sections = {}
        for name, section in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
            values = raw.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(
                    f"{name} is {_kind(values)}, not an object of settings: recreate the run."
                )
            _check_types(name, section, values)
            sections[name] = values
        try:
            return cls(
                data=DataConfig(**sections["data"]),
                model=ModelConfig(**sections["model"]),
                train=TrainConfig(**sections["train"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:  # a shape _check_types does not know
            raise ConfigError(f"The run config is malformed ({exc}): recreate the run.") from exc

    def replace(self, **sections: Any) -> RunConfig:
        """A copy with keyword changes per section, e.g. ``replace(train={"epochs": 2})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changed)


_KIND_NAMES = {
    int: "a whole number",
    float: "a number",
    str: "text",
    bool: "true or false",
    dict: "an object",
    tuple: "a list",
    type(None): "null",
}


def _kind(value: Any) -> str:
    """What a JSON value is, in words: ``a list``, ``text 'soon'``, ``the number 3.5``."""
    if isinstance(value, bool) or value is None:
        return _json_word(value)
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _json_word(value: Any) -> str:
    return {True: "true", False: "false", None: "null"}[value]


def _matches(value: Any, hint: Any) -> bool:
    """Whether a value read from JSON fits a field's type hint (no bool for an int; a list for a
    tuple)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _matches(k, key) and _matches(v, item) for k, v in value.items()
        )
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    return True


def _wanted(hint: Any) -> str:
    """A field's type in words: ``a whole number or null``."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    return " or ".join(_KIND_NAMES.get(typing.get_origin(a) or a, str(a)) for a in args)


def _check_types(name: str, section: type, values: dict[str, Any]) -> None:
    hints = typing.get_type_hints(section)
    for item in dataclasses.fields(section):
        required = (
            item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        )
        if required and item.name not in values:
            raise ConfigError(f"{name}.{item.name} is missing: recreate the run.")
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"{name}.{key} is not a setting FinTune knows: recreate the run.")
        if not _matches(value, hints[key]):
            raise ConfigError(f"{name}.{key} is {_kind(value)}: it must be {_wanted(hints[key])}.")


def default_config(target: str, backbone: str = DEFAULT_BACKBONE, **data_options: Any) -> RunConfig:
    """The defaults every entry point starts from."""
    return RunConfig(
        data=DataConfig(target=target, **data_options), model=ModelConfig(backbone=backbone)
    )
