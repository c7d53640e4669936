"""Quality benchmark: FinTune vs. the classical reference, K-fold, on every sample table.

    python -m bench.quality                                  # 5 folds, all four sample tables
    python -m bench.quality --datasets credit --folds 5 --variants default,frozen
    python -m bench.quality --datasets market --variants default,model.freeze_depth=6
    python -m bench.quality --set train.lr=1e-4 --set model.freeze_depth=3 --json out.json

Folds. Tables split at random get stratified K-fold (plain K-fold for regression); tables split
by a date (``time:<column>``, e.g. market) get forward-chaining folds: the rows, in date order,
are cut into K + 1 blocks at date boundaries and fold i tests on block i + 1 after learning from
blocks 0..i (an expanding window, so every test row is later than every train and validation
row). Each fold's validation rows (early stopping) are carved out of its non-test rows:
stratified at random (``data.val_fraction`` of them, 15% by default), or for time folds the
latest ``data.val_fraction`` of the history. FinTune and the reference (LightGBM, or TF-IDF +
logistic regression for text-only tables; ``core.evaluation.baselines.run_baseline``) get
exactly the same train / validation / test rows of the same frame.

Variants. ``--variants`` takes names from VARIANTS or inline overrides, ``section.key=value``
joined by ``+`` (``model.freeze_depth=6+train.lr=1e-4``). Settings apply in this order: the
defaults, ``--epochs`` / ``--precision`` / ``--freeze``, the variant, then every ``--set``.

Summary per dataset x variant: mean and sd of the test metric on each side over the folds; the
paired difference (ours - reference) with a 95% Student-t interval over the K per-fold
differences, and the same interval with the Nadeau-Bengio correction for the overlap of the
folds' training rows (wider, the more honest of the two); wins / losses; median train seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
DATASETS = {
    "credit": ("credit_risk.csv", "credit_risk", "random"),
    "sentiment": ("fin_sentiment.csv", "label", "random"),
    "fraud": ("card_fraud.csv", "is_fraud", "random"),
    "market": ("market_daily.csv", "next_day_direction", "time:date"),
}

# Design alternatives to justify the defaults: the backbone frozen (only the head learns), the
# numbers also written into the text (binned) besides the numeric encoder, and for imbalanced
# targets the loss (focal) and the class weights (balanced, none) against the default (auto).
# Each entry is a partial config: {"model": {...}, "train": {...}, "data": {...}}.
VARIANTS: dict[str, dict[str, dict]] = {
    "default": {},
    "frozen": {"model": {"freeze_depth": 6}},
    "numbers-in-text": {"model": {"numeric_in_text": "always"}},
    "focal": {"train": {"loss": "focal"}},
    "balanced": {"train": {"class_weights": "balanced"}},
    "no-weights": {"train": {"class_weights": "none"}},
}

SECTIONS = ("data", "model", "train")
FOLD_SEED = 0  # fold assignment; the models keep their own seeds (train.seed)
LEVEL = 0.95


# --------------------------------------------------------------------------- folds (pure)


def make_folds(
    n_rows: int,
    k: int,
    *,
    val_fraction: float = 0.15,
    strata: np.ndarray | None = None,
    times: np.ndarray | None = None,
    embargo: int = 0,
    seed: int = FOLD_SEED,
) -> list[dict[str, np.ndarray]]:
    """K folds over positions ``0..n_rows-1``: ``[{"train", "val", "test"}]`` of sorted positions.

    With ``times`` (one timestamp per row, no missing values) the folds are forward-chaining, cut
    at date boundaries, and ``embargo`` distinct dates are left out after the train rows and after
    the validation rows; otherwise stratified by ``strata`` (class labels) when given, else plain
    shuffled K-fold. Raises ValueError when the rows cannot make K non-empty folds.
    """
    if k < 2:
        raise ValueError(f"--folds is {k}: use 2 or more.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction is {val_fraction}: choose between 0 and 1.")
    if times is not None:
        return _time_folds(np.asarray(times), k, val_fraction, embargo)
    return _random_folds(n_rows, k, val_fraction, strata, seed)


def _random_folds(n_rows, k, val_fraction, strata, seed) -> list[dict[str, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    if n_rows < 2 * k:
        raise ValueError(f"{n_rows} rows are too few for {k} folds with validation rows.")
    positions = np.arange(n_rows)
    if strata is not None:
        strata = np.asarray(strata)
        if len(strata) != n_rows:
            raise ValueError("strata must hold one label per row.")
        if _smallest_class(strata) < k:
            strata = None  # a class rarer than the folds cannot be spread over them
    splitter = (
        StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        if strata is not None
        else KFold(n_splits=k, shuffle=True, random_state=seed)
    )
    folds = []
    for i, (rest, test) in enumerate(splitter.split(positions, strata)):
        rest_strata = strata[rest] if strata is not None else None
        if rest_strata is not None and _smallest_class(rest_strata) < 2:
            rest_strata = None
        train, val = train_test_split(
            rest, test_size=val_fraction, random_state=seed + i, stratify=rest_strata
        )
        folds.append({"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)})
    return folds


def _smallest_class(labels: np.ndarray) -> int:
    return int(pd.Series(labels).value_counts().min())


def _time_folds(times, k, val_fraction, embargo) -> list[dict[str, np.ndarray]]:
    order = np.argsort(times, kind="stable")
    stamps = times[order]
    n = len(stamps)
    # Block boundaries at the end of a date, so no date falls on both sides of a cut.
    cuts = [_snap(stamps, round(j * n / (k + 1))) for j in range(1, k + 1)] + [n]
    folds = []
    for i in range(k):
        history_end, test_end = cuts[i], cuts[i + 1]
        val_start = _snap(stamps, round(history_end * (1 - val_fraction)))
        parts = {
            "train": (0, val_start),
            "val": (_skip_dates(stamps, val_start, embargo), history_end),
            "test": (_skip_dates(stamps, history_end, embargo), test_end),
        }
        fold = {name: np.sort(order[start:end]) for name, (start, end) in parts.items()}
        for name, rows in fold.items():
            if len(rows) == 0:
                raise ValueError(
                    f"Time fold {i + 1} of {k} has no {name} rows: too few distinct dates for "
                    f"{k} folds"
                    + (f" with an embargo of {embargo} dates" if embargo else "")
                    + "; use fewer folds."
                )
        folds.append(fold)
    return folds


def _snap(stamps: np.ndarray, position: int) -> int:
    """``position`` moved forward to the end of the date the row before it belongs to."""
    if position <= 0:
        return 0
    if position >= len(stamps):
        return len(stamps)
    return int(np.searchsorted(stamps, stamps[position - 1], side="right"))


def _skip_dates(stamps: np.ndarray, position: int, n_dates: int) -> int:
    """The position ``n_dates`` distinct dates after ``position``."""
    if n_dates <= 0 or position >= len(stamps):
        return position
    ahead = np.unique(stamps[position:])
    if len(ahead) <= n_dates:
        return len(stamps)
    return int(np.searchsorted(stamps, ahead[n_dates - 1], side="right"))


def table_folds(frame: pd.DataFrame, spec, data_config, k: int, seed: int = FOLD_SEED):
    """Folds of a table's labelled rows, as positions into ``frame``, and their kind in words."""
    from core.data.schema import parse_datetime, target_labels
    from core.data.split import resolve_split

    labelled = np.flatnonzero(frame[spec.target].notna().to_numpy())
    split = resolve_split(spec, data_config)
    if split.startswith("time:"):
        column = split[5:]
        times = parse_datetime(frame[column].iloc[labelled])
        keep = times.notna().to_numpy()
        if keep.mean() < 0.5:
            raise ValueError(f"Column {column!r} does not hold dates: it cannot order time folds.")
        labelled = labelled[keep]
        folds = make_folds(
            len(labelled),
            k,
            val_fraction=data_config.val_fraction,
            times=times[keep].to_numpy(),
            embargo=data_config.embargo,
        )
        embargo = f", embargo {data_config.embargo} dates" if data_config.embargo else ""
        kind = f"time-ordered by {column!r} (expanding window{embargo})"
    else:
        strata = None
        if spec.task != "regression":
            strata = target_labels(frame[spec.target].iloc[labelled]).to_numpy()
        folds = make_folds(
            len(labelled), k, val_fraction=data_config.val_fraction, strata=strata, seed=seed
        )
        kind = "stratified" if strata is not None else "random"
    return [{name: labelled[rows] for name, rows in fold.items()} for fold in folds], kind


