"""Progress events: the one schema of what training reports and ``history.jsonl`` holds.

The loop and the estimator emit these through ``on_progress`` as plain dicts (``to_dict()``), the
worker appends them to the run folder (which adds ``time``), and every reader (the job snapshot,
the CLI bar, tracking, the dashboard) gets them back through :func:`parse_event`. A line that is
not a usable event (an unknown kind, a field of the wrong type, a line still being written) parses
to None, so one bad line never hides the others.

The JSON is the contract with old run folders: ``type`` first, then the fields in the order below,
an optional field left out when it is None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

__all__ = [
    "CheckpointEvent",
    "EpochEvent",
    "Event",
    "PhaseEvent",
    "RankProgress",
    "StepEvent",
    "WarningEvent",
    "parse_event",
]


def _count(raw: Mapping, key: str, *, required: bool = False) -> int | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} is {value!r}, not a count")
    return value


def _number(raw: Mapping, key: str, *, required: bool = False) -> float | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{key} is {value!r}, not a finite number")
    return value


def _text(raw: Mapping, key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is {value!r}, not text")
    return value


def _mapping(raw: Mapping, key: str) -> dict | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{key} is {value!r}, not an object")
    return value


class _Event:
    """What every event kind shares: its ``type`` tag and the dict form written to history.jsonl."""

    __slots__ = ()
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The event as history.jsonl holds it: ``type`` first, None fields left out."""
        out: dict[str, Any] = {"type": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RankProgress:
    """One process's share of a step when several processes train together."""

    rank: int
    loss: float
    samples_per_s: float

    def to_dict(self) -> dict[str, Any]:
        """The rank as a step event's ``ranks`` entry holds it."""
        return {"rank": self.rank, "loss": self.loss, "samples_per_s": self.samples_per_s}

    @classmethod
    def from_dict(cls, raw: Any) -> RankProgress:
        """Read one ``ranks`` entry; ValueError if it is malformed."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"a rank entry is {raw!r}, not an object")
        return cls(
            rank=_count(raw, "rank", required=True),
            loss=_number(raw, "loss", required=True),
            samples_per_s=_number(raw, "samples_per_s", required=True),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEvent(_Event):
    """One optimizer step: loss, learning rate, throughput and time left; ranks when distributed."""

    kind: ClassVar[str] = "step"
    step: int | None = None
    total_steps: int | None = None
    epoch: int | None = None
    loss: float | None = None
    lr: float | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None
    processes: int | None = None
    ranks: tuple[RankProgress, ...] | None = None
    time: float | None = None  # wall-clock seconds, added when written to the run folder

    def to_dict(self) -> dict[str, Any]:
        """The step as history.jsonl holds it (``ranks`` as a list of objects)."""
        out = _Event.to_dict(self)
        if self.ranks is not None:
            out["ranks"] = [rank.to_dict() for rank in self.ranks]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping) -> StepEvent:
        """Read a step event; every field may be missing; ValueError if one has the wrong type."""
        ranks = raw.get("ranks")
        if ranks is not None and not isinstance(ranks, list):
            raise ValueError(f"ranks is {ranks!r}, not a list")
        return cls(
            step=_count(raw, "step"),
            total_steps=_count(raw, "total_steps"),
            epoch=_count(raw, "epoch"),
            loss=_number(raw, "loss"),
            lr=_number(raw, "lr"),
            samples_per_s=_number(raw, "samples_per_s"),
            eta_s=_number(raw, "eta_s"),
            elapsed_s=_number(raw, "elapsed_s"),
            processes=_count(raw, "processes"),
            ranks=None if ranks is None else tuple(RankProgress.from_dict(r) for r in ranks),
            time=_number(raw, "time"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochEvent(_Event):
    """The end of an epoch: mean training loss and the validation metrics."""

    kind: ClassVar[str] = "epoch"
    epoch: int
    step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    val: dict[str, Any] = field(default_factory=dict)  # metric name -> value (None where NaN)
    elapsed_s: float | None = None
    time: float | None = None

    @classmethod
    def from_dict(cls, raw: Mapping) -> EpochEvent:
        """Read an epoch event; ``epoch`` is required; ValueError if a field has the wrong type."""
        return cls(
            epoch=_count(raw, "epoch", required=True),
            step=_count(raw, "step"),
            total_steps=_count(raw, "total_steps"),
            train_loss=_number(raw, "train_loss"),
            val=_mapping(raw, "val") or {},
            elapsed_s=_number(raw, "elapsed_s"),
            time=_number(raw, "time"),
        )


TRAINING_PHASE = "Training"  # the phase of the training loop; the others load or report


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseEvent(_Event):
    """A stage of preparing or running training ("Tokenising", "Training", ...)."""

    kind: ClassVar[str] = "phase"
    phase: str
    trainable_parameters: int | None = None  # these four come with the "Tokenising" phase
    total_parameters: int | None = None
    max_length: int | None = None
    rows: dict[str, int] | None = None  # split name -> rows
    time: float | None = None

    @classmethod
    def from_dict(cls, raw: Mapping) -> PhaseEvent:
        """Read a phase event; ``phase`` is required; ValueError if a field has the wrong type."""
        return cls(
            phase=_text(raw, "phase"),
            trainable_parameters=_count(raw, "trainable_parameters"),
            total_parameters=_count(raw, "total_parameters"),
            max_length=_count(raw, "max_length"),
            rows=_mapping(raw, "rows"),
            time=_number(raw, "time"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointEvent(_Event):
    """The best model so far was saved to the run's checkpoint folder."""

    kind: ClassVar[str] = "checkpoint"
    epoch: int
    step: int | None = None
    time: float | None = None

    @classmethod
    def from_dict(cls, raw: Mapping) -> CheckpointEvent:
        """Read a checkpoint event; ``epoch`` is required; ValueError if a field is malformed."""
        return cls(
            epoch=_count(raw, "epoch", required=True),
            step=_count(raw, "step"),
            time=_number(raw, "time"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningEvent(_Event):
    """Something the user should know that did not stop training (a failed checkpoint, tracking)."""

    kind: ClassVar[str] = "warning"
    message: str
    time: float | None = None

    @classmethod
    def from_dict(cls, raw: Mapping) -> WarningEvent:
        """Read a warning event; ``message`` is required; ValueError if a field is malformed."""
        return cls(message=_text(raw, "message"), time=_number(raw, "time"))


Event = StepEvent | EpochEvent | PhaseEvent | CheckpointEvent | WarningEvent

_KINDS: dict[str, type] = {
    cls.kind: cls for cls in (StepEvent, EpochEvent, PhaseEvent, CheckpointEvent, WarningEvent)
}


def parse_event(raw: Any) -> Event | None:
    """The typed event of a history line's JSON value; None for an unknown kind or a bad field."""
    if not isinstance(raw, Mapping):
        return None
    kind = raw.get("type")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    try:
        return cls.from_dict(raw)
    except ValueError:
        return None
