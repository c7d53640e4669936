"""Run folders: atomic writes, status and history, restart recovery, safe ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import DataConfig, RunConfig
from core.errors import RunError
from core.runs import folder as runs
from core.runs.files import read_json, write_json
from core.runs.status import (
    STALE_AFTER_S,
    read_status,
    settle_dead_run,
    touch_heartbeat,
    write_status,
)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def run_dir(runs_dir, credit_df):
    return runs.create_run(
        runs_dir,
        RunConfig(data=DataConfig(target="credit_risk")),
        credit_df,
        source="/x/credit.csv",
    )


def test_create_run_writes_config_data_and_status(run_dir, credit_df):
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.json",
        "data.parquet",
        "split.json",
        "status.json",
    ]
    assert runs.load_config(run_dir) == RunConfig(data=DataConfig(target="credit_risk"))
    assert (
        json.loads((run_dir / "config.json").read_text())["source"] == "credit.csv"
    )  # no user paths kept
    assert runs.load_data(run_dir).equals(credit_df)
    status = read_status(run_dir)
    assert status["state"] == "queued" and status["owner_pid"] == os.getpid()


def test_atomic_writes_leave_no_temp_files(tmp_path):
    for i in range(20):
        write_json(tmp_path / "status.json", {"i": i, "loss": float("nan")})
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    assert read_json(tmp_path / "status.json") == {"i": 19, "loss": None}  # NaN is not JSON


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"version": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"version": 2})
    monkeypatch.undo()
    assert read_json(path) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_status_round_trip(run_dir):
    write_status(run_dir, "running", pid=os.getpid(), phase="Tokenising")
    write_status(run_dir, "running", phase="Training")
    status = read_status(run_dir)
    assert (
        status["state"] == "running"
        and status["phase"] == "Training"
        and status["pid"] == os.getpid()
    )
    assert "finished" not in status
    write_status(run_dir, "succeeded", message="")
    status = read_status(run_dir)
    assert status["state"] == "succeeded" and status["finished"]


def test_history_round_trip(run_dir):
    events = [
        {"type": "step", "step": 1, "loss": 0.7},
        {"type": "epoch", "epoch": 1, "val": {"roc_auc": float("nan")}},
    ]
    for event in events:
        runs.append_event(run_dir, event)
    with open(run_dir / "history.jsonl", "a") as handle:
        handle.write('{"type": "step", "st')  # a line still being written
    history = runs.read_history(run_dir)
    assert [e["type"] for e in history] == ["step", "epoch"]
    assert history[0]["loss"] == 0.7 and history[1]["val"]["roc_auc"] is None
    assert all("time" in e for e in history)


def test_dead_running_run_becomes_interrupted(run_dir, runs_dir):
    write_status(run_dir, "running", pid=_dead_pid())
    summaries = runs.list_runs(runs_dir)
    assert [s.state for s in summaries] == ["interrupted"]
    assert "stopped without finishing" in summaries[0].message
    assert read_json(run_dir / "status.json")["state"] == "running"  # readers never write
    settle_dead_run(run_dir)  # the job manager records it at start-up
    assert read_json(run_dir / "status.json")["state"] == "interrupted"


def test_live_running_run_stays_running(run_dir, runs_dir):
    write_status(run_dir, "running", pid=os.getpid())
    assert [s.state for s in runs.list_runs(runs_dir)] == ["running"]


def test_silent_running_run_becomes_interrupted(run_dir, runs_dir):
    status = write_status(run_dir, "running", pid=os.getpid())
    status["heartbeat"] = time.time() - STALE_AFTER_S - 1
    write_json(run_dir / "status.json", status)
    assert read_status(run_dir)["state"] == "interrupted"


def test_queued_run_of_a_dead_app_becomes_interrupted(run_dir):
    write_status(run_dir, "queued", owner_pid=_dead_pid())
    assert read_status(run_dir)["state"] == "interrupted"


def test_list_runs_skips_foreign_folders_and_shows_damaged_ones(run_dir, runs_dir):
    (runs_dir / "notes").mkdir()
    damaged = runs_dir / "20200101-000000-abcdef"
    damaged.mkdir()
    (damaged / "status.json").write_text("{not json")
    summaries = runs.list_runs(runs_dir)
    assert [s.run_id for s in summaries] == [run_dir.name, damaged.name]
    assert summaries[1].state == "damaged"
    assert "status.json is not valid JSON" in summaries[1].message
    row = summaries[0].as_row()
    assert (
        row["data"] == "credit.csv" and row["target"] == "credit_risk" and row["state"] == "queued"
    )
    assert runs.list_runs(runs_dir / "absent") == []


def test_summary_reads_the_test_metric(run_dir):
    runs.write_metrics(run_dir, {"task": "binary", "val": {}, "test": {"roc_auc": 0.8123}})
    summary = runs.summarize(run_dir)
    assert summary.test_metric == "roc_auc" and summary.test_value == pytest.approx(0.8123)
    assert summary.as_row()["test metric"] == "roc_auc 0.8123"


@pytest.mark.parametrize(
    "bad",
    ["../x", "..", "/etc", "/tmp/20240101-000000-abcdef", "a/b", "", "20240101-000000-abcdef/.."],
)
def test_run_path_refuses_foreign_ids(runs_dir, bad):
    with pytest.raises(RunError, match="is not a run id"):
        runs.run_path(runs_dir, bad)


def test_run_path_accepts_our_ids(runs_dir):
    run_id = runs.new_run_id()
    assert runs.run_path(runs_dir, run_id) == runs_dir / run_id


def test_predictions_missing_is_a_run_error(run_dir):
    with pytest.raises(RunError, match="has no predictions yet"):
        runs.read_predictions(run_dir)


def test_damaged_json_is_a_run_error(tmp_path):
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(RunError, match="is damaged"):
        read_json(tmp_path / "config.json")
    with pytest.raises(RunError, match="has no config.json"):
        runs.load_config(tmp_path / "elsewhere")


def _running_folder(folder: Path) -> Path:
    folder.mkdir()
    write_json(
        folder / "status.json", {"state": "running", "pid": os.getpid(), "heartbeat": time.time()}
    )
    return folder


def test_heartbeats_racing_the_final_write_never_lose_it(tmp_path):
    """The worker's heartbeat thread, a polling reader and the final write, raced many times."""
    import threading

    for trial in range(400):
        folder = _running_folder(tmp_path / f"race-{trial}")
        stop = threading.Event()

        def beat(folder: Path, stop: threading.Event) -> None:
            while not stop.is_set():
                touch_heartbeat(folder)

        def poll(folder: Path, stop: threading.Event) -> None:
            while not stop.is_set():
                read_status(folder)

        threads = [threading.Thread(target=work, args=(folder, stop)) for work in (beat, poll)]
        for thread in threads:
            thread.start()
        write_status(folder, "succeeded", message="done")
        for _ in range(3):
            touch_heartbeat(folder)
        stop.set()
        for thread in threads:
            thread.join()
        assert read_status(folder)["state"] == "succeeded", trial
        assert read_json(folder / "status.json")["state"] == "succeeded", trial


