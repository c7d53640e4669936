"""Statistics with no model in them: metrics, bootstrap intervals and tests, decision thresholds."""
