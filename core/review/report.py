"""A model-risk report of one finished run: a single self-contained HTML file for reviewers.

:func:`write_model_report` reads the run folder (config, data, status, metrics, predictions,
decision, history) and writes one HTML page: a fingerprint of the data, the split, the model, what
is needed to reproduce it, test metrics with 95% intervals beside the baselines, calibration, SHAP
attributions of a few test rows, stability and leakage checks, and the limitations these facts
imply. CSS and plotly.js are inlined, so the file opens offline and can be archived or mailed.

Every string that comes from the user's data or settings (column names, class labels, file
names, messages that quote them) goes through :func:`html.escape` before it reaches the page.
Heavy libraries are imported inside the functions that need them, so the CLI stays quick to start.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import numbers
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from ..config import LORA_FIELDS
from ..errors import ConfigError, FinTuneError, RunError
from ..stats.metrics import format_interval, format_number, metric_label

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"  # written into the run folder unless another output is given
DEFAULT_SHAP_ROWS = 20
MAX_COLUMNS_LISTED = 300  # wider tables list their first columns only: the page must stay readable
TRUNCATION_SAMPLE = 5000  # rows whose serialised text is tokenised to measure truncation
PACKAGES = ("torch", "transformers", "pandas", "numpy", "scikit-learn", "shap", "lightgbm", "plotly", "accelerate",
            "safetensors", "fintune")
WIDE_INTERVAL = 0.10  # classification: a headline interval wider than this is called wide
RELATIVE_WIDE_INTERVAL = 0.25  # regression: interval width over the value
SMALL_TEST_ROWS = 200
MINORITY_SHARE = 0.20  # a class under this share of labelled rows makes the target imbalanced
FEW_EVENTS = 30  # positive test rows below which precision and recall move a lot per row
POOR_CALIBRATION_ECE = 0.05
NOT_COVERED = (
    "Fairness: outcomes are not compared across protected or vulnerable groups.",
    "Performance after the end of this table (out-of-time monitoring) and under economic conditions it does not "
    "contain.",
    "Data quality upstream of the file: how the table was extracted, joined and labelled.",
    "Robustness to deliberately manipulated inputs, and the behaviour of texts unlike those seen in training.",
    "Causality: attributions say what moved this model's output, not what drives the outcome.",
    "Approval: this report gathers evidence for a review; it is not a validation sign-off.",
)


class _Html(str):
    """Markup built here from escaped parts: table cells pass it through as it is."""


def _esc(value) -> str:
    """``value`` as text that is safe anywhere in HTML (element content or a quoted attribute)."""
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------- the facts of a run


@dataclass
class _Run:
    """Everything read from the run folder once, for the sections to draw from."""

    path: Path
    raw_config: dict
    config: object  # RunConfig
    status: dict
    metrics: dict
    frame: object  # pandas.DataFrame: data.parquet
    spec: object  # TableSpec, settled as the engine settles it
    splits: dict  # name -> row positions, as the engine split them
    predictions: object  # pandas.DataFrame: predictions.csv
    decision: object  # Decision or None
    history: list
    tuner: object = None  # the saved FineTuner, when it loads
    notes: list[str] = field(default_factory=list)  # limitations found while reading

    @property
    def target(self) -> str:
        return self.spec.target

    @property
    def task(self) -> str:
        return self.metrics.get("task") or self.spec.task

    @property
    def headline(self) -> str:
        from ..stats.metrics import headline_metric

        name = headline_metric(self.task)
        value = self.metrics.get("test", {}).get(name)
        if name == "roc_auc" and (value is None or not math.isfinite(value)):
            return "log_loss"  # AUC is undefined when a test class is absent
        return name


def _read_run(run_dir: Path) -> _Run:
    from ..data.schema import describe_table
    from ..data.split import split_rows
    from ..runs import folder as runs

    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir} is not a FinTune run folder (no config.json): pick one listed by `fintune runs`.")
    status = runs.read_status(run_dir)
    state = status.get("state", "unknown")
    if state != "succeeded":
        message = f": {status['message']}" if status.get("message") else ""
        raise RunError(f"Run {run_dir.name} has not succeeded (state {state}{message}); a model report needs a "
                       "finished run: wait for it, or train again.")
    metrics = runs.read_metrics(run_dir)
    if not metrics.get("test") or not (run_dir / "predictions.csv").is_file():
        raise RunError(f"Run {run_dir.name} has no test metrics or predictions: it predates them or its folder is "
                       "incomplete; train it again.")
    if not (run_dir / "data.parquet").is_file():
        raise RunError(f"Run {run_dir.name} has no data.parquet: the data cannot be fingerprinted.")
    config = runs.load_config(run_dir)
    frame = runs.load_data(run_dir)
    spec = describe_table(frame, config.data)
    run = _Run(
        path=run_dir, raw_config=runs.read_json(run_dir / "config.json"), config=config, status=status,
        metrics=metrics, frame=frame, spec=spec, splits=split_rows(frame, spec, config.data, config.train.seed),
        predictions=runs.read_predictions(run_dir), decision=runs.read_decision(run_dir),
        history=runs.read_history(run_dir),
    )
    recorded = metrics.get("rows", {})
    rebuilt = {name: len(rows) for name, rows in run.splits.items()}
    if recorded and recorded != rebuilt:
        run.notes.append(f"The split rebuilt from the config ({_counts(rebuilt)}) differs from the one recorded at "
                         f"training ({_counts(recorded)}): the per-split tables below may not match training.")
    return run


def _counts(rows: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in rows.items())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks (model weights can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- formatting


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def _cell(value, tag: str = "td") -> str:
    text = value if isinstance(value, _Html) else _esc(format_number(value))
    return f"<{tag}>{text}</{tag}>"


def _table(header: list, rows: list[list], *, classes: str = "") -> _Html:
    head = "".join(_cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return _Html(f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _facts(pairs: list[tuple[str, object]]) -> _Html:
    """A two-column table of name / value."""
    body = "".join(f"<tr><th>{_esc(name)}</th>{_cell(value)}</tr>" for name, value in pairs)
    return _Html(f'<table class="facts"><tbody>{body}</tbody></table>')


def _p(text: str, kind: str = "") -> _Html:
    return _Html(f'<p class="{kind}">{_esc(text)}</p>')


def _code(text: str) -> _Html:
    return _Html(f"<code>{_esc(text)}</code>")


def _bold(text: str) -> _Html:
    return _Html(f"<strong>{_esc(text)}</strong>")


class _Figures:
    """Plotly figures as a div and a script each; plotly.js itself is inlined once in the head."""

    def __init__(self):
        self.count = 0

    def __call__(self, figure, *, height: int = 360) -> _Html:
        self.count += 1
        figure.update_layout(template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                             font={"family": "system-ui, sans-serif", "size": 12})
        # plotly writes < > / inside strings as \u escapes already; this makes sure no label can close the
        # script element, whatever plotly's version does.
        payload = figure.to_json().replace("<", "\\u003c").replace(">", "\\u003e")
        div = f"figure-{self.count}"
        return _Html(f'<div class="figure" id="{div}" style="height:{height}px"></div>'
                     f'<script>(function(){{var f={payload};Plotly.newPlot("{div}",f.data,f.layout,'
                     '{displaylogo:false,responsive:true});})();</script>')


# --------------------------------------------------------------------------- sections


def _data_section(run: _Run, data_sha: str) -> list:
    import numpy as np
    import pandas as pd

    from ..data.schema import parse_datetime, target_labels

    frame, spec = run.frame, run.spec
    labelled = int(frame[run.target].notna().sum())
    parts: list = [_facts([
        ("Source file", run.raw_config.get("source") or "not recorded"),
        ("data.parquet SHA-256", _code(data_sha)),
        ("data.parquet size", f"{(run.path / 'data.parquet').stat().st_size:,} bytes"),
        ("Rows", len(frame)),
        ("Rows with a target value", labelled),
        ("Columns", len(frame.columns)),
        ("Target", run.target),
        ("Task", run.task),
    ])]

    roles = {**spec.roles, run.target: "target"}
    listed = list(frame.columns)[:MAX_COLUMNS_LISTED]
    parts.append(_Html("<h3>Columns and roles</h3>"))
    parts.append(_table(["column", "role", "type", "missing", "distinct values"], [
        [column, roles.get(column, "not used"), str(frame[column].dtype), int(frame[column].isna().sum()),
         int(frame[column].nunique(dropna=True))] for column in listed]))
    if len(frame.columns) > len(listed):
        parts.append(_p(f"Only the first {len(listed)} of {len(frame.columns)} columns are listed."))
    if spec.warnings:
        parts += [_p(w, "note") for w in spec.warnings]

    parts.append(_Html("<h3>Class balance</h3>" if run.task != "regression" else "<h3>Target summary</h3>"))
    splits = {"all labelled rows": np.flatnonzero(frame[run.target].notna().to_numpy()), **run.splits}  # positions
    if run.task == "regression":
        y = pd.to_numeric(frame[run.target], errors="coerce")
        rows = []
        for name, positions in splits.items():
            values = y.iloc[positions].dropna()
            rows.append([name, len(values), float(values.mean()), float(values.std()), float(values.min()),
                         float(values.median()), float(values.max())])
        parts.append(_table(["rows of", "rows", "mean", "std", "min", "median", "max"], rows))
    else:
        labels = target_labels(frame[run.target])
        rows = []
        for label in spec.classes:
            counts = [int((labels.iloc[positions] == label).sum()) for positions in splits.values()]
            rows.append([f"{label} (positive)" if label == spec.positive_class else label,
                         *(f"{n:,} ({_share(n, len(positions))})" for n, positions in zip(counts, splits.values(),
                                                                                          strict=True))])
        parts.append(_table(["class", *splits], rows))

    dates = spec.columns("datetime")
    if dates:
        parts.append(_Html("<h3>Date range</h3>"))
        rows = []
        for column in dates:
            stamps = parse_datetime(frame[column])
            rows.append([column, _date(stamps.min()), _date(stamps.max()), int(stamps.isna().sum())])
        parts.append(_table(["column", "first", "last", "missing or unreadable"], rows))
    return parts


def _date(stamp) -> str:
    """A day as 2024-03-31, a moment within a day with its time; "–" for none."""
    import pandas as pd

    if pd.isna(stamp):
        return "–"
    stamp = pd.Timestamp(stamp)
    return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat(sep=" ")


def _split_section(run: _Run) -> list:
    import pandas as pd

    from ..data.schema import parse_datetime, target_labels
    from ..data.split import describe_split, resolve_split

    data = run.config.data
    split = resolve_split(run.spec, data)
    time_column = split[5:] if split.startswith("time:") else None
    parts: list = [_facts([
        ("Split", describe_split(run.spec, data)),
        ("Configured as", data.split + (f" (resolved to {split})" if data.split == "auto" else "")),
        ("Time column", time_column or "none (rows are shuffled)"),
        ("Embargo", f"{data.embargo} dates between train | validation | test" if time_column else "not applicable"),
        ("Validation / test fractions", f"{data.val_fraction:g} / {data.test_fraction:g}"),
        ("Split seed", run.config.train.seed),
        ("Positive class", run.spec.positive_class or "not applicable"),
    ])]
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
        row = [name, len(positions), _share(len(positions), total)]
        if run.task == "binary":
            row.append(_share(int((target_labels(part[run.target]) == run.spec.positive_class).sum()), len(part)))
        elif run.task == "regression":
            row.append(float(pd.to_numeric(part[run.target], errors="coerce").mean()))
        if time_column:
            row += [_date(stamps.iloc[positions].min()), _date(stamps.iloc[positions].max())]
        rows.append(row)
    parts.append(_table(header, rows))
    return parts


def _lora(run: _Run) -> dict:
    """LoRA settings of the run, when it used adapters (``{}`` otherwise).

    config.json is the run's own record, so it comes first; runs written before LoRA existed have
    none of the fields, and the typed config may not know them either.
    """
    raw = run.raw_config.get("model", {})
    found = {name: raw.get(name, getattr(run.config.model, name, None)) for name in LORA_FIELDS}
    return found if found.get("lora_rank") else {}


def _lora_rows(lora: dict, freeze_depth: int) -> list[tuple[str, object]]:
    rank, alpha = lora["lora_rank"], lora.get("lora_alpha")
    where = f"in encoder layers {freeze_depth} and above" if freeze_depth else "in every encoder layer"
    return [
        ("Adaptation", f"LoRA: every pretrained weight frozen; low-rank updates learned beside the target layers "
                       f"{where}"),
        ("LoRA rank", rank),
        ("LoRA alpha", f"{alpha:g}" if alpha is not None else f"{2 * rank:g} (default: 2 × rank)"),
        ("LoRA dropout", lora.get("lora_dropout")),
        ("LoRA target layers", _listing(lora.get("lora_targets")) if lora.get("lora_targets")
         else "every linear layer of each block (default)"),
    ]


def _model_section(run: _Run) -> list:
    metrics, model, train = run.metrics, run.config.model, run.config.train
    layers = _backbone_layers(run.tuner)
    trainable, total = metrics.get("trainable_parameters"), metrics.get("total_parameters")
    lora = _lora(run)
    depth = model.freeze_depth
    if depth:
        freeze = f"embeddings + bottom {depth}{f' of {layers}' if layers else ''} encoder layers frozen" + (
            ", without adapters" if lora else "")
    else:
        freeze = "0: adapters in every layer" if lora else "nothing frozen: the whole backbone trains"
    pairs: list[tuple[str, object]] = [("Backbone", model.backbone), ("Encoder layers", layers or "not known")]
    if lora:
        pairs += _lora_rows(lora, depth)
    pairs += [
        ("Freeze depth", freeze),
        ("Trainable / total parameters", f"{format_number(trainable)} / {format_number(total)}"
         + (f" ({_share(trainable, total)} trainable)" if trainable and total else "")),
        ("Max length (tokens)", f"{format_number(metrics.get('max_length'))}"
         + (" (set)" if model.max_length else " (automatic: 95th percentile of training lengths, capped)")),
        ("Numbers in the text", model.numeric_in_text),
        ("Head", f"numeric encoder width {model.d_numeric}, hidden width {model.d_hidden}, dropout {model.dropout:g}"),
        ("Loss", train.loss + (f" (gamma {train.focal_gamma:g})" if train.loss == "focal" else "")),
        ("Class weights", train.class_weights),
        ("Optimiser", f"AdamW, backbone lr {train.lr:g}, head lr {train.head_lr:g}, weight decay "
                      f"{train.weight_decay:g}, warm-up {train.warmup_ratio:g}, gradient clip {train.max_grad_norm:g}"),
        ("Batch size", train.batch_size),
        ("Epochs run / allowed", f"{format_number(metrics.get('epochs_run'))} / {train.epochs}"
         + (f", at most {train.max_steps} steps" if train.max_steps else "") + f", patience {train.patience}"),
    ]
    parts: list = [_facts(pairs)]
    epochs = _epochs(run)
    if epochs:
        from ..stats.metrics import headline_metric

        metric = headline_metric(run.task)
        best = _best_epoch(run)
        parts.append(_Html("<h3>Training history</h3>"))
        parts.append(_table(["epoch", "steps", "train loss", f"validation {metric_label(metric)}", "kept"], [
            [e["epoch"], e.get("step"), e.get("train_loss"), e.get("val", {}).get(metric),
             "best: these weights" if e["epoch"] == best else ""] for e in epochs]))
    return parts


def _listing(value) -> str:
    if value is None:
        return "–"
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _backbone_layers(tuner) -> int | None:
    """Encoder layers of the saved model (read from it: the report must not need the network)."""
    from ..model.backbones import n_layers

    try:
        return n_layers(tuner.model_.backbone) if tuner is not None else None
    except FinTuneError:
        return None


def _epochs(run: _Run) -> list[dict]:
    return [e for e in run.history if e.get("type") == "epoch"]


def _best_epoch(run: _Run) -> int | None:
    from ..stats.metrics import selection_score

    scored = [(selection_score(run.task, e["val"]), e["epoch"]) for e in _epochs(run) if e.get("val")]
    scored = [(s, epoch) for s, epoch in scored if math.isfinite(s)]
    return max(scored, key=lambda pair: (pair[0], -pair[1]))[1] if scored else None


def _environment(run: _Run) -> list[tuple[str, object]]:
    versions = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    device, precision = _device(run.config.train)
    return [
        *versions,
        ("platform", platform.platform()),
        ("machine", f"{platform.machine()}, {os.cpu_count()} CPUs"),
        ("device here", device),
        ("precision here", precision),
    ]


def _device(train) -> tuple[str, str]:
    """What the run's device and precision settings resolve to on this machine."""
    import torch

    from ..training.devices import autocast_dtype, device_label, resolve_device

    try:
        device = resolve_device(train.device)
        dtype = autocast_dtype(device, train.precision)
    except ConfigError as exc:
        return f"{train.device} is not available here ({exc})", train.precision
    return device_label(device), {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def _reproducibility_section(run: _Run) -> list:
    status, train = run.status, run.config.train
    weights = run.path / "model" / "model.safetensors"
    pairs: list[tuple[str, object]] = [
        ("Seed (split, head initialisation, shuffling)", train.seed),
        ("Device / precision asked for", f"{train.device} / {train.precision}"),
        ("Processes", run.metrics.get("processes") or status.get("processes") or train.num_processes),
        ("torch.compile / frozen-prefix cache", f"{format_number(train.compile)} / {format_number(train.cache_frozen_prefix)}"),
        ("Created", status.get("created") or "not recorded"),
        ("Started", status.get("started") or "not recorded"),
        ("Finished", status.get("finished") or "not recorded"),
        ("Run time (start to finish)", _duration(status.get("started"), status.get("finished"))),
    ]
    if run.metrics.get("training_seconds") is not None:
        pairs.append(("Training loop time", f"{run.metrics['training_seconds']:.0f} s"))
    if run.metrics.get("peak_memory_mb") is not None:
        pairs.append(("Peak memory", f"{run.metrics['peak_memory_mb']:,.0f} MiB"))
    pairs.append(("model.safetensors SHA-256", _code(sha256_file(weights)) if weights.is_file() else "no weights file"))
    if _lora(run):
        pairs.append(("Pretrained weights", f"not in model.safetensors, which holds the adapters and the head: they "
                                            f"are loaded from {run.config.model.backbone} and checked against the "
                                            "checksum saved at training"))
    parts: list = [_facts(pairs), _Html("<h3>Software and machine</h3>"),
                   _p("The run folder does not record the environment it was trained in: these are the versions and "
                      "machine that wrote this report. Write the report where the model was trained to document "
                      "that environment.", "note"),
                   _facts(_environment(run)),
                   _Html("<details><summary>Full run configuration (config.json)</summary>"
                         f"<pre>{_esc(json.dumps(run.raw_config, indent=2))}</pre></details>")]
    return parts


def _duration(start: str | None, end: str | None) -> str:
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return "not recorded"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _models(run: _Run) -> dict[str, tuple[dict, dict]]:
    """Test metrics and intervals of the fine-tuned model and of each baseline that was fitted."""
    models = {"Fine-tuned": (run.metrics.get("test", {}), run.metrics.get("test_intervals", {}))}
    for name, entry in (run.metrics.get("baselines") or {}).items():
        if isinstance(entry, dict) and entry.get("test"):
            models[name] = (entry["test"], entry.get("test_intervals", {}))
    return models


def _metrics_section(run: _Run) -> list:
    from ..stats.intervals import N_BOOTSTRAP
    from ..stats.metrics import HIGHER_IS_BETTER
    from .compare import HEADLINE_METRICS

    models = _models(run)
    test = run.metrics.get("test", {})
    order = [m for m in HEADLINE_METRICS.get(run.task, []) if m in test] + [
        m for m in test if m not in HEADLINE_METRICS.get(run.task, [])]
    rows = []
    for metric in order:
        higher = HIGHER_IS_BETTER.get(metric, True)
        finite = [v for values, _ in models.values() if isinstance(v := values.get(metric), numbers.Real)
                  and math.isfinite(v)]
        best = (max if higher else min)(finite) if len(finite) > 1 else None
        row = [f"{metric_label(metric)} {'↑' if higher else '↓'}"]
        for values, intervals in models.values():
            text = format_interval(values.get(metric), intervals.get(metric))
            row.append(_bold(text) if best is not None and values.get(metric) == best else text)
        rows.append(row)
    rows_test = run.metrics.get("rows", {}).get("test", len(run.predictions))
    parts: list = [
        _p(f"On the {rows_test:,} test rows. Brackets: bootstrap 95% intervals ({N_BOOTSTRAP:,} resamples"
           + (", stratified by class" if run.task != "regression" else "") + "). Bold: the best value of a row. "
           "Baselines are fitted on the same training rows and judged on the same test rows."),
        _table(["metric", *models], rows, classes="metrics"),
    ]
    if run.task == "binary":
        parts.append(_p("Accuracy and F1 here label each row with its more probable class; at the decision threshold "
                        "they are below.", "note"))
    baselines = run.metrics.get("baselines")
    if isinstance(baselines, dict) and isinstance(baselines.get("error"), str):
        parts.append(_p(f"The baselines could not be fitted: {baselines['error']}", "warn"))
    if run.task == "binary":
        parts += _threshold_part(run)
    elif run.task == "multiclass":
        parts += _confusion_part(run)
    return parts


def _threshold_part(run: _Run) -> list:
    from ..stats.thresholds import outcome_at

    decision, positive = run.decision, run.spec.positive_class
    parts: list = [_Html("<h3>Decision threshold</h3>")]
    if decision is None:
        return parts + [_p("No decision threshold is saved for this run (decision.json is missing).", "warn")]
    negative = next(c for c in run.spec.classes if c != positive)
    outcome = outcome_at(_test_labels(run) == positive, _probabilities(run)[:, run.spec.positive_index], decision)
    method = {"cost": f"least expected cost on validation rows (false positive {decision.cost_fp:g}, false "
                      f"negative {decision.cost_fn:g})",
              "approval_rate": f"approve {format_number(decision.approval_rate, 2)} of validation rows",
              "manual": "set by hand"}[decision.method]
    parts.append(_facts([
        ("Threshold on P(" + positive + ")", format_number(decision.threshold)),
        ("Chosen by", method),
        ("Precision / recall (test)", f"{format_number(outcome['precision'], 3)} / {format_number(outcome['recall'], 3)}"),
        ("Approval rate (test)", _share(outcome["approval_rate"], 1) if math.isfinite(outcome["approval_rate"])
         else "–"),
        ("Expected cost per row (test)", format_number(outcome["cost_per_row"])),
    ]))
    parts.append(_p(f"Confusion matrix of the test rows at this threshold (rows flagged when P({positive}) ≥ "
                    f"{decision.threshold:.4f}):"))
    parts.append(_table(["actual \\ predicted", f"{positive} (flagged)", f"{negative} (approved)"], [
        [f"{positive}", f"{outcome['tp']:,} (TP)", f"{outcome['fn']:,} (FN)"],
        [f"{negative}", f"{outcome['fp']:,} (FP)", f"{outcome['tn']:,} (TN)"],
    ], classes="confusion"))
    return parts


def _confusion_part(run: _Run) -> list:
    from ..stats.metrics import confusion_table

    classes = list(run.spec.classes)
    predicted = [classes[i] for i in _probabilities(run).argmax(axis=1)]
    table = confusion_table(_test_labels(run), predicted, classes)
    return [_Html("<h3>Confusion matrix (test, most probable class)</h3>"),
            _table(["actual \\ predicted", *classes], [[c, *table.loc[c].tolist()] for c in classes],
                   classes="confusion")]


def _test_labels(run: _Run):
    """The test rows' class labels as the run's classes spell them (1.0 in the CSV reads as "1")."""
    from ..data.schema import target_labels

    return target_labels(run.predictions[run.target]).to_numpy(dtype=object)


def _probabilities(run: _Run):
    """Class probabilities of the test rows (N, C), in the order of the run's classes."""
    return run.predictions[[f"prob_{c}" for c in run.spec.classes]].to_numpy(dtype=float)


def _calibration_section(run: _Run, plot: _Figures) -> list:
    import numpy as np
    import plotly.graph_objects as go

    from ..stats.metrics import classification_metrics, reliability_table

    intervals = run.metrics.get("test_intervals", {})
    test = run.metrics.get("test", {})
    if run.task == "regression":
        actual = run.predictions[run.target].to_numpy(dtype=float)
        predicted = run.predictions["prediction"].to_numpy(dtype=float)
        error = predicted - actual
        figure = go.Figure(go.Scatter(x=actual, y=predicted, mode="markers", name="test rows",
                                      marker={"size": 6, "opacity": 0.6}))
        low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        figure.add_scatter(x=[low, high], y=[low, high], mode="lines", name="perfect",
                           line={"dash": "dot", "color": "grey"})
        figure.update_layout(title="Predicted against actual (test)", xaxis_title=f"actual {_esc(run.target)}",
                             yaxis_title="predicted")
        return [
            _p("Probabilities do not apply to a regression; instead, how predictions sit against the actual values."),
            _facts([("Mean error (bias, predicted − actual)", float(error.mean())),
                    ("Median absolute error", float(np.median(np.abs(error)))),
                    ("90th percentile of absolute error", float(np.quantile(np.abs(error), 0.9)))]),
            plot(figure, height=420),
        ]
    probabilities, positive = _probabilities(run), run.spec.positive_index
    index = {label: k for k, label in enumerate(run.spec.classes)}
    y = np.array([index[label] for label in _test_labels(run)])
    recomputed = classification_metrics(y, probabilities, positive)
    if run.task == "binary":
        hit, score = y == positive, probabilities[:, positive]
    else:  # multiclass calibration is that of the most probable class, as the ECE in metrics.json
        hit, score = y == probabilities.argmax(axis=1), probabilities.max(axis=1)
    table = reliability_table(hit, score)
    what = (f"P({run.spec.positive_class})" if run.task == "binary"
            else "the probability of the most probable class")
    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                       line={"dash": "dot", "color": "grey"})
    figure.add_scatter(x=table["mean_predicted"], y=table["observed_rate"], mode="lines+markers", name="model",
                       marker={"size": 6 + 14 * np.sqrt(table["rows"] / table["rows"].max())},
                       text=[f"{r} rows" for r in table["rows"]], hovertemplate="%{text}<br>predicted %{x:.3f}"
                                                                                "<br>observed %{y:.3f}")
    axis = (f"mean predicted P({_esc(run.spec.positive_class)})" if run.task == "binary"
            else "mean top-class probability")
    figure.update_layout(title="Reliability diagram (test)", xaxis_title=axis,
                         yaxis_title="observed rate" if run.task == "binary" else "share correct",
                         xaxis_range=[0, 1], yaxis_range=[0, 1.02])
    return [
        _p(f"Test rows binned by {what} in tenths; each point compares the mean predicted probability with how "
           "often it came true (marker size: rows in the bin). Points on the diagonal mean a predicted 30% happens "
           "30% of the time."),
        _facts([
            ("Expected calibration error (ECE)", format_interval(test.get("ece"), intervals.get("ece"))),
            ("Brier score", format_interval(test.get("brier"), intervals.get("brier"))),
            ("ECE / Brier recomputed from predictions.csv",
             f"{format_number(recomputed['ece'])} / {format_number(recomputed['brier'])}"),
        ]),
        plot(figure, height=420),
        _table(["bin", "rows", "mean predicted", "observed"], [
            [f"{r.bin_low:.1f}–{r.bin_high:.1f}", int(r.rows), r.mean_predicted, r.observed_rate]
            for r in table.itertuples()]),
    ]


