"""The sections of the model report, each a list of markup parts drawn from a run's facts.

Data fingerprint, split, model, reproducibility, test metrics, calibration, attributions,
stability and leakage, known limitations: every number comes from :mod:`core.review.facts`, every
chart from :mod:`core.review.figures`, every piece of markup from :mod:`core.review.page`.
"""

from __future__ import annotations

import json
import math
import numbers
from datetime import datetime
from pathlib import Path

from ..stats.metrics import format_interval, format_number, metric_label
from . import facts as f
from . import figures
from .page import Figures, Html, bold, code, esc, items, p, share, table
from .page import facts as pairs_table

MAX_COLUMNS_LISTED = 300  # wider tables list their first columns only: the page must stay readable
NOT_COVERED = (
    "Fairness: outcomes are not compared across protected or vulnerable groups.",
    "Performance after the end of this table (out-of-time monitoring) and under economic "
    "conditions it does not contain.",
    "Data quality upstream of the file: how the table was extracted, joined and labelled.",
    "Robustness to deliberately manipulated inputs, and the behaviour of texts unlike those seen "
    "in training.",
    "Causality: attributions say what moved this model's output, not what drives the outcome.",
    "Approval: this report gathers evidence for a review; it is not a validation sign-off.",
)


def glance(run: f.RunFacts, limits: list[str]) -> list[tuple[str, str]]:
    """The boxes at the top of the page: headline metric, rows, split, backbone, limitations."""
    headline = run.headline
    test, intervals = run.metrics.get("test", {}), run.metrics.get("test_intervals", {})
    rows = run.metrics.get("rows", {})
    return [
        (
            f"Test {metric_label(headline)}",
            format_interval(test.get(headline), intervals.get(headline)),
        ),
        (
            "Rows train / validation / test",
            " / ".join(f"{rows.get(k, 0):,}" for k in ("train", "val", "test")),
        ),
        ("Split", run.metrics.get("split", "not recorded")),
        ("Backbone", Path(run.config.model.backbone).name or run.config.model.backbone),
        ("Known limitations", f"{len(limits)} found below"),
    ]


def data_section(run: f.RunFacts, data_sha: str) -> list:
    """Fingerprint of data.parquet, columns and roles, class balance or target summary, dates."""
    import pandas as pd

    from ..data.schema import parse_datetime, target_labels

    frame, spec = run.frame, run.spec
    parts: list = [
        pairs_table(
            [
                ("Source file", run.raw_config.get("source") or "not recorded"),
                ("data.parquet SHA-256", code(data_sha)),
                ("data.parquet size", f"{(run.path / 'data.parquet').stat().st_size:,} bytes"),
                ("Rows", len(frame)),
                ("Rows with a target value", int(frame[run.target].notna().sum())),
                ("Columns", len(frame.columns)),
                ("Target", run.target),
                ("Task", run.task),
            ]
        )
    ]

    roles = {**spec.roles, run.target: "target"}
    listed = list(frame.columns)[:MAX_COLUMNS_LISTED]
    parts.append(Html("<h3>Columns and roles</h3>"))
    parts.append(
        table(
            ["column", "role", "type", "missing", "distinct values"],
            [
                [
                    column,
                    roles.get(column, "not used"),
                    str(frame[column].dtype),
                    int(frame[column].isna().sum()),
                    int(frame[column].nunique(dropna=True)),
                ]
                for column in listed
            ],
        )
    )
    if len(frame.columns) > len(listed):
        parts.append(p(f"Only the first {len(listed)} of {len(frame.columns)} columns are listed."))
    parts += [p(w, "note") for w in spec.warnings]

    parts.append(
        Html("<h3>Target summary</h3>" if run.task == "regression" else "<h3>Class balance</h3>")
    )
    splits = f.labelled_positions(run)
    if run.task == "regression":
        y = pd.to_numeric(frame[run.target], errors="coerce")
        rows = []
        for name, positions in splits.items():
            values = y.iloc[positions].dropna()
            rows.append(
                [
                    name,
                    len(values),
                    float(values.mean()),
                    float(values.std()),
                    float(values.min()),
                    float(values.median()),
                    float(values.max()),
                ]
            )
        parts.append(table(["rows of", "rows", "mean", "std", "min", "median", "max"], rows))
    else:
        labels = target_labels(frame[run.target])
        rows = []
        for label in spec.classes:
            counts = [(int((labels.iloc[at] == label).sum()), len(at)) for at in splits.values()]
            rows.append(
                [
                    f"{label} (positive)" if label == spec.positive_class else label,
                    *(f"{n:,} ({share(n, size)})" for n, size in counts),
                ]
            )
        parts.append(table(["class", *splits], rows))

    dates = spec.columns("datetime")
    if dates:
        parts.append(Html("<h3>Date range</h3>"))
        rows = []
        for column in dates:
            stamps = parse_datetime(frame[column])
            rows.append(
                [column, _date(stamps.min()), _date(stamps.max()), int(stamps.isna().sum())]
            )
        parts.append(table(["column", "first", "last", "missing or unreadable"], rows))
    return parts