# --------------------------------------------------------------------------- settings


def parse_value(text: str):
    """``6`` -> 6, ``1e-4`` -> 0.0001, ``true`` / ``false`` / ``none`` -> bool / None, else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``["model.freeze_depth=6", "train.lr=1e-4"]`` -> ``{"model": {...}, "train": {...}}``."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name or section not in SECTIONS:
            raise ValueError(
                f"Override {item!r} is not section.key=value with a section of "
                f"{', '.join(SECTIONS)} (e.g. model.freeze_depth=6)."
            )
        out.setdefault(section, {})[name] = parse_value(value)
    return out


def merge(*layers: dict[str, dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for layer in layers:
        for section, values in layer.items():
            out.setdefault(section, {}).update(values)
    return out


def variant_overrides(name: str) -> dict[str, dict]:
    """A VARIANTS entry, or inline overrides ``section.key=value+section.key=value``."""
    if name in VARIANTS:
        return VARIANTS[name]
    if "=" in name:
        return parse_overrides(name.split("+"))
    raise ValueError(
        f"Variant {name!r} is unknown: use one of {', '.join(VARIANTS)} or inline overrides "
        "such as model.freeze_depth=6+train.lr=1e-4."
    )


def build_config(target: str, split: str, overrides: dict[str, dict]):
    """The default config for a table with ``overrides`` applied; a clear error for a typo."""
    import dataclasses

    from core.config import default_config
    from core.errors import ConfigError

    config = default_config(target, split=split)
    for section, values in overrides.items():
        known = {f.name for f in dataclasses.fields(getattr(config, section))}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{section}.{unknown[0]} is not a setting: {section} has "
                f"{', '.join(sorted(known))}."
            )
    try:
        return config.replace(**overrides)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


def load_table(name: str, max_rows: int | None) -> pd.DataFrame:
    """A sample table; past ``max_rows``, a stratified sample (random splits) or the latest rows
    (time splits, so the dates stay contiguous)."""
    from core.data.read import read_table
    from core.data.schema import parse_datetime

    filename, target, split = DATASETS[name]
    frame = read_table(SAMPLES / filename)
    if not max_rows or len(frame) <= max_rows:
        return frame
    if split.startswith("time:"):
        order = np.argsort(parse_datetime(frame[split[5:]]).to_numpy(), kind="stable")
        return frame.iloc[np.sort(order[-max_rows:])]
    fraction = max_rows / len(frame)
    return (
        frame.groupby(target, group_keys=False).sample(frac=fraction, random_state=0).sort_index()
    )


def our_settings(config) -> dict:
    """What defines our side of a run, as printed and written to JSON."""
    m, t = config.model, config.train
    settings = {
        "backbone": m.backbone,
        "freeze_depth": m.freeze_depth,
        "max_epochs": t.epochs,
        "patience": t.patience,
        "lr": t.lr,
        "head_lr": t.head_lr,
        "batch_size": t.batch_size,
        "precision": t.precision,
        "precision_used": _precision_used(t),
        "class_weights": t.class_weights,
        "loss": t.loss,
        "numeric_in_text": m.numeric_in_text,
    }
    for optional in ("table_encoding", "lora_rank"):  # settings other engineers may add or use
        value = getattr(m, optional, None)
        if value is not None:
            settings[optional] = value
    return settings


def _precision_used(train_config) -> str:
    try:
        from core.training.devices import autocast_dtype, resolve_device

        dtype = autocast_dtype(resolve_device(train_config.device), train_config.precision)
    except Exception as exc:  # a label only: never stop the benchmark for it
        return f"? ({exc.__class__.__name__})"
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.")


def reference_settings() -> dict:
    """Whatever fixed settings core.evaluation.baselines exposes (module-level *PARAMS* dicts)."""
    from core.evaluation import baselines

    return {
        name: value
        for name, value in vars(baselines).items()
        if name.isupper() and "PARAMS" in name and isinstance(value, dict)
    }


# --------------------------------------------------------------------------- running


def run_fold(frame, config, fold: dict[str, np.ndarray]) -> dict:
    """Fit FinTune and the reference on one fold's rows; their test metrics and seconds."""
    from core.evaluation.baselines import run_baseline
    from core.model.trees import has_tree_features
    from core.training.estimator import FineTuner

    started = time.perf_counter()
    tuner = FineTuner(config).fit(frame, splits=fold)
    ours_seconds = time.perf_counter() - started
    parts = {name: frame.iloc[rows] for name, rows in fold.items()}
    ours = tuner.evaluate(parts["test"])
    started = time.perf_counter()
    reference_name, reference = run_baseline(tuner.spec_, parts)
    reference_seconds = time.perf_counter() - started
    metric = "rmse" if tuner.spec_.task == "regression" else "roc_auc"
    # Each part of a blended model on its own: "network_roc_auc", "trees_roc_auc".
    parts_metrics = tuner.evaluate_parts(parts["test"])
    extras = {
        f"{part}_{metric_name}": _number(value)
        for part, values in parts_metrics.items()
        for metric_name, value in values.items()
        if metric_name in ("roc_auc", "rmse")
    }
    if not parts_metrics and metric in ours:
        # The blend was not kept (or not tried): the network alone is the run's model, and the
        # fold still counts in the network's mean (leaving it out biased that mean upwards).
        extras[f"network_{metric}"] = _number(ours[metric])
    if tuner.blend_ is not None:
        extras["blend_weight"] = tuner.blend_["weight"]
    elif tuner.config.model.trees != "off" and has_tree_features(tuner.spec_):
        extras["blend_weight"] = 1.0  # trees tried, not kept: all weight on the network
    info = {}  # whatever else run_baseline reports (settings, trees kept), one level flattened
    for key, value in reference.items():
        if key not in ("val", "test"):
            info.update(value if isinstance(value, dict) else {key: value})
    row = {
        "task": tuner.spec_.task,
        "metric": metric,
        "rows": {name: len(rows) for name, rows in fold.items()},
        "ours": _number(ours.get(metric)),
        "reference_name": reference_name,
        "reference": _number(reference["test"].get(metric)),
        "ours_val": _number(tuner.evaluate(parts["val"]).get(metric)),
        "reference_val": _number(reference["val"].get(metric)),
        "ours_seconds": ours_seconds,
        "reference_seconds": reference_seconds,
        "epochs_run": len(tuner.history_),
        "ours_extra": extras,
        "reference_info": info,
    }
    for side, metrics in (("ours", ours), ("reference", reference["test"])):
        for name in ("pr_auc", "accuracy", "log_loss"):
            if name in metrics:
                row[f"{side}_{name}"] = _number(metrics[name])
    return row


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- summary


