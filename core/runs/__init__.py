"""The run folder and its life: the folder, jobs and workers, finishing a run, sweeps, tracking."""
