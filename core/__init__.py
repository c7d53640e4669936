"""FinTune's engine: data intake, backbones, model, training, jobs, runs, CLI.

Importing ``core`` is cheap: heavy modules (torch, transformers) load on first use.
"""

from importlib import import_module

_EXPORTS = {
    "FinTuneError": "errors", "DataError": "errors", "ConfigError": "errors", "BackboneError": "errors",
    "TrainingError": "errors", "RunError": "errors",
    "RunConfig": "config", "DataConfig": "config", "ModelConfig": "config", "TrainConfig": "config",
    "default_config": "config", "DEFAULT_LORA_RANK": "config", "LORA_FIELDS": "config", "ROLES": "config", "DEFAULT_BACKBONE": "config",
    "read_table": "data.read", "infer_roles": "data.schema", "infer_task": "data.schema", "describe_table": "data.schema",
    "split_rows": "data.split", "TableSpec": "data.schema",
    "Preprocessor": "data.preprocess",
    "BackboneInfo": "model.backbones", "list_backbones": "model.backbones", "describe_backbone": "model.backbones",
    "load_backbone": "model.backbones", "freeze": "model.backbones", "count_parameters": "model.backbones",
    "FineTuner": "training.estimator", "inspect_inputs": "training.estimator",
    "resolve_device": "training.devices", "device_label": "training.devices",
    "JobManager": "runs.jobs", "JobSnapshot": "runs.jobs", "snapshot": "runs.jobs",
    "list_runs": "runs.folder", "RunSummary": "runs.folder", "read_metrics": "runs.folder", "read_predictions": "runs.folder",
    "read_history": "runs.folder", "read_status": "runs.status", "load_config": "runs.folder", "run_path": "runs.folder", "test_rows": "runs.folder",
    "score_file": "serving.predict", "load_model": "runs.fitted",
    "escape_formulas": "serving.safe_csv", "to_safe_csv": "serving.safe_csv",
    "roc_pr_curves": "stats.metrics", "confusion_table": "stats.metrics",
    "explain_rows": "explain.attributions", "explain_tokens": "explain.attributions", "explanation_frame": "explain.attributions",
    "ExplainStats": "explain.attributions", "ExplanationCancelled": "explain.attributions", "summary_row": "explain.attributions",
    "warm_up_explanations": "explain.attributions",
    "ExplainJob": "explain.jobs", "ExplainJobs": "explain.jobs", "ExplainSnapshot": "explain.jobs",
    "DEFAULT_EXPLAIN_ROWS": "config", "MAX_EXPLAIN_ROWS": "explain.jobs",
    "resolve_split": "data.split", "describe_split": "data.split",
    "reliability_table": "stats.metrics", "gain_lift_table": "stats.metrics", "classification_metrics": "stats.metrics",
    "regression_metrics": "stats.metrics", "HIGHER_IS_BETTER": "stats.metrics",
    "evaluate": "evaluation.scorecard", "diagnostics": "evaluation.scorecard",
    "bootstrap_intervals": "stats.intervals", "delong_test": "stats.intervals",
    "Decision": "stats.thresholds", "choose_threshold": "stats.thresholds", "cost_curve": "stats.thresholds",
    "outcome_at": "stats.thresholds", "apply_decision": "stats.thresholds", "table_scores": "stats.thresholds",
    "read_decision": "runs.folder", "write_decision": "runs.folder", "read_val_predictions": "runs.folder",
    "read_baseline_predictions": "runs.folder", "read_stability": "runs.folder",
    "Comparison": "review.compare", "compare_runs": "review.compare", "compare_with_baselines": "review.compare",
    "compare_predictions": "review.compare", "HEADLINE_METRICS": "stats.metrics", "METRIC_LABELS": "stats.metrics",
    "headline_metric": "stats.metrics", "metric_label": "stats.metrics", "format_interval": "stats.metrics",
    "format_number": "stats.metrics",
    "drift_report": "serving.predict",
    "psi_level": "evaluation.stability", "psi_chance_level": "evaluation.stability", "PSI_WARN": "evaluation.stability", "PSI_ALERT": "evaluation.stability",
    "find_leakage": "data.leakage", "LeakageWarning": "data.leakage",
    "derive_market_features": "data.market", "market_columns": "data.market",
    "Sweep": "runs.sweep", "start_sweep": "runs.sweep", "list_sweeps": "runs.sweep", "sweep_results": "runs.sweep",
    "sweep_points": "runs.sweep", "find_knee": "runs.sweep",
    "Cluster": "training.distributed", "gpu_count": "training.distributed",
    "adapter_parameter_count": "model.adapters",
    "write_model_report": "review.report", "REPORT_FILE": "review.report", "DEFAULT_SHAP_ROWS": "review.report",
    "model_scores": "review.facts",
    "curves_by_model": "review.figures", "curves_by_class": "review.figures", "roc_figure": "review.figures",
    "pr_figure": "review.figures", "score_figure": "review.figures", "reliability_figure": "review.figures",
    "gain_figure": "review.figures", "lift_figure": "review.figures", "cost_figure": "review.figures",
    "threshold_confusion_figure": "review.figures", "confusion_figure": "review.figures",
    "fit_figure": "review.figures", "residual_figure": "review.figures", "psi_figure": "review.figures",
    "importance_figure": "review.figures",
    "check_max_length": "model.backbones", "export_run": "serving.export",
    "is_loopback": "access", "configured_password": "access",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'core' has no attribute {name!r}")