def _t_interval(values: np.ndarray, variance_factor: float) -> list[float] | None:
    """Mean +- t(K-1) * sqrt(variance_factor * s^2) (variance_factor 1/K: the plain t interval)."""
    from scipy.stats import t

    k = len(values)
    if k < 2:
        return None
    half = t.ppf(0.5 + LEVEL / 2, k - 1) * math.sqrt(variance_factor * np.var(values, ddof=1))
    mean = float(np.mean(values))
    return [mean - half, mean + half]


def summarise(rows: list[dict]) -> dict:
    """One dataset x variant: per side mean / sd, paired difference and intervals, wins, seconds.

    Folds where either side's metric is undefined (NaN: one class only in the test fold) are left
    out of the paired statistics and counted in ``folds_undefined``.
    """
    metric = rows[0]["metric"]
    higher_is_better = metric != "rmse"
    ours = np.array([_nan(r["ours"]) for r in rows])
    reference = np.array([_nan(r["reference"]) for r in rows])
    paired = np.isfinite(ours) & np.isfinite(reference)
    differences = ours[paired] - reference[paired]
    better = differences if higher_is_better else -differences
    k = len(differences)
    # Nadeau & Bengio (2003): folds share training rows, so the per-fold differences are
    # correlated; the corrected variance uses 1/K + n_test/n_train instead of 1/K.
    ratio = np.mean([r["rows"]["test"] / (r["rows"]["train"] + r["rows"]["val"]) for r in rows])
    out = {
        "dataset": rows[0]["dataset"],
        "variant": rows[0]["variant"],
        "task": rows[0]["task"],
        "metric": metric,
        "folds": len(rows),
        "folds_undefined": int((~paired).sum()),
        "fold_kind": rows[0]["fold_kind"],
        "rows": rows[0]["rows_total"],
        "reference_name": rows[0]["reference_name"],
        "ours_mean": _mean(ours),
        "ours_sd": _sd(ours),
        "reference_mean": _mean(reference),
        "reference_sd": _sd(reference),
        "difference_mean": float(np.mean(differences)) if k else None,
        "difference_sd": float(np.std(differences, ddof=1)) if k > 1 else None,
        "difference_interval_t": _t_interval(differences, 1 / k) if k else None,
        "difference_interval_corrected": _t_interval(differences, 1 / k + ratio) if k else None,
        "interval": f"{LEVEL:.0%} Student t over the per-fold paired differences (df K-1); "
        "corrected: Nadeau-Bengio variance factor 1/K + n_test/n_train",
        "wins": int((better > 1e-12).sum()),
        "losses": int((better < -1e-12).sum()),
        "ties": int((np.abs(better) <= 1e-12).sum()),
        "ours_seconds_median": float(np.median([r["ours_seconds"] for r in rows])),
        "reference_seconds_median": float(np.median([r["reference_seconds"] for r in rows])),
        "epochs_run_mean": float(np.mean([r["epochs_run"] for r in rows])),
    }
    extra_names = sorted({name for r in rows for name in r["ours_extra"]})
    out["ours_extra"] = {
        name: {
            "mean": _mean(np.array([_nan(r["ours_extra"].get(name)) for r in rows])),
            "sd": _sd(np.array([_nan(r["ours_extra"].get(name)) for r in rows])),
        }
        for name in extra_names
    }
    info_names = sorted({name for r in rows for name in r["reference_info"]})
    out["reference_info"] = {}
    for name in info_names:
        values = [r["reference_info"].get(name) for r in rows]
        numbers = [_number(v) for v in values if not isinstance(v, bool)]
        if values and all(v is not None for v in numbers) and len(numbers) == len(values):
            out["reference_info"][name] = {"median": float(np.median(numbers)), "per_fold": values}
        else:
            out["reference_info"][name] = values[0] if _all_equal(values) else values
    return out