def _date(stamp) -> str:
    """A day as 2024-03-31, a moment within a day with its time; "–" for none."""
    import pandas as pd

    if pd.isna(stamp):
        return "–"
    stamp = pd.Timestamp(stamp)
    return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat(sep=" ")


def split_section(run: f.RunFacts) -> list:
    """How the rows were split, and each split's size, positive share or mean, and dates."""
    import pandas as pd

    from ..data.schema import parse_datetime, target_labels

    data = run.config.data
    split = f.resolved_split(run)
    time_column = split[5:] if split.startswith("time:") else None
    parts: list = [
        pairs_table(
            [
                ("Split", f.split_description(run)),
                (
                    "Configured as",
                    data.split + (f" (resolved to {split})" if data.split == "auto" else ""),
                ),
                ("Time column", time_column or "none (rows are shuffled)"),
                (
                    "Embargo",
                    f"{data.embargo} dates between train | validation | test"
                    if time_column
                    else "not applicable",
                ),
                ("Validation / test fractions", f"{data.val_fraction:g} / {data.test_fraction:g}"),
                ("Split seed", run.config.train.seed),
                ("Positive class", run.spec.positive_class or "not applicable"),
            ]
        )
    ]
    total = sum(len(rows) for rows in run.splits.values())
    header = ["split", "rows", "share"]
    if run.task == "binary":
        header.append(f"share {run.spec.positive_class}")
    elif run.task == "regression":
        header.append(f"mean {run.target}")
    if time_column:
        header += [f"first {time_column}", f"last {time_column}"]
        stamps = parse_datetime(run.frame[time_column])
    rows = []
    for name, positions in run.splits.items():
        part = run.frame.iloc[positions]
        row = [name, len(positions), share(len(positions), total)]
        if run.task == "binary":
            positive = int((target_labels(part[run.target]) == run.spec.positive_class).sum())
            row.append(share(positive, len(part)))
        elif run.task == "regression":
            row.append(float(pd.to_numeric(part[run.target], errors="coerce").mean()))
        if time_column:
            row += [_date(stamps.iloc[positions].min()), _date(stamps.iloc[positions].max())]
        rows.append(row)
    parts.append(table(header, rows))
    return parts


