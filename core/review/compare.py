"""Put models side by side on the same test rows: metric table, paired differences, DeLong, configs.

Works on prediction tables (``row``, the target, ``prob_<class>`` or ``prediction``), so two runs,
or a run and its baselines, are compared the same way. Differences and DeLong tests need the same
test rows with the same labels; runs split differently are still listed, without those tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.schema import TableSpec
from ..errors import RunError
from ..evaluation.scorecard import metrics_of
from ..runs import folder as runs
from ..runs.files import read_json
from ..stats.intervals import N_BOOTSTRAP, delong_test, paired_differences
from ..stats.metrics import HEADLINE_METRICS, HIGHER_IS_BETTER


@dataclass(frozen=True)
class Comparison:
    """Tables for people: ``metrics`` (model × metric, with intervals), ``differences`` (each model
    against the first), ``delong`` (binary AUC tests) and ``config`` (settings that differ)."""

    models: list[str]
    metrics: pd.DataFrame
    differences: pd.DataFrame
    delong: pd.DataFrame
    config: pd.DataFrame
    same_rows: bool
    note: str = ""


def spec_from_metrics(metrics: dict, target: str) -> TableSpec:
    """The little of a TableSpec that scoring needs, from a run's metrics.json."""
    classes = tuple(str(c) for c in metrics.get("classes", []))
    positive = metrics.get("positive_class")
    if metrics.get("task") == "binary" and positive is None and len(classes) == 2:
        positive = classes[1]
    return TableSpec(
        target=target,
        task=metrics.get("task", ""),
        roles={},
        classes=classes,
        positive_class=positive,
    )