@dataclass(frozen=True)
class _Attributions:
    rows: int
    output: str
    importance: list[tuple[str, float, float]]  # column, mean |SHAP|, mean SHAP; largest first
    seconds: float
    backbone_passes: int


def _attributions(run: _Run, n_rows: int, progress: Callable[[str], None]) -> _Attributions:
    import numpy as np

    from ..explain.attributions import explain_rows
    from ..runs import folder as runs

    rows = runs.test_rows(run.path, n_rows)
    progress(f"Explaining {len(rows)} test rows with SHAP")
    step = max(1, len(rows) // 5)

    def on_fraction(fraction: float) -> None:
        done = round(fraction * len(rows))
        if done % step == 0 or done == len(rows):
            progress(f"Explained {done}/{len(rows)} test rows")

    explanation = explain_rows(run.path, rows, on_progress=on_fraction)
    values = np.asarray(explanation.values, dtype=float)  # (N, M)
    mean_abs, mean = np.abs(values).mean(axis=0), values.mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    names = list(explanation.feature_names)
    return _Attributions(len(rows), str(explanation.output_names),
                         [(names[i], float(mean_abs[i]), float(mean[i])) for i in order],
                         explanation.stats.seconds, explanation.stats.backbone_passes)


def _attributions_section(run: _Run, found: _Attributions | str, plot: _Figures) -> list:
    import plotly.graph_objects as go

    if isinstance(found, str):
        return [_p(found, "note")]
    output = (f"P({found.output})" if run.task != "regression" else f"the predicted {found.output}")
    figure = go.Figure(go.Bar(x=[v for _, v, _ in reversed(found.importance)],
                              y=[_esc(c) for c, _, _ in reversed(found.importance)], orientation="h",
                              marker_color="#1f77b4"))
    figure.update_layout(title=f"Mean |SHAP| on {_esc(output)} ({found.rows} test rows)",
                         xaxis_title=f"mean |change in {_esc(output)}|")
    return [
        _p(f"SHAP values (permutation algorithm) of the first {found.rows} test rows, one feature per input column "
           f"(a text column counts as one). The explained output is {output}; the reference is one summary row "
           "of the training rows (medians, most frequent categories, no text). Mean |SHAP| ranks how much each "
           "column moved the output on these rows; mean SHAP shows the usual direction."),
        plot(figure, height=120 + 30 * len(found.importance)),
        _table(["column", "mean |SHAP|", "mean SHAP"], [list(row) for row in found.importance]),
        _p(f"Computed in {found.seconds:.1f} s with {found.backbone_passes:,} backbone passes."),
    ]


def _stability_section(run: _Run) -> list:
    stability = run.metrics.get("stability") or {}
    parts: list = [_Html("<h3>Population stability (PSI), test rows against training rows</h3>")]
    if "inputs" not in stability:
        parts.append(_p(stability.get("error", "No stability report was recorded for this run."), "note"))
    else:
        chance = stability.get("chance_level")
        parts.append(_p("Under 0.1 stable, 0.1–0.25 watch, 0.25 and above a real shift; a PSI that chance alone "
                        "reaches one time in twenty at these split sizes counts as stable"
                        + (f" (with no shift at all, about {chance:.2f} on average)." if chance else ".")))
        parts.append(_table(["input", "PSI", "level"], [
            [row.get("input"), row.get("psi"), _Html(f'<span class="level {_esc(row.get("level", ""))}">'
                                                      f'{_esc(row.get("level", ""))}</span>')]
            for row in stability["inputs"]]))
    parts.append(_Html("<h3>Leakage checks</h3>"))
    warnings = run.metrics.get("warnings") or []
    if not warnings:
        parts.append(_p("No leakage warnings from the four checks: a column that alone predicts the target, an "
                        "identifier used as a feature, a date recorded after the prediction time, and rows repeated "
                        "across the splits."))
    else:
        parts.append(_Html("<ul class='warnings'>" + "".join(f"<li>{_esc(w.get('message', ''))}</li>"
                                                             for w in warnings) + "</ul>"))
    return parts


# --------------------------------------------------------------------------- limitations


def _load_tuner(run: _Run):
    from ..runs.fitted import load_model

    try:
        return load_model(run.path)
    except FinTuneError as exc:
        run.notes.append(f"The saved model could not be loaded ({exc}), so text truncation was not measured.")
        return None


def _truncation(run: _Run) -> tuple[float, int, int] | None:
    """(share of rows whose serialised text exceeds max_length, tokens allowed, rows measured)."""
    tuner = run.tuner
    if tuner is None:
        return None
    frame = run.frame
    if len(frame) > TRUNCATION_SAMPLE:
        frame = frame.sample(TRUNCATION_SAMPLE, random_state=0)
    texts = tuner.preprocessor_.texts(frame)
    lengths = [len(ids) for ids in tuner.tokenizer_(texts, truncation=False, verbose=False)["input_ids"]]
    longer = sum(length > tuner.max_length_ for length in lengths)
    return longer / max(len(lengths), 1), int(tuner.max_length_), len(lengths)


def _limitations(run: _Run, truncation: tuple[float, int, int] | None) -> list[str]:
    """Plain sentences about what the run's own numbers say to be careful with."""
    found = list(run.notes)
    found += _uncertainty_limits(run)
    found += _class_limits(run)
    found += _split_limits(run)
    if truncation is not None and truncation[0] > 0:
        share, allowed, measured = truncation
        found.append(f"Truncated texts: {100 * share:.1f}% of {measured:,} rows serialise to more than {allowed} "
                     "tokens; the model never reads the part beyond that.")
    found += _training_limits(run)
    found += _baseline_limits(run)
    stability = run.metrics.get("stability") or {}
    shifted = [row for row in stability.get("inputs", []) if row.get("level") == "shift"]
    if shifted:
        found.append("Population shift between training and test rows (PSI ≥ 0.25): "
                     + ", ".join(f"{row['input']!r} ({row['psi']:.2f})" for row in shifted)
                     + ". Performance may drift as such shifts continue.")
    for part in ("stability", "baselines"):
        entry = run.metrics.get(part)
        if isinstance(entry, dict) and isinstance(entry.get("error"), str):
            found.append(f"The {part} check failed ({entry['error']}): its evidence is missing from this report.")
    if run.decision is not None and run.decision.method == "cost" and run.decision.cost_fp == run.decision.cost_fn:
        found.append("The decision threshold weighs a false positive and a false negative equally (the default): "
                     "set the business costs (fintune threshold RUN --cost-fp X --cost-fn Y) before relying on it.")
    return found


def _uncertainty_limits(run: _Run) -> list[str]:
    headline, n_test = run.headline, run.metrics.get("rows", {}).get("test", len(run.predictions))
    value, interval = run.metrics["test"].get(headline), run.metrics.get("test_intervals", {}).get(headline)
    if not interval:
        return [f"No bootstrap interval was recorded for the test {metric_label(headline)} ({n_test:,} test rows): its "
                "uncertainty is unknown."]
    if value is None or not all(math.isfinite(v) for v in interval):
        return []
    width = interval[1] - interval[0]
    wide = (width / abs(value) > RELATIVE_WIDE_INTERVAL if run.task == "regression" and value
            else width > WIDE_INTERVAL)
    if not wide and n_test >= SMALL_TEST_ROWS:
        return []
    return [("Small test set" if n_test < SMALL_TEST_ROWS else "Wide interval")
            + f": {n_test:,} test rows. The 95% interval of the test {metric_label(headline)} is "
            f"[{interval[0]:.4f}, {interval[1]:.4f}], {width:.4f} wide: differences smaller than that "
            "(between models, or against a target) are not established by this test."]


def _class_limits(run: _Run) -> list[str]:
    from ..data.schema import target_labels

    predicted = run.predictions["prediction"]
    if run.task == "regression":
        return ["Constant predictions: the model predicts the same value for every test row."] \
            if predicted.nunique() == 1 else []
    found = []
    shares = target_labels(run.frame[run.target]).dropna().value_counts(normalize=True)
    if len(shares) and shares.min() < MINORITY_SHARE:
        found.append(f"Class imbalance: {shares.idxmin()!r} is {100 * shares.min():.1f}% of the labelled rows. "
                     "Accuracy is then a poor guide (the majority class alone scores high); read ROC AUC, PR AUC and "
                     f"the results at the decision threshold. Class weights: {run.config.train.class_weights}.")
    if run.task == "binary":
        events = int((_test_labels(run) == run.spec.positive_class).sum())
        if events < FEW_EVENTS:
            found.append(f"Few events: the test rows hold {events} of class {run.spec.positive_class!r}, so each one "
                         f"moves recall by {100 / max(events, 1):.0f} points.")
    ece = run.metrics["test"].get("ece")
    if ece is not None and math.isfinite(ece) and ece > POOR_CALIBRATION_ECE:
        found.append(f"Calibration: the expected calibration error is {ece:.3f}; read the outputs as scores that "
                     "rank rows, not as probabilities, unless they are recalibrated.")
    if predicted.nunique() == 1:
        found.append(f"One label for every row: the model predicts {str(predicted.iloc[0])!r} for all "
                     f"{len(predicted):,} test rows" + (" at the decision threshold" if run.task == "binary" else "")
                     + ", so it does not separate the classes in practice.")
    return found


def _split_limits(run: _Run) -> list[str]:
    from ..data.split import resolve_split

    found = []
    warnings = run.metrics.get("warnings") or []
    if warnings:
        found.append(f"Leakage checks raised {len(warnings)} warning(s): "
                     + " ".join(w.get("message", "") for w in warnings)
                     + " Test metrics may overstate performance until this is ruled out.")
    split, dates = resolve_split(run.spec, run.config.data), run.spec.columns("datetime")
    if split == "random" and dates:
        found.append(f"Random split on a table with dates ({', '.join(map(repr, dates))}): test rows come from the "
                     "same periods as training rows, so the metrics do not show how the model does on later "
                     "periods. Use a time split to measure that.")
    elif split.startswith("time:") and not run.config.data.embargo:
        found.append(f"Time split by {split[5:]!r} without an embargo: right when the target is known at the row's "
                     "date; if it looks ahead (next-period returns, default within 12 months), rows next to a "
                     "split boundary share outcomes and flatter the test metrics: set an embargo of at least the "
                     "horizon.")
    return found


def _baseline_limits(run: _Run) -> list[str]:
    from ..stats.metrics import HIGHER_IS_BETTER

    headline, found = run.headline, []
    models = _models(run)
    model_value, interval = models["Fine-tuned"][0].get(headline), models["Fine-tuned"][1].get(headline)
    higher = HIGHER_IS_BETTER.get(headline, True)
    for name, (values, intervals) in list(models.items())[1:]:
        base, base_interval = values.get(headline), intervals.get(headline)
        if base is None or model_value is None or not math.isfinite(base) or not math.isfinite(model_value):
            continue
        if (base > model_value) if higher else (base < model_value):
            clear = bool(interval and base_interval
                         and (base_interval[0] > interval[1] if higher else base_interval[1] < interval[0]))
            found.append(f"The {name} baseline beats the fine-tuned model on test {metric_label(headline)}: "
                         f"{base:.4f} against {model_value:.4f}"
                         + (", and their intervals do not overlap." if clear else " (their intervals overlap).")
                         + " The simpler model may be the better choice.")
    return found


def _training_limits(run: _Run) -> list[str]:
    train = run.config.train
    epochs = _epochs(run)
    if not epochs:
        return []
    last, best = epochs[-1], _best_epoch(run)
    found = []
    if train.max_steps is not None and last.get("step", 0) >= train.max_steps:
        found.append(f"Training was capped at max_steps = {train.max_steps} after {len(epochs)} epoch(s): a quick "
                     "trial, probably not a fully trained model.")
    elif len(epochs) < train.epochs:
        found.append(f"Early stopping: training stopped after epoch {last['epoch']} of {train.epochs}, the validation "
                     f"score having not improved for {train.patience} epoch(s); the saved weights are those of epoch "
                     f"{best}.")
    elif best == last["epoch"] and len(epochs) > 1:
        found.append(f"The validation score was still improving at the last epoch ({last['epoch']}): more epochs "
                     "might give a better model.")
    elif best is not None and best != last["epoch"]:
        found.append(f"The saved weights are those of epoch {best}, the best on validation rows, not of the last "
                     f"epoch ({last['epoch']}).")
    if len(epochs) == 1 and train.max_steps is None:
        found.append("The model was trained for a single epoch: one validation score cannot show whether it "
                     "was still improving.")
    return found


# --------------------------------------------------------------------------- the page


CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde1e8; --accent: #1f5fa8; --warn: #a15c00; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #f6f7f9; }
header, main, footer { max-width: 1120px; margin: 0 auto; padding: 0 28px; }
header { padding-top: 28px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 16px; margin: 20px 0 8px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
nav { max-width: 1120px; margin: 0 auto 8px; padding: 0 28px; }
nav a { display: inline-block; margin: 0 14px 6px 0; color: var(--accent); text-decoration: none; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 18px 22px; margin: 16px 0; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px 5px 0; text-align: left; vertical-align: top; }
thead th { color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); }
table.facts th { color: var(--muted); font-weight: 500; width: 300px; }
table.metrics td, table.confusion td { font-variant-numeric: tabular-nums; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
pre { background: #f3f4f7; padding: 12px; border-radius: 6px; font-size: 12.5px; overflow-x: auto; }
.note { color: var(--muted); }
.warn { color: var(--warn); }
ul.warnings li { color: var(--bad); }
ul.limits li { margin-bottom: 6px; }
.glance { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; }
details { margin-top: 16px; } summary { cursor: pointer; font-weight: 600; }
.glance div { background: #f3f6fb; border-radius: 6px; padding: 10px 12px; }
.glance b { display: block; font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase; }
.level { padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff; background: #2e7d32; }
.level.watch { background: #b77f00; } .level.shift { background: var(--bad); }
.figure { width: 100%; }
footer { color: var(--muted); font-size: 13px; padding-bottom: 28px; }
@media print { body { background: #fff; } section { break-inside: avoid; border: none; padding: 0; }
               nav { display: none; } }
"""

SECTIONS = (
    ("data", "Data fingerprint"), ("split", "Split"), ("model", "Model"), ("reproducibility", "Reproducibility"),
    ("metrics", "Test metrics"), ("calibration", "Calibration"), ("attributions", "Top attributions"),
    ("stability", "Stability and leakage"), ("limitations", "Known limitations"),
)


def _glance(run: _Run, limits: list[str]) -> _Html:
    headline = run.headline
    test, intervals = run.metrics.get("test", {}), run.metrics.get("test_intervals", {})
    rows = run.metrics.get("rows", {})
    items = [
        (f"Test {metric_label(headline)}", format_interval(test.get(headline), intervals.get(headline))),
        ("Rows train / validation / test", " / ".join(f"{rows.get(k, 0):,}" for k in ("train", "val", "test"))),
        ("Split", run.metrics.get("split", "not recorded")),
        ("Backbone", Path(run.config.model.backbone).name or run.config.model.backbone),
        ("Known limitations", f"{len(limits)} found below"),
    ]
    return _Html('<div class="glance">' + "".join(f"<div><b>{_esc(k)}</b>{_esc(v)}</div>" for k, v in items)
                 + "</div>")


def _page(run: _Run, sections: dict[str, list], limits: list[str], generated: str) -> str:
    import plotly.offline

    title = f"Model risk report · run {run.path.name}"
    source = run.raw_config.get("source") or "a table"
    nav = "".join(f'<a href="#{key}">{_esc(name)}</a>' for key, name in SECTIONS)
    body = "".join(
        f'<section id="{key}"><h2>{_esc(name)}</h2>{"".join(sections[key])}</section>' for key, name in SECTIONS)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script></head><body>'
        f"<header><h1>Model risk report</h1><p class='subtitle'>Run {_esc(run.path.name)} · {_esc(run.task)} model of "
        f"{_esc(run.target)} on {_esc(source)} · written {_esc(generated)}</p>{_glance(run, limits)}</header>"
        f"<nav>{nav}</nav><main>{body}</main>"
        f"<footer>Written by fintune {_esc(_version('fintune'))} from the run folder {_esc(run.path.name)}. "
        "Self-contained: it needs no network to open.</footer></body></html>"
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def write_model_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    shap_rows: int = DEFAULT_SHAP_ROWS,
    on_progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the model-risk report of the succeeded run in ``run_dir`` as one HTML file; return its path.

    ``output`` defaults to ``RUN_DIR/report.html``. SHAP attributions are computed on the first
    ``shap_rows`` test rows (0 skips them, and the report says so). ``on_progress(message)`` hears each
    phase. Raises :class:`RunError` for a folder that is not a succeeded run.
    """
    from ..runs import folder as runs

    if not isinstance(shap_rows, numbers.Integral) or isinstance(shap_rows, bool) or shap_rows < 0:
        raise ConfigError(f"shap_rows={shap_rows!r}: use 0 (no attributions) or a number of test rows, e.g. 20.")
    progress = on_progress or (lambda message: None)
    run_dir = Path(run_dir)
    run = _read_run(run_dir)  # refusals come before any progress, so the CLI prints just the error
    progress("Fingerprinting data.parquet")
    data_sha = sha256_file(run_dir / "data.parquet")
    progress("Loading the model and measuring text truncation")
    run.tuner = _load_tuner(run)
    truncation = _truncation(run)
    if shap_rows == 0:
        found: _Attributions | str = "Skipped: this report was written with --shap-rows 0 (no SHAP attributions)."
    else:
        try:
            found = _attributions(run, shap_rows, progress)
        except FinTuneError as exc:  # the rest of the report is still worth having
            found = f"SHAP attributions could not be computed: {exc}"
    progress("Writing the report")
    limits = _limitations(run, truncation)
    plot = _Figures()
    sections = {
        "data": _data_section(run, data_sha),
        "split": _split_section(run),
        "model": _model_section(run),
        "reproducibility": _reproducibility_section(run),
        "metrics": _metrics_section(run),
        "calibration": _calibration_section(run, plot),
        "attributions": _attributions_section(run, found, plot),
        "stability": _stability_section(run),
        "limitations": [
            _Html("<ul class='limits'>" + "".join(f"<li>{_esc(text)}</li>" for text in limits) + "</ul>") if limits
            else _p("No check found a limitation in this run's own numbers; what follows still applies."),
            _Html("<h3>What this report does not cover</h3><ul>"
                  + "".join(f"<li>{_esc(text)}</li>" for text in NOT_COVERED)
                  + (f"<li>{_esc(_shap_scope(found))}</li>" if isinstance(found, _Attributions) else "") + "</ul>"),
        ],
    }
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    path = Path(output) if output is not None else run_dir / REPORT_FILE
    runs.atomic_write_bytes(path, _page(run, sections, limits, generated).encode("utf-8"))
    logger.info("model report of %s written to %s", run_dir.name, path)
    return path


def _shap_scope(found: _Attributions) -> str:
    return (f"Attributions beyond the first {found.rows} test rows: the ranking is of those rows only, against one "
            "summary reference row.")
