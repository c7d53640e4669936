"""Progress events: the dict round trip, the history.jsonl format, and malformed lines."""

from __future__ import annotations

import json

import pytest

from core.runs import folder as runs
from core.training.events import (
    CheckpointEvent,
    EpochEvent,
    PhaseEvent,
    RankProgress,
    StepEvent,
    WarningEvent,
    parse_event,
)

STEP = {
    "type": "step",
    "step": 3,
    "total_steps": 10,
    "epoch": 1,
    "loss": 0.69,
    "lr": 1e-4,
    "samples_per_s": 120.5,
    "eta_s": 4.2,
    "elapsed_s": 1.8,
}
EVENTS = [
    STEP,
    {
        **STEP,
        "processes": 2,
        "ranks": [
            {"rank": 0, "loss": 0.7, "samples_per_s": 60.0},
            {"rank": 1, "loss": 0.68, "samples_per_s": 60.5},
        ],
    },
    {
        "type": "epoch",
        "epoch": 1,
        "step": 10,
        "total_steps": 10,
        "train_loss": 0.65,
        "val": {"roc_auc": 0.71, "log_loss": None},
        "elapsed_s": 6.0,
    },
    {"type": "phase", "phase": "Checking the data"},
    {
        "type": "phase",
        "phase": "Tokenising",
        "trainable_parameters": 10,
        "total_parameters": 20,
        "max_length": 64,
        "rows": {"train": 140, "val": 30, "test": 30},
    },
    {"type": "checkpoint", "epoch": 1, "step": 10},
    {"type": "warning", "message": "MLflow tracking is off for the rest of this run."},
]


@pytest.mark.parametrize("raw", EVENTS, ids=lambda raw: raw["type"])
def test_round_trip_keeps_the_json_as_written(raw):
    event = parse_event(raw)
    assert event is not None and event.to_dict() == raw
    assert list(event.to_dict()) == list(raw)  # the same key order: old and new lines look alike
    with_time = {**raw, "time": 1700000000.5}
    assert parse_event(with_time).to_dict() == with_time


def test_typed_fields():
    step = parse_event(EVENTS[1])
    assert isinstance(step, StepEvent) and step.loss == 0.69 and step.processes == 2
    assert step.ranks == (
        RankProgress(rank=0, loss=0.7, samples_per_s=60.0),
        RankProgress(rank=1, loss=0.68, samples_per_s=60.5),
    )
    epoch = parse_event(EVENTS[2])
    assert isinstance(epoch, EpochEvent) and epoch.val["roc_auc"] == 0.71
    assert isinstance(parse_event(EVENTS[3]), PhaseEvent)
    assert parse_event(EVENTS[5]) == CheckpointEvent(epoch=1, step=10)
    assert isinstance(parse_event(EVENTS[6]), WarningEvent)


def test_emitted_events_leave_out_what_is_not_there():
    assert StepEvent(step=1, loss=0.5).to_dict() == {"type": "step", "step": 1, "loss": 0.5}
    assert EpochEvent(epoch=2).to_dict() == {"type": "epoch", "epoch": 2, "val": {}}
    assert "time" not in PhaseEvent(phase="Training").to_dict()


def test_partial_step_and_epoch_lines_still_read():
    # Lines written by earlier versions or tests: every step field may be missing.
    assert parse_event({"type": "step", "step": 1, "loss": 0.7}) == StepEvent(step=1, loss=0.7)
    assert parse_event({"type": "epoch", "epoch": 1}) == EpochEvent(epoch=1)
    assert parse_event({"type": "epoch", "epoch": 1, "val": None}).val == {}


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [1, 2],
        "step",
        3,
        {},
        {"type": None},
        {"type": "done"},
        {"type": ["step"]},
        {"type": "step", "step": "x"},
        {"type": "step", "step": -1},
        {"type": "step", "step": True},
        {"type": "step", "step": 1.5},
        {"type": "step", "loss": "low"},
        {"type": "step", "loss": float("nan")},
        {"type": "step", "ranks": {"rank": 0}},
        {"type": "step", "ranks": [{"rank": 0, "loss": None, "samples_per_s": 1.0}]},
        {"type": "step", "ranks": [3]},
        {"type": "step", "time": "noon"},
        {"type": "epoch", "val": {}},
        {"type": "epoch", "epoch": 1, "val": []},
        {"type": "epoch", "epoch": "1"},
        {"type": "phase"},
        {"type": "phase", "phase": 3},
        {"type": "phase", "phase": "Tokenising", "rows": [140]},
        {"type": "checkpoint", "step": 3},
        {"type": "warning"},
        {"type": "warning", "message": {"text": "x"}},
    ],
)
def test_malformed_or_unknown_lines_parse_to_none(raw):
    assert parse_event(raw) is None


def test_read_history_skips_bad_lines_and_keeps_the_format(tmp_path):
    for raw in EVENTS:
        runs.append_event(tmp_path, raw)
    written = (tmp_path / "history.jsonl").read_text().splitlines()
    untimed = [{k: v for k, v in json.loads(line).items() if k != "time"} for line in written]
    assert untimed == EVENTS
    with open(tmp_path / "history.jsonl", "a") as handle:
        handle.write('{"type": "bogus"}\n[1]\n{"type": "step", "step": "x"}\n{"type": "epo')
    events = runs.read_events(tmp_path)
    assert [type(e) for e in events] == [
        StepEvent,
        StepEvent,
        EpochEvent,
        PhaseEvent,
        PhaseEvent,
        CheckpointEvent,
        WarningEvent,
    ]
    assert all(isinstance(e.time, float) for e in events)
    assert runs.read_history(tmp_path) == [json.loads(line) for line in written]
