"""Stopping ``fintune dashboard`` stops the Streamlit server it started (nothing left running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from live_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.timeout(120)
def test_sigterm_to_fintune_dashboard_stops_its_server(tmp_path):
    port = free_port()
    env = dict(os.environ, FINTUNE_WARM_WORKER="0")
    cli = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "dashboard", "--port", str(port)]
        + ["--runs-dir", str(tmp_path / "runs")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not answer in 60 s"
                time.sleep(0.5)
        [server] = _children(cli.pid)
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=30) is not None
        deadline = time.monotonic() + 10
        while _running(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(server), "the Streamlit server outlived fintune dashboard"
    finally:
        if cli.poll() is None:
            cli.kill()
        if server is not None and _running(server):
            os.kill(server, signal.SIGKILL)  # a failed check leaves nothing behind
