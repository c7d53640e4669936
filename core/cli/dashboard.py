"""``fintune dashboard``: the web dashboard, started as a Streamlit server."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..access import configured_password, is_loopback
from ..errors import ConfigError


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start the web dashboard (a password first when it is reachable from other machines)."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, FINTUNE_RUNS_DIR=str(Path(args.runs_dir).resolve()))
    if not is_loopback(args.host):
        if configured_password(root) is None:
            raise ConfigError(
                f"--host {args.host} makes the app reachable from other machines: set a password "
                'first (password = "..." in .streamlit/secrets.toml, or FINTUNE_PASSWORD), or '
                "keep 127.0.0.1."
            )
        env["FINTUNE_REQUIRE_PASSWORD"] = "1"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(root / "dashboard" / "app.py"),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--server.enableXsrfProtection",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    print(f"FinTune dashboard: http://{args.host}:{args.port}", file=sys.stderr)
    # From the project root, so that .streamlit/config.toml (upload limit, theme) applies.
    server = subprocess.Popen(command, env=env, cwd=root)
    # Stopping this command stops the server (and with it the runs it started: they watch it).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: server.send_signal(number))
    while True:
        try:
            return server.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the server too; wait for it to finish
            continue