def model_section(run: f.RunFacts) -> list:
    """Backbone, adaptation, head, loss, optimiser and the training history."""
    metrics, model, train = run.metrics, run.config.model, run.config.train
    layers = f.backbone_layers(run.tuner)
    trainable, total = metrics.get("trainable_parameters"), metrics.get("total_parameters")
    lora = f.lora_settings(run)
    depth = model.freeze_depth
    if depth == "auto":  # a run that stopped before its model was built
        freeze = "auto (not resolved: the model was never built)"
    elif depth:
        of = f" of {layers}" if layers else ""
        freeze = f"embeddings + bottom {depth}{of} encoder layers frozen" + (
            ", without adapters" if lora else ""
        )
    elif lora:
        freeze = "0: adapters in every layer"
    else:
        freeze = "nothing frozen: the whole backbone trains"
    pairs: list[tuple[str, object]] = [
        ("Backbone", model.backbone),
        ("Encoder layers", layers or "not known"),
    ]
    if lora:
        pairs += _lora_rows(lora, depth)
    pairs += [
        ("Freeze depth", freeze),
        (
            "Trainable / total parameters",
            f"{format_number(trainable)} / {format_number(total)}"
            + (f" ({share(trainable, total)} trainable)" if trainable and total else ""),
        ),
        (
            "Max length (tokens)",
            f"{format_number(metrics.get('max_length'))}"
            + (
                " (set)"
                if model.max_length
                else " (automatic: 95th percentile of training lengths, capped)"
            ),
        ),
        ("Numbers in the text", model.numeric_in_text),
        (
            "Head",
            f"numeric encoder width {model.d_numeric}, hidden width {model.d_hidden}, dropout "
            f"{model.dropout:g}",
        ),
        ("Loss", train.loss + (f" (gamma {train.focal_gamma:g})" if train.loss == "focal" else "")),
        ("Class weights", train.class_weights),
        (
            "Optimiser",
            f"AdamW, backbone lr {train.lr:g}, head lr {train.head_lr:g}, weight decay "
            f"{train.weight_decay:g}, warm-up {train.warmup_ratio:g}, gradient clip "
            f"{train.max_grad_norm:g}",
        ),
        ("Batch size", train.batch_size),
        (
            "Epochs run / allowed",
            f"{format_number(metrics.get('epochs_run'))} / {train.epochs}"
            + (f", at most {train.max_steps} steps" if train.max_steps else "")
            + f", patience {train.patience}",
        ),
    ]
    parts: list = [pairs_table(pairs)]
    epochs = f.epochs(run)
    if epochs:
        from ..stats.metrics import headline_metric

        metric = headline_metric(run.task)
        best = f.best_epoch(run)
        parts.append(Html("<h3>Training history</h3>"))
        header = ["epoch", "steps", "train loss", f"validation {metric_label(metric)}", "kept"]
        parts.append(
            table(
                header,
                [
                    [
                        e["epoch"],
                        e.get("step"),
                        e.get("train_loss"),
                        e.get("val", {}).get(metric),
                        "best: these weights" if e["epoch"] == best else "",
                    ]
                    for e in epochs
                ],
            )
        )
    return parts


def _lora_rows(lora: dict, freeze_depth: int) -> list[tuple[str, object]]:
    rank, alpha = lora["lora_rank"], lora.get("lora_alpha")
    where = (
        f"in encoder layers {freeze_depth} and above" if freeze_depth else "in every encoder layer"
    )
    targets = lora.get("lora_targets")
    if not targets:
        targets = "every linear layer of each block (default)"
    elif isinstance(targets, (list, tuple)):
        targets = ", ".join(map(str, targets))
    return [
        (
            "Adaptation",
            "LoRA: every pretrained weight frozen; low-rank updates learned beside the "
            f"target layers {where}",
        ),
        ("LoRA rank", rank),
        ("LoRA alpha", f"{alpha:g}" if alpha is not None else f"{2 * rank:g} (default: 2 × rank)"),
        ("LoRA dropout", lora.get("lora_dropout")),
        ("LoRA target layers", str(targets)),
    ]