def test_a_late_write_cannot_undo_a_final_state(tmp_path):
    folder = _running_folder(tmp_path / "late")
    write_status(folder, "succeeded")
    assert write_status(folder, "running", phase="training")["state"] == "succeeded"
    assert write_status(folder, "failed", message="exited with code 0")["state"] == "succeeded"
    assert read_json(folder / "status.json")["state"] == "succeeded"


def test_a_run_guessed_interrupted_may_still_finish(tmp_path):
    folder = _running_folder(tmp_path / "guessed")
    write_status(folder, "interrupted", message="silent for a while")
    assert write_status(folder, "succeeded")["state"] == "succeeded"


def test_reading_a_dead_run_writes_nothing(run_dir):
    write_status(run_dir, "running", pid=_dead_pid())
    before = (run_dir / "status.json").read_bytes()
    assert read_status(run_dir)["state"] == "interrupted"
    runs.list_runs(run_dir.parent)
    assert (run_dir / "status.json").read_bytes() == before


def test_the_heartbeat_file_keeps_a_live_run_running(run_dir):
    status = write_status(run_dir, "running", pid=os.getpid())
    status["heartbeat"] = time.time() - STALE_AFTER_S - 1
    write_json(run_dir / "status.json", status)
    touch_heartbeat(run_dir)
    assert read_status(run_dir)["state"] == "running"


# --------------------------------------------------------------------------- the decision record


def _scored_run(run_dir: Path) -> Path:
    """A finished-looking binary run: test predictions and metrics under a 0.5 threshold."""
    import pandas as pd

    from core.stats.thresholds import Decision, outcome_at, table_scores

    prob_bad = [0.1, 0.35, 0.45, 0.6, 0.8, 0.95]
    predictions = pd.DataFrame(
        {
            "row": range(6),
            "credit_risk": ["good", "bad", "good", "good", "bad", "bad"],
            "prediction": ["good"] * 3 + ["bad"] * 3,
            "prob_bad": prob_bad,
            "prob_good": [1 - p for p in prob_bad],
        }
    )
    runs.write_predictions(run_dir, predictions)
    decision = Decision("bad", 0.5)
    scores = table_scores(predictions, "credit_risk", "bad")
    runs.write_metrics(
        run_dir,
        {
            "task": "binary",
            "classes": ["bad", "good"],
            "positive_class": "bad",
            "test": {"roc_auc": 0.8},
            "decision": decision.to_dict(),
            "at_threshold": outcome_at(*scores, decision),
        },
    )
    write_json(run_dir / "decision.json", decision.to_dict())
    return run_dir


def test_a_saved_decision_updates_decision_predictions_and_metrics(run_dir):
    from core.stats.thresholds import Decision

    run_dir = _scored_run(run_dir)
    decision = Decision("bad", 0.3, "manual", cost_fp=1.0, cost_fn=4.0)
    runs.write_decision(run_dir, decision)
    metrics = runs.read_metrics(run_dir)
    assert runs.read_decision(run_dir) == decision
    assert metrics["decision"] == decision.to_dict()
    predictions = runs.read_predictions(run_dir)
    assert list(predictions["prediction"]) == ["good"] + ["bad"] * 5
    assert metrics["at_threshold"] == {
        **metrics["at_threshold"],
        "threshold": 0.3,
        "tp": 3,
        "fp": 2,
        "fn": 0,
        "tn": 1,
        "cost_per_row": 2 / 6,
    }
    assert metrics["test"] == {"roc_auc": 0.8}  # the rest of metrics.json is kept


def test_a_decision_is_not_saved_over_damaged_metrics(run_dir):
    from core.runs.files import DamagedRunError
    from core.stats.thresholds import Decision

    run_dir = _scored_run(run_dir)
    (run_dir / "metrics.json").write_text("[]")
    before = {name: (run_dir / name).read_bytes() for name in ("decision.json", "predictions.csv")}
    with pytest.raises(DamagedRunError, match="metrics.json"):
        runs.write_decision(run_dir, Decision("bad", 0.3, "manual"))
    assert {name: (run_dir / name).read_bytes() for name in before} == before
