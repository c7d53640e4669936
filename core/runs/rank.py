"""One process of a run started by a launcher: ``accelerate launch -m core.cli train ...``.

Every process reads its own copy of the table (the runs folder need not be shared between
machines); rank 0 creates the run folder and tells the others where it is; then all of them train.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import RunConfig


@dataclass(frozen=True)
class LaunchedRank:
    """This process's part of a launched run: its run folder, config and copy of the table."""

    run_dir: Path
    config: RunConfig
    frame: pd.DataFrame
    is_main: bool

    def execute(self, on_progress: Callable[[dict], None] | None = None) -> str:
        """Train this rank's part of the run; return the run's final state."""
        from .worker import execute

        return execute(self.run_dir, on_progress=on_progress, config=self.config, frame=self.frame)


def join_launched_run(source: str, runs_dir: str | Path, config: RunConfig) -> LaunchedRank:
    """Read the table and agree on the run folder with the other ranks (rank 0 creates it)."""
    from ..data.read import read_table
    from ..data.schema import describe_table
    from ..training.distributed import broadcast_text, current_cluster
    from .folder import create_run

    cluster = current_cluster(config.train.device)
    config = config.replace(train={"num_processes": cluster.world})
    frame = read_table(source)
    describe_table(frame, config.data)
    run_dir = create_run(runs_dir, config, frame, source=source) if cluster.is_main else None
    run_dir = Path(broadcast_text(cluster, str(run_dir) if run_dir else None))
    return LaunchedRank(run_dir=run_dir, config=config, frame=frame, is_main=cluster.is_main)