def reproducibility_section(run: f.RunFacts) -> list:
    """Seed, device, times, weights checksum, the environment writing the report, config.json."""
    status, train = run.status, run.config.train
    weights = run.path / "model" / "model.safetensors"
    pairs: list[tuple[str, object]] = [
        ("Seed (split, head initialisation, shuffling)", train.seed),
        ("Device / precision asked for", f"{train.device} / {train.precision}"),
        (
            "Processes",
            run.metrics.get("processes") or status.get("processes") or train.num_processes,
        ),
        (
            "torch.compile / frozen-prefix cache",
            f"{format_number(train.compile)} / {format_number(train.cache_frozen_prefix)}",
        ),
        ("Created", status.get("created") or "not recorded"),
        ("Started", status.get("started") or "not recorded"),
        ("Finished", status.get("finished") or "not recorded"),
        ("Run time (start to finish)", _duration(status.get("started"), status.get("finished"))),
    ]
    if run.metrics.get("training_seconds") is not None:
        pairs.append(("Training loop time", f"{run.metrics['training_seconds']:.0f} s"))
    if run.metrics.get("peak_memory_mb") is not None:
        pairs.append(("Peak memory", f"{run.metrics['peak_memory_mb']:,.0f} MiB"))
    pairs.append(
        (
            "model.safetensors SHA-256",
            code(f.sha256_file(weights)) if weights.is_file() else "no weights file",
        )
    )
    if f.lora_settings(run):
        pairs.append(
            (
                "Pretrained weights",
                "not in model.safetensors, which holds the adapters and the head: they are "
                f"loaded from {run.config.model.backbone} and checked against the checksum "
                "saved at training",
            )
        )
    return [
        pairs_table(pairs),
        Html("<h3>Software and machine</h3>"),
        p(
            "The run folder does not record the environment it was trained in: these are the "
            "versions and machine that wrote this report. Write the report where the model was "
            "trained to document that environment.",
            "note",
        ),
        pairs_table(f.environment(run)),
        Html(
            "<details><summary>Full run configuration (config.json)</summary>"
            f"<pre>{esc(json.dumps(run.raw_config, indent=2))}</pre></details>"
        ),
    ]


def _duration(start: str | None, end: str | None) -> str:
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return "not recorded"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def metrics_section(run: f.RunFacts) -> list:
    """Test metrics with intervals beside the baselines; the threshold or the confusion matrix."""
    from ..stats.intervals import N_BOOTSTRAP
    from ..stats.metrics import HEADLINE_METRICS, HIGHER_IS_BETTER

    models = f.model_scores(run.metrics)
    test = run.metrics.get("test", {})
    headline = HEADLINE_METRICS.get(run.task, [])
    rows = []
    for metric in [m for m in headline if m in test] + [m for m in test if m not in headline]:
        higher = HIGHER_IS_BETTER.get(metric, True)
        finite = [
            v
            for values, _ in models.values()
            if isinstance(v := values.get(metric), numbers.Real) and math.isfinite(v)
        ]
        best = (max if higher else min)(finite) if len(finite) > 1 else None
        row = [f"{metric_label(metric)} {'↑' if higher else '↓'}"]
        for values, intervals in models.values():
            text = format_interval(values.get(metric), intervals.get(metric))
            row.append(bold(text) if best is not None and values.get(metric) == best else text)
        rows.append(row)
    rows_test = run.metrics.get("rows", {}).get("test", len(run.predictions))
    parts: list = [
        p(
            f"On the {rows_test:,} test rows. Brackets: bootstrap 95% intervals ({N_BOOTSTRAP:,} "
            "resamples"
            + (", stratified by class" if run.task != "regression" else "")
            + "). Bold: the best value of a row. Baselines are fitted on the same training rows "
            "and judged on the same test rows."
        ),
        table(["metric", *models], rows, classes="metrics"),
    ]
    if run.task == "binary":
        parts.append(
            p(
                "Accuracy and F1 here label each row with its more probable class; at the "
                "decision threshold they are below.",
                "note",
            )
        )
    baselines = run.metrics.get("baselines")
    if isinstance(baselines, dict) and isinstance(baselines.get("error"), str):
        parts.append(p(f"The baselines could not be fitted: {baselines['error']}", "warn"))
    if run.task == "binary":
        parts += _threshold_part(run)
    elif run.task == "multiclass":
        parts += _confusion_part(run)
    return parts


