"""Damaged run folders: each is listed as damaged with its reason, never hides or breaks another
run, the runs listing, the job manager or a sweep, and is never written to."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from core import cli
from core.config import DataConfig, RunConfig
from core.runs import folder as runs
from core.runs.checkpoint import CHECKPOINT
from core.runs.files import DamagedRunError
from core.runs.jobs import JobManager, snapshot
from core.runs.status import read_status, read_status_file, write_status
from core.runs.sweep import Sweep, SweepPoint, summary_lines, sweep_results

pytestmark = pytest.mark.timeout(300)


def _edit_json(name: str, change):
    def damage(run_dir):
        raw = json.loads((run_dir / name).read_text())
        change(raw)
        (run_dir / name).write_text(json.dumps(raw))

    return damage


def _write(name: str, content: str | bytes):
    def damage(run_dir):
        path = run_dir / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return damage


def _truncate(name: str):
    def damage(run_dir):
        text = (run_dir / name).read_text()
        (run_dir / name).write_text(text[: len(text) // 2])

    return damage


def _running(**fields):
    return _edit_json("status.json", lambda raw: raw.update(state="running", **fields))


def _remove(name: str):
    return lambda run_dir: (run_dir / name).unlink()


def _status_is_a_folder(run_dir):
    (run_dir / "status.json").unlink()
    (run_dir / "status.json").mkdir()


def _garbage_history_line(run_dir):
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    garbage = [
        "{not json",
        "[1, 2]",
        '{"type": "step", "step": "x"}',
        '{"type": "epoch", "val": []}',
    ]
    (run_dir / "history.jsonl").write_text("\n".join([lines[0], *garbage, *lines[1:]]) + "\n")


def _dead_run_with_damaged_checkpoint(run_dir):
    _running(pid=2**22 + 12345)(run_dir)  # no such process
    (run_dir / CHECKPOINT).mkdir()
    (run_dir / CHECKPOINT / "checkpoint.json").write_text('{"epoch": ')


# (damage, the reason the listing gives; None: readable, listed as the state given instead)
CASES = {
    "status truncated": (_truncate("status.json"), "status.json is not valid JSON (truncated?)"),
    "status empty": (_write("status.json", ""), "status.json is empty"),
    "status not utf-8": (
        _write("status.json", b'{"state": "\xff\xfe"}'),
        "status.json is not text",
    ),
    "status a string": (
        _write("status.json", '"running"'),
        "status.json holds a string, not a JSON object",
    ),
    "status a list": (_write("status.json", "[]"), "status.json holds a list, not a JSON object"),
    "status a folder": (_status_is_a_folder, "status.json cannot be read"),
    "status without state": (
        _write("status.json", '{"heartbeat": 1.0}'),
        "status.json has no state",
    ),
    "status empty object": (_write("status.json", "{}"), "status.json has no state"),
    "unknown state": (
        _edit_json("status.json", lambda r: r.update(state="exploded")),
        "status.json: state 'exploded' is not one of queued, running",
    ),
    "heartbeat soon": (_running(heartbeat="soon"), "status.json: heartbeat 'soon' is not a time"),
    "heartbeat null": (_running(heartbeat=None), "status.json: heartbeat null is not a time"),
    "pid text": (_running(pid="abc"), "status.json: pid 'abc' is not a process id"),
    "pid huge": (
        _running(pid=10**30),
        "status.json: pid 1000000000000000000000000000000 is not a process id",
    ),
    "pid negative": (_running(pid=-5), "status.json: pid -5 is not a process id"),
    "pid true": (_running(pid=True), "status.json: pid true is not a process id"),
    "owner pid float": (
        _edit_json("status.json", lambda r: r.update(state="queued", owner_pid=1.5)),
        "status.json: owner_pid 1.5 is not a process id",
    ),
    "message a list": (
        _edit_json("status.json", lambda r: r.update(message=[1, 2])),
        "status.json: message [1, 2] is not text",
    ),
    "config missing": (_remove("config.json"), "config.json is missing"),
    "config a list": (_write("config.json", "[]"), "config.json holds a list, not a JSON object"),
    "config truncated": (_truncate("config.json"), "config.json is not valid JSON (truncated?)"),
    "freeze depth text": (
        _edit_json("config.json", lambda r: r["model"].update(freeze_depth="deep")),
        "config.json: freeze_depth is 'deep': use auto, or a number of layers",
    ),
    "freeze depth negative": (
        _edit_json("config.json", lambda r: r["model"].update(freeze_depth=-2)),
        "config.json: freeze_depth is -2",
    ),
    "lora rank float": (
        _edit_json("config.json", lambda r: r["model"].update(lora_rank=8.5)),
        "config.json: model.lora_rank is the number 8.5",
    ),
    "roles a list": (
        _edit_json("config.json", lambda r: r["data"].update(roles=["notes"])),
        "config.json: data.roles is a list",
    ),
    "target missing": (
        _edit_json("config.json", lambda r: r["data"].pop("target")),
        "config.json: data.target is missing",
    ),
    "model a string": (
        _edit_json("config.json", lambda r: r.update(model="bert")),
        "config.json: model is text 'bert', not an object of settings",
    ),
    "unknown setting": (
        _edit_json("config.json", lambda r: r["train"].update(turbo=True)),
        "config.json: train.turbo is not a setting FinTune knows",
    ),
    "source a number": (
        _edit_json("config.json", lambda r: r.update(source=7)),
        "config.json: source 7 is not a file name",
    ),
    "metrics test a list": (
        _edit_json("metrics.json", lambda r: r.update(test=[])),
        "metrics.json: test is a list, not an object",
    ),
    "metrics value text": (
        _edit_json("metrics.json", lambda r: r["test"].update(roc_auc="high")),
        "metrics.json: test.roc_auc 'high' is not a number",
    ),
    "metrics task unknown": (
        _edit_json("metrics.json", lambda r: r.update(task=3)),
        "metrics.json: task 3 is not one of binary, multiclass, regression",
    ),
    "metrics truncated": (_truncate("metrics.json"), "metrics.json is not valid JSON (truncated?)"),
    "history garbage lines": (_garbage_history_line, None),
    "dead run, checkpoint.json damaged": (_dead_run_with_damaged_checkpoint, None),
}
TOLERATED_STATE = {
    "history garbage lines": "succeeded",
    "dead run, checkpoint.json damaged": "interrupted",
}


def _fingerprint(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _succeeded_run(runs_dir, frame, run_id: str, *, roc_auc: float):
    """A finished run folder as the worker leaves it, under a fixed id (newest sorts first)."""
    run_dir = runs.create_run(
        runs_dir, RunConfig(data=DataConfig(target="credit_risk")), frame, source="credit.csv"
    )
    run_dir = run_dir.rename(runs_dir / run_id)
    runs.append_event(
        run_dir, {"type": "step", "step": 1, "total_steps": 2, "epoch": 1, "loss": 0.7}
    )
    runs.append_event(
        run_dir, {"type": "step", "step": 2, "total_steps": 2, "epoch": 1, "loss": 0.6}
    )
    runs.append_event(
        run_dir, {"type": "epoch", "epoch": 1, "step": 2, "total_steps": 2, "val": {"roc_auc": 0.7}}
    )
    runs.write_metrics(
        run_dir,
        {
            "task": "binary",
            "val": {"roc_auc": 0.7},
            "test": {"roc_auc": roc_auc},
            "trainable_parameters": 1000,
            "training_seconds": 1.5,
            "peak_memory_mb": 100.0,
        },
    )
    write_status(run_dir, "running", pid=os.getpid())
    write_status(run_dir, "succeeded", message="")
    return run_dir


OLDER, DAMAGED, NEWER = "20240101-000000-aaaaaa", "20240102-000000-bbbbbb", "20240103-000000-cccccc"


@pytest.fixture
def three_runs(runs_dir, credit_df):
    """(older healthy, damaged-to-be, newer healthy) succeeded runs."""
    return tuple(
        _succeeded_run(runs_dir, credit_df, run_id, roc_auc=value)
        for run_id, value in ((OLDER, 0.81), (DAMAGED, 0.5), (NEWER, 0.92))
    )


def _healthy(summaries) -> dict:
    return {
        s.run_id: (s.state, s.target, s.backbone, s.test_value, s.message)
        for s in summaries
        if s.run_id != DAMAGED
    }


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_folder_is_listed_as_damaged_and_breaks_nothing(
    case, runs_dir, three_runs, capsys
):
    older, damaged, newer = three_runs
    before = _healthy(runs.list_runs(runs_dir))
    damage, reason = CASES[case]
    damage(damaged)
    untouched = _fingerprint(damaged)

    summaries = runs.list_runs(runs_dir)
    assert [s.run_id for s in summaries] == [NEWER, DAMAGED, OLDER]
    assert _healthy(summaries) == before
    summary = summaries[1]
    if reason is None:
        assert summary.state == TOLERATED_STATE[case], summary.message
    else:
        assert summary.state == "damaged"
        assert reason in summary.message
        assert summary.as_row()["state"] == "damaged"

    snap = snapshot(damaged)  # the live view of the run
    assert snap.state == summary.state and snap.finished
    if reason is not None:
        assert reason in snap.message and "Restore the file" in snap.message

    assert cli.main(["runs", "--runs-dir", str(runs_dir)]) == 0
    out, err = capsys.readouterr()
    line = next(line for line in out.splitlines() if line.startswith(DAMAGED))
    if reason is not None:
        assert "damaged" in line and reason in line
        assert "damaged run folder" in err
    assert f"{NEWER}  succeeded" in out and "roc_auc=0.9200" in out and "roc_auc=0.8100" in out

    jobs = JobManager(runs_dir, warm_worker=False)  # start-up recovery reads every folder
    try:
        assert _healthy(jobs.list_runs()) == before
        assert jobs.snapshot(DAMAGED).state == summary.state
    finally:
        jobs.shutdown()

    sweep = Sweep(
        "s",
        "",
        "credit.csv",
        (
            SweepPoint("freeze 1", 1, 0, NEWER),
            SweepPoint("freeze 0", 0, 0, DAMAGED),
            SweepPoint("LoRA r8", 0, 8, OLDER),
        ),
    )
    table = sweep_results(runs_dir, sweep)
    assert list(table["state"]) == ["succeeded", summary.state, "succeeded"]
    assert table.loc[0, "val_metric"] == pytest.approx(0.7)
    if reason is not None:
        assert reason in table.loc[1, "message"]
    assert len(summary_lines(table)) == 4

    if reason is not None:
        assert _fingerprint(damaged) == untouched  # nothing is rewritten or removed
    assert (older / "status.json").exists() and (newer / "metrics.json").exists()


def _every_damage(runs_dir, frame) -> dict[str, str]:
    """One damaged folder per case beside a healthy run; returns {run id: expected reason}."""
    expected = {}
    for i, (damage, reason) in enumerate(CASES.values()):
        if reason is None:
            continue
        run_id = f"20230101-{i:06d}-dddddd"
        damage(_succeeded_run(runs_dir, frame, run_id, roc_auc=0.5))
        expected[run_id] = reason
    _succeeded_run(runs_dir, frame, OLDER, roc_auc=0.81)
    return expected


def test_the_job_manager_runs_a_new_job_beside_every_kind_of_damage(
    runs_dir, credit_df, tiny_config
):
    expected = _every_damage(runs_dir, credit_df)
    untouched = {run_id: _fingerprint(runs_dir / run_id) for run_id in expected}
    jobs = JobManager(runs_dir, max_concurrent=1)
    try:
        run_id = jobs.submit(
            tiny_config("credit_risk", max_steps=2), credit_df, source="credit.csv"
        )
        snap = jobs.wait(run_id, timeout=180)
        assert snap.state == "succeeded", snap.message
        listed = {s.run_id: s for s in jobs.list_runs()}
    finally:
        jobs.shutdown()
    assert listed[run_id].state == "succeeded" and listed[OLDER].state == "succeeded"
    for damaged_id, reason in expected.items():
        assert listed[damaged_id].state == "damaged" and reason in listed[damaged_id].message
        assert _fingerprint(runs_dir / damaged_id) == untouched[damaged_id]


def test_fintune_runs_lists_damaged_folders_with_their_reasons(runs_dir, credit_df, fintune):
    expected = _every_damage(runs_dir, credit_df)
    result = fintune("runs", "--runs-dir", runs_dir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "succeeded" in lines[OLDER] and "roc_auc=0.8100" in lines[OLDER]
    for run_id, reason in expected.items():
        assert "damaged" in lines[run_id] and reason in lines[run_id]
    assert f"{len(expected)} damaged run folders: Restore the file" in result.stderr


def test_a_damaged_folder_is_a_clear_error_where_one_run_is_read(runs_dir, three_runs):
    _, damaged, _ = three_runs
    CASES["config a list"][0](damaged)
    with pytest.raises(
        runs.RunError, match=r"is damaged: config.json holds a list, not a JSON object\. Restore"
    ):
        runs.load_config(damaged)
    CASES["pid text"][0](damaged)
    with pytest.raises(DamagedRunError, match="pid 'abc' is not a process id") as caught:
        read_status(damaged)
    assert caught.value.reason == "status.json: pid 'abc' is not a process id"
    with pytest.raises(runs.RunError, match="is damaged"):
        write_status(damaged, "cancelled")  # never merged into and rewritten


def test_a_queued_job_whose_folder_is_damaged_fails_without_stopping_the_queue(
    runs_dir, credit_df, tiny_config
):
    """A waiting job's folder is damaged before it starts: it fails; the next job still runs."""
    jobs = JobManager(runs_dir, max_concurrent=1, warm_worker=False)
    try:
        with jobs._lock:  # hold the dispatcher while both are queued and the first is damaged
            first = jobs.submit(tiny_config("credit_risk", max_steps=1), credit_df)
            second = jobs.submit(tiny_config("credit_risk", max_steps=1), credit_df)
            (runs_dir / first / "config.json").write_text("[]")
        assert jobs.wait(first, timeout=60).state == "damaged"  # as the runs list shows it
        status = read_status_file(runs_dir / first)  # and recorded as failed, saying why
        assert status["state"] == "failed" and "config.json holds a list" in status["message"]
        assert jobs.wait(second, timeout=180).state == "succeeded"
    finally:
        jobs.shutdown()
