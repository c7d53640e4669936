"""Judging a run: the scorecard with intervals, the baselines, stability (PSI)."""