def _threshold_part(run: f.RunFacts) -> list:
    decision, positive = run.decision, run.spec.positive_class
    parts: list = [Html("<h3>Decision threshold</h3>")]
    if decision is None:
        return parts + [
            p("No decision threshold is saved for this run (decision.json is missing).", "warn")
        ]
    negative = next(c for c in run.spec.classes if c != positive)
    outcome = f.threshold_outcome(run)
    method = {
        "cost": "least expected cost on validation rows (false positive "
        f"{decision.cost_fp:g}, false negative {decision.cost_fn:g})",
        "approval_rate": f"approve {format_number(decision.approval_rate, 2)} of validation rows",
        "manual": "set by hand",
    }[decision.method]
    approval = outcome["approval_rate"]
    parts.append(
        pairs_table(
            [
                ("Threshold on P(" + positive + ")", format_number(decision.threshold)),
                ("Chosen by", method),
                (
                    "Precision / recall (test)",
                    f"{format_number(outcome['precision'], 3)} / "
                    f"{format_number(outcome['recall'], 3)}",
                ),
                ("Approval rate (test)", share(approval, 1) if math.isfinite(approval) else "–"),
                ("Expected cost per row (test)", format_number(outcome["cost_per_row"])),
            ]
        )
    )
    parts.append(
        p(
            "Confusion matrix of the test rows at this threshold (rows flagged when "
            f"P({positive}) ≥ {decision.threshold:.4f}):"
        )
    )
    parts.append(
        table(
            ["actual \\ predicted", f"{positive} (flagged)", f"{negative} (approved)"],
            [
                [f"{positive}", f"{outcome['tp']:,} (TP)", f"{outcome['fn']:,} (FN)"],
                [f"{negative}", f"{outcome['fp']:,} (FP)", f"{outcome['tn']:,} (TN)"],
            ],
            classes="confusion",
        )
    )
    return parts


def _confusion_part(run: f.RunFacts) -> list:
    from ..stats.metrics import confusion_table

    classes = list(run.spec.classes)
    predicted = [classes[i] for i in f.probabilities(run).argmax(axis=1)]
    counts = confusion_table(f.test_labels(run), predicted, classes)
    return [
        Html("<h3>Confusion matrix (test, most probable class)</h3>"),
        table(
            ["actual \\ predicted", *classes],
            [[c, *counts.loc[c].tolist()] for c in classes],
            classes="confusion",
        ),
    ]


def calibration_section(run: f.RunFacts, plot: Figures) -> list:
    """Reliability of the probabilities; for a regression, predictions against actual values."""
    import numpy as np

    intervals, test = run.metrics.get("test_intervals", {}), run.metrics.get("test", {})
    if run.task == "regression":
        actual = run.predictions[run.target].to_numpy(dtype=float)
        predicted = run.predictions["prediction"].to_numpy(dtype=float)
        error = predicted - actual
        return [
            p(
                "Probabilities do not apply to a regression; instead, how predictions sit against "
                "the actual values."
            ),
            pairs_table(
                [
                    ("Mean error (bias, predicted − actual)", float(error.mean())),
                    ("Median absolute error", float(np.median(np.abs(error)))),
                    ("90th percentile of absolute error", float(np.quantile(np.abs(error), 0.9))),
                ]
            ),
            plot(figures.fit_figure(actual, predicted, run.target), height=420),
        ]
    binary = run.task == "binary"
    bins = f.reliability_bins(run)
    ece, brier = f.recomputed_calibration(run)
    positive = run.spec.positive_class
    what = f"P({positive})" if binary else "the probability of the most probable class"
    figure = figures.reliability_figure(
        bins,
        predicted=f"predicted P({positive})" if binary else "top-class probability",
        observed="observed rate" if binary else "share correct",
    )
    return [
        p(
            f"Test rows binned by {what} in tenths; each point compares the mean predicted "
            "probability with how often it came true (marker size: rows in the bin). Points on the "
            "diagonal mean a predicted 30% happens 30% of the time."
        ),
        pairs_table(
            [
                (
                    "Expected calibration error (ECE)",
                    format_interval(test.get("ece"), intervals.get("ece")),
                ),
                ("Brier score", format_interval(test.get("brier"), intervals.get("brier"))),
                (
                    "ECE / Brier recomputed from predictions.csv",
                    f"{format_number(ece)} / {format_number(brier)}",
                ),
            ]
        ),
        plot(figure, height=420),
        table(
            ["bin", "rows", "mean predicted", "observed"],
            [
                [
                    f"{b['bin_low']:.1f}–{b['bin_high']:.1f}",
                    int(b["rows"]),
                    b["mean_predicted"],
                    b["observed_rate"],
                ]
                for b in bins
            ],
        ),
    ]


