"""FinTune's engine: data intake, backbones, model, training, jobs, runs, CLI.

Importing ``core`` is cheap: heavy modules (torch, transformers) load on first use.
"""

from importlib import import_module

_EXPORTS = {
    "FinTuneError": "errors", "DataError": "errors", "ConfigError": "errors", "BackboneError": "errors",
    "TrainingError": "errors", "RunError": "errors",
    "RunConfig": "config", "DataConfig": "config", "ModelConfig": "config", "TrainConfig": "config",
    "default_config": "config", "ROLES": "config", "DEFAULT_BACKBONE": "config",
    "read_table": "data", "infer_roles": "data", "infer_task": "data", "describe_table": "data",
    "split_rows": "data", "TableSpec": "data",
    "Preprocessor": "features",
    "BackboneInfo": "backbones", "list_backbones": "backbones", "describe_backbone": "backbones",
    "load_backbone": "backbones", "freeze": "backbones", "count_parameters": "backbones",
    "FineTuner": "engine", "inspect_inputs": "engine",
    "resolve_device": "training", "device_label": "training",
    "JobManager": "jobs", "JobSnapshot": "jobs", "snapshot": "jobs",
    "list_runs": "runs", "RunSummary": "runs", "read_metrics": "runs", "read_predictions": "runs",
    "read_history": "runs", "read_status": "runs", "load_config": "runs", "run_path": "runs", "test_rows": "runs",
    "score_file": "predict", "load_model": "predict",
    "escape_formulas": "exports", "to_safe_csv": "exports",
    "roc_pr_curves": "metrics", "confusion_table": "metrics",
    "explain_rows": "explain", "explain_tokens": "explain", "explanation_frame": "explain",
    "ExplainStats": "explain", "ExplanationCancelled": "explain", "summary_row": "explain",
    "warm_up_explanations": "explain",
    "ExplainJob": "explain_jobs", "ExplainJobs": "explain_jobs", "ExplainSnapshot": "explain_jobs",
    "DEFAULT_EXPLAIN_ROWS": "config", "MAX_EXPLAIN_ROWS": "explain_jobs",
    "resolve_split": "data", "describe_split": "data",
    "reliability_table": "metrics", "gain_lift_table": "metrics", "classification_metrics": "metrics",
    "regression_metrics": "metrics", "HIGHER_IS_BETTER": "metrics",
    "evaluate": "evaluation", "diagnostics": "evaluation",
    "bootstrap_intervals": "significance", "delong_test": "significance",
    "Decision": "thresholds", "choose_threshold": "thresholds", "cost_curve": "thresholds",
    "outcome_at": "thresholds", "apply_decision": "thresholds", "table_scores": "thresholds",
    "read_decision": "runs", "write_decision": "runs", "read_val_predictions": "runs",
    "read_baseline_predictions": "runs", "read_stability": "runs",
    "Comparison": "compare", "compare_runs": "compare", "compare_with_baselines": "compare",
    "compare_predictions": "compare", "HEADLINE_METRICS": "compare",
    "drift_report": "predict",
    "psi_level": "stability", "psi_chance_level": "stability", "PSI_WARN": "stability", "PSI_ALERT": "stability",
    "find_leakage": "leakage", "LeakageWarning": "leakage",
    "derive_market_features": "market", "market_columns": "market",
    "Sweep": "sweep", "start_sweep": "sweep", "list_sweeps": "sweep", "sweep_results": "sweep",
    "sweep_points": "sweep", "find_knee": "sweep",
    "Cluster": "distributed", "gpu_count": "distributed",
    "adapter_parameter_count": "adapters",
    "write_model_report": "model_report", "export_run": "export",
    "is_loopback": "access", "configured_password": "access",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'core' has no attribute {name!r}")
