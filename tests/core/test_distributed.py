"""Several processes, one run: DDP through Hugging Face Accelerate (gloo on this CPU machine).

The launched tests start real process groups (``fintune train --num-processes 2`` and
``accelerate launch -m core.cli train``). Stated tolerance: with dropout off and fp32, a 2-process
run reproduces the 1-process run's validation and test metrics to 1e-3 (the global batch is shared
out, so both take the same optimiser steps on the same rows; only summation order differs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import TrainConfig
from core.errors import ConfigError
from core.runs import folder as runs
from core.runs.jobs import JobManager
from core.runs.process import settle_exit
from core.runs.status import read_status, write_status
from core.training.distributed import (
    Cluster,
    launch_command,
    rank_failure,
    read_rank_errors,
    write_rank_error,
)
from tests.conftest import PROJECT_ROOT

SAMPLES = PROJECT_ROOT / "sample_data"
TOLERANCE = 1e-3


# --------------------------------------------------------------------------- no processes launched


def test_launch_command_starts_n_processes_of_the_program():
    command = launch_command(2, ["-m", "core.runs.worker", "/runs/x"], port=29999)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in command  # the only launcher mode that starts N processes without MPI
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[command.index("--main_process_port") + 1] == "29999"
    assert command[-3:] == ["-m", "core.runs.worker", "/runs/x"]
    assert "--multi_gpu" not in launch_command(1, ["-m", "core.runs.worker", "x"])
    with pytest.raises(ConfigError, match="Number of processes is 0"):
        launch_command(0, ["x"])


def test_process_count_is_checked_against_the_global_batch():
    with pytest.raises(ConfigError, match="num_processes is 0"):
        TrainConfig(num_processes=0)
    with pytest.raises(ConfigError, match="batch_size 4 is smaller than num_processes 8"):
        TrainConfig(batch_size=4, num_processes=8)
    assert TrainConfig(batch_size=8, num_processes=8).num_processes == 8


def test_one_process_cluster_is_the_identity():
    import torch

    cluster = Cluster("cpu")
    assert (cluster.rank, cluster.world, cluster.is_main, cluster.distributed) == (
        0,
        1,
        True,
        False,
    )
    index = np.arange(7)
    assert cluster.shard(index).tolist() == index.tolist()
    outputs = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert cluster.gather_rows(outputs, [np.arange(3)], 3) is outputs
    totals = cluster.step_totals(torch.tensor(1.5), 3, False)
    assert totals.tolist() == [[1.5, 3.0, 0.0]]
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    assert cluster.wrap(model, optimizer) == (model, optimizer)
    cluster.finish()


def test_a_rank_error_becomes_the_run_failure(tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_status(run_dir, "running", processes=2)
    assert read_rank_errors(run_dir) == []
    write_rank_error(
        run_dir, 1, "out_of_memory", "Out of memory on cuda with batch size 64: try batch size 32."
    )
    assert read_rank_errors(run_dir)[0]["rank"] == 1
    kind, message = rank_failure(read_rank_errors(run_dir)[0], 2)
    assert kind == "out_of_memory" and message.startswith("Process 1 of 2 failed: Out of memory")

    settle_exit(run_dir, 1)  # the launcher exited 1 with the run still marked running
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["kind"] == "out_of_memory"
    assert "Process 1 of 2 failed" in status["message"]

    settle_exit(run_dir, 0, cancelled=True)  # a final state is never overwritten
    assert read_status(run_dir)["state"] == "failed"


# --------------------------------------------------------------------------- launched processes


@pytest.fixture(scope="module")
def minilm_without_dropout(tmp_path_factory) -> Path:
    """The bundled pretrained MiniLM with dropout off: training is then deterministic given the
    rows."""
    from core.model.backbones import bundled_minilm_path

    source = bundled_minilm_path()
    folder = tmp_path_factory.mktemp("minilm-nodrop")
    for name in (
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        if (source / name).exists():
            (folder / name).symlink_to(source / name)
    config = json.loads((source / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def headlines(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "headlines.csv"
    pd.read_csv(SAMPLES / "fin_sentiment.csv").sample(320, random_state=0).to_csv(path, index=False)
    return path


def _train_args(data: Path, backbone: Path, runs_dir: Path) -> list[str]:
    return [
        "train",
        str(data),
        "--target",
        "label",
        "--backbone",
        str(backbone),
        "--freeze",
        "3",
        "--max-length",
        "32",
        "--dropout",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--precision",
        "fp32",
        "--class-weights",
        "none",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--runs-dir",
        str(runs_dir),
    ]


def _epoch_metrics(run_dir: Path) -> list[dict]:
    return [e["val"] for e in runs.read_history(run_dir) if e["type"] == "epoch"]


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= TOLERANCE for k in a)


@pytest.mark.integration
def test_two_processes_reach_the_one_process_metrics(
    tmp_path, fintune, minilm_without_dropout, headlines
):
    one = fintune(*_train_args(headlines, minilm_without_dropout, tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = fintune(
        *_train_args(headlines, minilm_without_dropout, tmp_path / "two"), "--num-processes", "2"
    )
    assert two.returncode == 0, two.stderr[-2000:]
    run_one, run_two = (Path(r.stdout.strip().splitlines()[-1]) for r in (one, two))
    assert [p.name for p in (tmp_path / "two").iterdir()] == [
        run_two.name
    ]  # one run folder, not one per rank

    for a, b in zip(_epoch_metrics(run_one), _epoch_metrics(run_two), strict=True):
        assert _close(a, b), (a, b)
    assert _close(runs.read_metrics(run_one)["test"], runs.read_metrics(run_two)["test"])

    config = runs.load_config(run_two)
    assert config.train.num_processes == 2 and runs.read_metrics(run_two)["processes"] == 2
    history = runs.read_history(run_two)
    steps = [e for e in history if e["type"] == "step"]
    assert steps and all(
        e["processes"] == 2 and [r["rank"] for r in e["ranks"]] == [0, 1] for e in steps
    )
    assert all(r["samples_per_s"] > 0 for r in steps[-1]["ranks"])
    # The checkpoint is taken once per improving epoch, by the main process alone.
    checkpoints = [e["epoch"] for e in history if e["type"] == "checkpoint"]
    assert checkpoints and len(checkpoints) == len(set(checkpoints))
    assert checkpoints == [
        e["epoch"] for e in runs.read_history(run_one) if e["type"] == "checkpoint"
    ]
    assert not (run_two / "ranks").exists()  # no rank failed, so no other process wrote anything

    # The same run, launched the multi-node way (every process runs the CLI; rank 0 owns the
    # folder).
    launched = subprocess.run(
        launch_command(
            2,
            [
                "-m",
                "core.cli",
                *_train_args(headlines, minilm_without_dropout, tmp_path / "launch"),
            ],
        ),
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    (run_three,) = (tmp_path / "launch").iterdir()
    assert read_status(run_three)["state"] == "succeeded"
    assert _close(runs.read_metrics(run_two)["test"], runs.read_metrics(run_three)["test"])


FAULT = textwrap.dedent('''
    """Test fault: process 1 raises at its second training step (loaded as sitecustomize)."""
    import importlib.abc, importlib.machinery, os, sys

    class _Fault(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "core.training.distributed":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                original, calls = module.Cluster.step_totals, []

                def step_totals(self, *args, **kwargs):
                    calls.append(1)
                    if len(calls) == 2:
                        from core.errors import TrainingError
                        raise TrainingError(
                            "injected fault: process 1 stopped at step 2", kind="non_finite_loss"
                        )
                    return original(self, *args, **kwargs)

                module.Cluster.step_totals = step_totals

            spec.loader.exec_module = exec_module
            return spec

    if os.environ.get("RANK") == "1":
        sys.meta_path.insert(0, _Fault())
''')


def _tiny_args(data: Path, backbone: str, runs_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(data),
        "--target",
        "label",
        "--backbone",
        backbone,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--runs-dir",
        str(runs_dir),
        "--num-processes",
        "2",
        *extra,
    ]


def _leftover_workers(run_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(run_dir) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.integration
def test_a_failing_rank_fails_the_run_with_its_error(tmp_path, tiny_backbone, headlines):
    (tmp_path / "fault").mkdir()
    (tmp_path / "fault" / "sitecustomize.py").write_text(FAULT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "fault"), str(PROJECT_ROOT)]))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", *_tiny_args(headlines, tiny_backbone, tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["kind"] == "non_finite_loss"
    assert status["message"] == "Process 1 of 2 failed: injected fault: process 1 stopped at step 2"
    assert "Process 1 of 2 failed" in result.stderr
    assert (
        time.monotonic() - started < 120
    )  # the healthy rank did not wait out a collective timeout
    assert _leftover_workers(run_dir) == []  # and it exited


@pytest.mark.integration
def test_a_killed_rank_fails_the_run_and_the_other_exits(tmp_path, tiny_backbone, headlines):
    big = tmp_path / "big.csv"
    pd.concat([pd.read_csv(headlines)] * 8, ignore_index=True).to_csv(big, index=False)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core.cli",
            *_tiny_args(big, tiny_backbone, tmp_path / "r", "--epochs", "30"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline:
            time.sleep(0.5)
            found = list((tmp_path / "r").iterdir()) if (tmp_path / "r").is_dir() else []
            run_dir = found[0] if found else None
            if run_dir is None or not any(e["type"] == "step" for e in runs.read_history(run_dir)):
                continue
            for pid in _leftover_workers(run_dir):
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                if (
                    b"RANK=1" in environ
                    and b"-m\0core.runs.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
                ):
                    victim = pid
        assert victim is not None, "rank 1 never started training"
        os.kill(victim, signal.SIGKILL)  # what the out-of-memory killer does
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr[-2000:]
    status = read_status(run_dir)
    assert status["state"] == "failed"
    assert "Training on 2 processes stopped because another process died" in status["message"], (
        status["message"]
    )
    assert _leftover_workers(run_dir) == []


@pytest.mark.integration
def test_two_process_teardown_exits_cleanly_every_time(tmp_path, tiny_backbone, headlines):
    """A rank that aborts while leaving the process group makes the launcher exit 1: launch it
    repeatedly."""
    for attempt in range(5):
        run_dir = runs.create_run(
            tmp_path / "runs",
            runs.RunConfig.from_dict(
                {
                    "data": {"target": "label"},
                    "model": {"backbone": tiny_backbone},
                    "train": {"epochs": 1, "batch_size": 16, "num_processes": 2, "device": "cpu"},
                }
            ),
            pd.read_csv(headlines),
            source="headlines.csv",
        )
        launched = subprocess.run(
            launch_command(2, ["-m", "core.runs.worker", str(run_dir)]),
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            timeout=180,
        )
        assert launched.returncode == 0, f"attempt {attempt}: {launched.stderr[-3000:]}"
        assert read_status(run_dir)["state"] == "succeeded"


@pytest.mark.integration
def test_job_manager_launches_a_multi_process_run(runs_dir, tiny_config, headlines):
    manager = JobManager(runs_dir, warm_worker=False)
    try:
        config = tiny_config("label", num_processes=2, device="cpu", epochs=1)
        run_id = manager.submit(config, pd.read_csv(headlines), source="headlines.csv")
        snap = manager.wait(run_id, timeout=180)
    finally:
        manager.shutdown()
    assert snap.state == "succeeded", snap.message
    assert snap.steps[-1]["processes"] == 2
    assert read_status(runs_dir / run_id)["processes"] == 2


def test_main_process_stops_waiting_for_a_failed_rank(tmp_path):
    """Under NCCL a failed peer leaves rank 0 blocked in a collective for minutes: its watcher ends
    it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_status(run_dir, "running", processes=2)
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, threading; from pathlib import Path; import core.runs.worker as w; "
            "w.RANK_GRACE_S = 0.5; w._heartbeat(Path(sys.argv[1]), threading.Event(), 2)",
            str(run_dir),
        ],
        cwd=PROJECT_ROOT,
    )
    try:
        time.sleep(1.0)
        assert watcher.poll() is None  # nothing failed yet: it keeps watching
        write_rank_error(
            run_dir,
            1,
            "out_of_memory",
            "Out of memory on cuda with batch size 64: try batch size 32.",
        )
        assert watcher.wait(timeout=30) == 1
    finally:
        if watcher.poll() is None:
            watcher.kill()
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["kind"] == "out_of_memory"
    assert status["message"].startswith("Process 1 of 2 failed: Out of memory on cuda")