def _arrays(spec: TableSpec, predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels, outputs) of a prediction table: encoded class ids and probabilities, or values."""
    if spec.task == "regression":
        return predictions[spec.target].to_numpy(dtype=float), predictions["prediction"].to_numpy(
            dtype=float
        )
    index = {label: i for i, label in enumerate(spec.classes)}
    labels = predictions[spec.target].astype(str).map(index).to_numpy()
    proba = predictions[[f"prob_{c}" for c in spec.classes]].to_numpy(dtype=float)
    return labels, proba


def _aligned(spec: TableSpec, tables: dict[str, pd.DataFrame]) -> bool:
    """Do all tables hold the same rows with the same labels (then paired tests are valid)?"""
    first = next(iter(tables.values()))
    for table in tables.values():
        if len(table) != len(first) or not np.array_equal(
            table["row"].to_numpy(), first["row"].to_numpy()
        ):
            return False
        if not table[spec.target].astype(str).equals(first[spec.target].astype(str)):
            return False
    return True


def compare_predictions(
    spec: TableSpec,
    tables: dict[str, pd.DataFrame],
    *,
    n_boot: int = N_BOOTSTRAP,
    configs: dict | None = None,
) -> Comparison:
    """Compare models given their test prediction tables; the first model is the reference."""
    names = list(tables)
    arrays = {name: _arrays(spec, table) for name, table in tables.items()}
    headline = HEADLINE_METRICS.get(spec.task, [])
    rows = []
    for name, (y, outputs) in arrays.items():
        values = metrics_of(spec, y, outputs)
        rows.append(
            {"model": name, **{m: values.get(m, math.nan) for m in headline if m in values}}
        )
    metrics = pd.DataFrame(rows)

    same_rows = len(names) > 1 and _aligned(spec, tables)
    differences = pd.DataFrame(
        columns=["model", "metric", "difference", "low", "high", "p_value", "better"]
    )
    delong = pd.DataFrame(
        columns=["model", "auc_reference", "auc", "difference", "low", "high", "p_value"]
    )
    note = ""
    if len(names) > 1 and not same_rows:
        note = (
            "The models were tested on different rows, so differences are not tested for "
            "significance."
        )
    if same_rows:
        y = arrays[names[0]][0]
        directional = "directional_accuracy" in metrics.columns
        strata = None if spec.task == "regression" else y
        paired = paired_differences(
            lambda index, k: metrics_of(
                spec, y[index], arrays[names[k]][1][index], directional=directional
            ),
            len(y),
            len(names),
            n_boot=n_boot,
            strata=strata,
        )
        records = []
        for name, entry in zip(names[1:], paired, strict=True):
            for metric in headline:
                if metric not in entry:
                    continue
                d = entry[metric]
                low, high = d["interval"] or (math.nan, math.nan)
                better = (
                    d["difference"] > 0
                    if HIGHER_IS_BETTER.get(metric, True)
                    else d["difference"] < 0
                )
                records.append(
                    {
                        "model": name,
                        "metric": metric,
                        "difference": d["difference"],
                        "low": low,
                        "high": high,
                        "p_value": d["p_value"],
                        "better": bool(better),
                    }
                )
        differences = pd.DataFrame(records, columns=differences.columns)
        if spec.task == "binary":
            k = spec.positive_index
            is_positive = y == k
            tests = []
            for name in names[1:]:
                result = delong_test(
                    is_positive, [arrays[names[0]][1][:, k], arrays[name][1][:, k]]
                )
                low, high = result["interval"] or (math.nan, math.nan)
                tests.append(
                    {
                        "model": name,
                        "auc_reference": result["auc"][0],
                        "auc": result["auc"][1],
                        "difference": result["difference"],
                        "low": low,
                        "high": high,
                        "p_value": result["p_value"],
                    }
                )
            delong = pd.DataFrame(tests, columns=delong.columns)
    return Comparison(
        names, metrics, differences, delong, config_differences(configs or {}), same_rows, note
    )


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "roles":
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(configs: dict[str, dict]) -> pd.DataFrame:
    """Settings whose values differ between runs: one row per setting, one column per run."""
    if len(configs) < 2:
        return pd.DataFrame(columns=["setting", *configs])
    flat = {name: _flatten(config) for name, config in configs.items()}
    keys = sorted(set().union(*(f.keys() for f in flat.values())))
    rows = []
    for key in keys:
        values = [flat[name].get(key) for name in configs]
        if any(str(v) != str(values[0]) for v in values[1:]):
            rows.append({"setting": key, **{name: str(flat[name].get(key)) for name in configs}})
    return pd.DataFrame(rows, columns=["setting", *configs])


def compare_runs(run_dirs: list[str | Path], *, n_boot: int = N_BOOTSTRAP) -> Comparison:
    """Compare finished runs on their test predictions; the first run is the reference."""
    if len(run_dirs) < 2:
        raise RunError("Comparing needs at least two runs: pick two or more finished runs.")
    tables, configs, specs = {}, {}, []
    for run_dir in map(Path, run_dirs):
        metrics = runs.read_metrics(run_dir)
        if not metrics:
            raise RunError(f"Run {run_dir.name} has no metrics: pick runs that succeeded.")
        target = runs.load_config(run_dir).data.target  # checked: damaged is a RunError
        config = read_json(run_dir / "config.json")
        spec = spec_from_metrics(metrics, target)
        specs.append(spec)
        tables[run_dir.name] = runs.read_predictions(run_dir)
        configs[run_dir.name] = {k: v for k, v in config.items() if k != "source"}
    first = specs[0]
    for run_dir, spec in zip(run_dirs, specs, strict=True):
        if (spec.task, spec.classes, spec.target) != (first.task, first.classes, first.target):
            raise RunError(
                f"Run {Path(run_dir).name} predicts {spec.target!r} ({spec.task}) but "
                f"{Path(run_dirs[0]).name} predicts {first.target!r} ({first.task}): compare runs "
                "of the same target."
            )
    return compare_predictions(first, tables, n_boot=n_boot, configs=configs)


def compare_with_baselines(run_dir: str | Path, *, n_boot: int = N_BOOTSTRAP) -> Comparison:
    """The fine-tuned run against each baseline fitted in the same run, on the same test rows."""
    run_dir = Path(run_dir)
    metrics = runs.read_metrics(run_dir)
    spec = spec_from_metrics(metrics, runs.load_config(run_dir).data.target)
    tables = {
        "Fine-tuned": runs.read_predictions(run_dir),
        **runs.read_baseline_predictions(run_dir),
    }
    return compare_predictions(spec, tables, n_boot=n_boot)