def _all_equal(values: list) -> bool:
    return all(json.dumps(v, default=str) == json.dumps(values[0], default=str) for v in values)


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.mean(finite)) if len(finite) else None


def _sd(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else None


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _mean_sd(mean, sd) -> str:
    return f"{_fmt(mean)} ± {_fmt(sd)}"


def _interval_text(interval) -> str:
    if not interval:
        return "–"
    return f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def print_table(headers: list[str], rows: list[list[str]], right: set[int]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def print_summary(summaries: list[dict]) -> None:
    headers = [
        "dataset",
        "variant",
        "folds",
        "metric",
        "FinTune mean ± sd",
        "reference mean ± sd",
        "diff (ours-ref)",
        "95% t CI",
        "corrected CI",
        "W/L/T",
        "ours s",
        "ref s",
        "epochs",
    ]
    table = []
    for s in summaries:
        folds = str(s["folds"]) + (
            f" ({s['folds_undefined']} undef.)" if s["folds_undefined"] else ""
        )
        table.append(
            [
                s["dataset"],
                s["variant"],
                folds,
                s["metric"],
                _mean_sd(s["ours_mean"], s["ours_sd"]),
                _mean_sd(s["reference_mean"], s["reference_sd"]),
                "–" if s["difference_mean"] is None else f"{s['difference_mean']:+.3f}",
                _interval_text(s["difference_interval_t"]),
                _interval_text(s["difference_interval_corrected"]),
                f"{s['wins']}/{s['losses']}/{s['ties']}",
                f"{s['ours_seconds_median']:.1f}",
                f"{s['reference_seconds_median']:.1f}",
                f"{s['epochs_run_mean']:.1f}",
            ]
        )
    print_table(headers, table, right={2, 6, 9, 10, 11, 12})
    print(
        "\ndiff: FinTune minus reference on the same test fold (roc_auc: higher is better; rmse: "
        "lower is better, W/L count the better side).\n95% t CI: Student t over the K paired "
        "differences (df K-1); corrected CI: the same with the Nadeau-Bengio variance factor "
        "1/K + n_test/n_train,\nwhich allows for the folds sharing training rows (use it to "
        "decide). ours s / ref s: median train seconds per fold (ours: backbone load + fit; "
        "reference: fit + predict)."
    )
    for s in summaries:
        notes = [f"{s['dataset']} ({s['rows']} rows, {s['task']}, {s['fold_kind']} folds)"]
        notes.append(f"reference = {s['reference_name']}")
        for name, stats in s["ours_extra"].items():
            notes.append(f"FinTune {name} {_mean_sd(stats['mean'], stats['sd'])}")
        print(f"  {s['variant']:<16} " + "; ".join(notes))


def print_settings(
    configs: dict[tuple[str, str], object], overrides: dict[str, dict], summaries: list[dict]
) -> None:
    print("\nSettings")
    seen = set()
    for (_, variant), config in configs.items():
        settings = our_settings(config)
        key = (variant, json.dumps(settings, sort_keys=True, default=str))
        if key in seen:
            continue
        seen.add(key)
        text = ", ".join(f"{k} {v}" for k, v in settings.items())
        changes = json.dumps(overrides[variant]) if overrides[variant] else "none"
        print(f"  FinTune [{variant}] {text}; overrides {changes}")
    exposed = reference_settings()
    for name, value in exposed.items():
        print(f"  reference {name}: {json.dumps(value, default=str)}")
    reported = False
    for s in summaries:
        items = []
        for name, value in s["reference_info"].items():
            if isinstance(value, dict) and "median" in value:
                values = ", ".join(str(v) for v in value["per_fold"])
                items.append(f"{name} median {value['median']:g} (folds: {values})")
            else:
                items.append(f"{name} {json.dumps(value, default=str)}")
        if items:
            reported = True
            print(f"  {s['reference_name']} [{s['dataset']} {s['variant']}] " + "; ".join(items))
    if not exposed and not reported:
        print(
            "  reference: parameters as fixed in core.evaluation.baselines (run_baseline reports "
            "none); fitted on the fold's train rows, given the same val and test rows"
        )


# --------------------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    parser.add_argument("--folds", type=int, default=5, help="K (default 5)")
    parser.add_argument(
        "--variants",
        default="default",
        help=f"comma-separated: {', '.join(VARIANTS)}, or inline section.key=value[+...]",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting for every variant, e.g. model.freeze_depth=6 (repeatable)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (max, early stops)")
    parser.add_argument("--precision", default=None, help="train.precision: auto|fp32|bf16|fp16")
    parser.add_argument("--freeze", type=int, default=None, help="model.freeze_depth")
    parser.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="larger tables: a stratified sample (time tables: the latest rows)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write fold rows and summary")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        unknown = [d for d in datasets if d not in DATASETS]
        if unknown:
            raise ValueError(f"Dataset {unknown[0]!r} is unknown: use {', '.join(DATASETS)}.")
        flags = {"train": {}, "model": {}}
        if args.epochs is not None:
            flags["train"]["epochs"] = args.epochs
        if args.precision is not None:
            flags["train"]["precision"] = args.precision
        if args.freeze is not None:
            flags["model"]["freeze_depth"] = args.freeze
        everywhere = parse_overrides(args.overrides)
        overrides = {v: merge(flags, variant_overrides(v), everywhere) for v in variants}
        overrides = {v: {s: x for s, x in o.items() if x} for v, o in overrides.items()}
        # Every config is built before any training, so a typo fails in a second, not an hour.
        configs = {
            (d, v): build_config(DATASETS[d][1], DATASETS[d][2], overrides[v])
            for d in datasets
            for v in variants
        }
    except ValueError as exc:
        raise SystemExit(f"bench.quality: {exc}") from None

    from core.data.schema import describe_table
    from core.data.split import resolve_split

    fold_rows: list[dict] = []
    summaries: list[dict] = []
    started_all = time.perf_counter()
    widths = {
        "dataset": max(7, *map(len, datasets)),
        "variant": max(7, *map(len, variants)),
        "sizes": 14,
    }
    print("Per fold")
    print(
        f"{'dataset':<{widths['dataset']}}  {'variant':<{widths['variant']}}  {'fold':>4}  "
        f"{'train/val/test':<{widths['sizes']}}  {'metric':<7}  {'FinTune':>7}  {'ref':>7}  "
        f"{'diff':>7}  {'ours s':>7}  {'ref s':>6}  {'epochs':>6}  extra",
        flush=True,
    )
    for dataset in datasets:
        frame = load_table(dataset, args.max_rows)
        for variant in variants:
            config = configs[(dataset, variant)]
            spec = describe_table(frame, config.data)
            folds, kind = table_folds(frame, spec, config.data, args.folds)
            split = resolve_split(spec, config.data)
            n_rows = len(np.unique(np.concatenate([f[p] for f in folds for p in f])))
            rows = []
            for i, fold in enumerate(folds, start=1):
                sizes = "/".join(str(len(fold[p])) for p in ("train", "val", "test"))
                log(
                    f"[{dataset} {variant}] fold {i}/{len(folds)} ({kind}): train/val/test "
                    f"{sizes} rows ... (elapsed {time.perf_counter() - started_all:.0f} s)"
                )
                row = run_fold(frame, config, fold)
                row.update(
                    dataset=dataset,
                    variant=variant,
                    fold=i,
                    fold_kind=kind,
                    rows_total=n_rows,  # rows in some fold (labelled, dated if by time)
                )
                if split.startswith("time:"):
                    dates = frame[split[5:]].iloc[fold["test"]]
                    row["test_dates"] = [str(dates.min()), str(dates.max())]
                period = f", test {' to '.join(row['test_dates'])}" if "test_dates" in row else ""
                rows.append(row)
                log(
                    f"[{dataset} {variant}] fold {i}/{len(folds)} done: FinTune {row['metric']} "
                    f"{_fmt(row['ours'])} in {row['ours_seconds']:.1f} s "
                    f"({row['epochs_run']} epochs), {row['reference_name']} "
                    f"{_fmt(row['reference'])} in {row['reference_seconds']:.1f} s{period}"
                )
                diff = (
                    None
                    if row["ours"] is None or row["reference"] is None
                    else row["ours"] - row["reference"]
                )
                extras = "".join(
                    f"  {name} {_fmt(value)}" for name, value in row["ours_extra"].items()
                )
                diff_text = "–" if diff is None else f"{diff:+.3f}"
                print(
                    f"{dataset:<{widths['dataset']}}  {variant:<{widths['variant']}}  {i:>4}  "
                    f"{sizes:<{widths['sizes']}}  {row['metric']:<7}  {_fmt(row['ours']):>7}  "
                    f"{_fmt(row['reference']):>7}  {diff_text:>7}  "
                    f"{row['ours_seconds']:>7.1f}  {row['reference_seconds']:>6.1f}  "
                    f"{row['epochs_run']:>6}{extras}",
                    flush=True,
                )
            fold_rows.extend(rows)
            summaries.append(summarise(rows))
    print(f"\nSummary ({args.folds} folds per table; {time.perf_counter() - started_all:.0f} s)")
    print_summary(summaries)
    print_settings(configs, overrides, summaries)
    if args.json:
        payload = {
            "command": sys.argv,
            "folds": args.folds,
            "max_rows": args.max_rows,
            "settings": {
                f"{d}/{v}": {"ours": our_settings(c), "overrides": overrides[v]}
                for (d, v), c in configs.items()
            },
            "reference_settings": reference_settings(),
            "fold_rows": fold_rows,
            "summary": summaries,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