def attributions_section(run: f.RunFacts, found: f.Attributions | str, plot: Figures) -> list:
    """Mean |SHAP| of each column on the first test rows, or why there is none."""
    if isinstance(found, str):
        return [p(found, "note")]
    output = f"P({found.output})" if run.task != "regression" else f"the predicted {found.output}"
    figure = figures.importance_figure(
        [c for c, _, _ in found.importance],
        [v for _, v, _ in found.importance],
        output,
        rows=found.rows,
    )
    return [
        p(
            f"SHAP values (permutation algorithm) of the first {found.rows} test rows, one feature "
            f"per input column (a text column counts as one). The explained output is {output}; "
            f"the reference is {found.background}. Mean |SHAP| ranks how much each column moved "
            "the output on these rows; mean SHAP shows the usual direction."
        ),
        plot(figure, height=120 + 30 * len(found.importance)),
        table(["column", "mean |SHAP|", "mean SHAP"], [list(row) for row in found.importance]),
        p(f"Computed in {found.seconds:.1f} s with {found.backbone_passes:,} backbone passes."),
    ]


def stability_section(run: f.RunFacts) -> list:
    """PSI of each input and of the score, test against train, and the leakage warnings."""
    stability = run.metrics.get("stability") or {}
    parts: list = [Html("<h3>Population stability (PSI), test rows against training rows</h3>")]
    if "inputs" not in stability:
        missing = "No stability report was recorded for this run."
        parts.append(p(stability.get("error", missing), "note"))
    else:
        chance = stability.get("chance_level")
        parts.append(
            p(
                "Under 0.1 stable, 0.1–0.25 watch, 0.25 and above a real shift; a PSI "
                "that chance alone reaches one time in twenty at these split sizes counts "
                "as stable"
                + (f" (with no shift at all, about {chance:.2f} on average)." if chance else ".")
            )
        )
        parts.append(
            table(
                ["input", "PSI", "level"],
                [
                    [row.get("input"), row.get("psi"), _level(row.get("level", ""))]
                    for row in stability["inputs"]
                ],
            )
        )
    parts.append(Html("<h3>Leakage checks</h3>"))
    warnings = run.metrics.get("warnings") or []
    if not warnings:
        parts.append(
            p(
                "No leakage warnings from the four checks: a column that alone predicts "
                "the target, an identifier used as a feature, a date recorded after the "
                "prediction time, and rows repeated across the splits."
            )
        )
    else:
        parts.append(items([w.get("message", "") for w in warnings], "warnings"))
    return parts


def _level(level: str) -> Html:
    return Html(f'<span class="level {esc(level)}">{esc(level)}</span>')


def limitations_section(limits: list[str], found: f.Attributions | str) -> list:
    """The limitations found, then what the report does not cover."""
    scope = (
        []
        if isinstance(found, str)
        else [
            f"Attributions beyond the first {found.rows} test rows: the ranking is of those rows "
            "only, against one summary reference row."
        ]
    )
    return [
        items(limits, "limits")
        if limits
        else p(
            "No check found a limitation in this run's own numbers; what follows still applies."
        ),
        Html("<h3>What this report does not cover</h3>"),
        items([*NOT_COVERED, *scope]),
    ]
