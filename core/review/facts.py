"""The facts of one finished run, read from its run folder for the model report.

:func:`read_run` reads the folder once (config, status, metrics, data, predictions, decision,
history) into a :class:`RunFacts`; the functions below gather what each part of the report shows
from it. What the folder stores is read back, never recomputed: test metrics, intervals,
reliability bins and the outcome at the saved threshold come from metrics.json, test labels and
probabilities from predictions.csv, the split's row positions from split.json (rebuilt from the
config, and checked against the recorded counts, only for runs made before that file existed).
Heavy libraries are imported inside the functions that need them, so the CLI stays quick to start.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..config import LORA_FIELDS
from ..errors import ConfigError, FinTuneError, RunError
from .limitations import Epochs, Evidence

TRUNCATION_SAMPLE = 5000  # rows whose serialised text is tokenised to measure truncation
PACKAGES = (
    "torch",
    "transformers",
    "pandas",
    "numpy",
    "scikit-learn",
    "shap",
    "lightgbm",
    "plotly",
    "accelerate",
    "safetensors",
    "fintune",
)


@dataclass
class RunFacts:
    """Everything read from the run folder once, for the report's parts to draw from."""

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
        """The target column."""
        return self.spec.target

    @property
    def task(self) -> str:
        """binary, multiclass or regression, as metrics.json records it."""
        return self.metrics.get("task") or self.spec.task

    @property
    def headline(self) -> str:
        """The metric the run is read by; log loss when the test AUC is undefined."""
        from ..stats.metrics import headline_metric

        name = headline_metric(self.task)
        value = self.metrics.get("test", {}).get(name)
        if name == "roc_auc" and (value is None or not math.isfinite(value)):
            return "log_loss"  # AUC is undefined when a test class is absent
        return name


def read_run(run_dir: Path) -> RunFacts:
    """The facts of the succeeded run in ``run_dir``; RunError for anything else."""
    from ..data.schema import describe_table
    from ..data.split import split_rows
    from ..runs import folder as runs
    from ..runs.files import read_json
    from ..runs.split_file import read_split
    from ..runs.status import read_status

    if not (run_dir / "config.json").is_file():
        raise RunError(
            f"{run_dir} is not a FinTune run folder (no config.json): pick one "
            "listed by `fintune runs`."
        )
    status = read_status(run_dir)
    state = status.get("state", "unknown")
    if state != "succeeded":
        message = f": {status['message']}" if status.get("message") else ""
        raise RunError(
            f"Run {run_dir.name} has not succeeded (state {state}{message}); a model "
            "report needs a finished run: wait for it, or train again."
        )
    metrics = runs.read_metrics(run_dir)
    if not metrics.get("test") or not (run_dir / "predictions.csv").is_file():
        raise RunError(
            f"Run {run_dir.name} has no test metrics or predictions: it predates them "
            "or its folder is incomplete; train it again."
        )
    if not (run_dir / "data.parquet").is_file():
        raise RunError(f"Run {run_dir.name} has no data.parquet: the data cannot be fingerprinted.")
    config = runs.load_config(run_dir)
    frame = runs.load_data(run_dir)
    spec = describe_table(frame, config.data)
    stored = read_split(run_dir, frame=frame)  # None for runs made before split.json: rebuilt
    if stored is None:
        splits = split_rows(frame, spec, config.data, config.train.seed)
    else:
        splits = stored
    run = RunFacts(
        path=run_dir,
        raw_config=read_json(run_dir / "config.json"),
        config=config,
        status=status,
        metrics=metrics,
        frame=frame,
        spec=spec,
        splits=splits,
        predictions=runs.read_predictions(run_dir),
        decision=runs.read_decision(run_dir),
        history=runs.read_history(run_dir),
    )
    recorded = metrics.get("rows", {})
    rebuilt = {name: len(rows) for name, rows in run.splits.items()}
    if stored is None and recorded and recorded != rebuilt:
        run.notes.append(
            f"The split rebuilt from the config ({_counts(rebuilt)}) differs from the "
            f"one recorded at training ({_counts(recorded)}): the per-split tables "
            "below may not match training."
        )
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


# --------------------------------------------------------------------------- data and split


def labelled_positions(run: RunFacts) -> dict:
    """Row positions of all labelled rows, then of each split."""
    import numpy as np

    labelled = np.flatnonzero(run.frame[run.target].notna().to_numpy())
    return {"all labelled rows": labelled, **run.splits}


def resolved_split(run: RunFacts) -> str:
    """The split as the engine resolves the config's: "random", "time:COLUMN", ..."""
    from ..data.split import resolve_split

    return resolve_split(run.spec, run.config.data)


def split_description(run: RunFacts) -> str:
    """The split in words, as recorded at training (rebuilt for runs that predate the record)."""
    from ..data.split import describe_split

    return run.metrics.get("split") or describe_split(run.spec, run.config.data)


# --------------------------------------------------------------------------- model and training


def lora_settings(run: RunFacts) -> dict:
    """LoRA settings of the run, when it used adapters (``{}`` otherwise).

    config.json is the run's own record, so it comes first; runs written before LoRA existed have
    none of the fields, and the typed config may not know them either.
    """
    raw = run.raw_config.get("model", {})
    found = {name: raw.get(name, getattr(run.config.model, name, None)) for name in LORA_FIELDS}
    return found if found.get("lora_rank") else {}


def backbone_layers(tuner) -> int | None:
    """Encoder layers of the saved model (read from it: the report must not need the network)."""
    from ..model.backbones import n_layers

    try:
        return n_layers(tuner.model_.backbone) if tuner is not None else None
    except FinTuneError:
        return None


def epochs(run: RunFacts) -> list[dict]:
    """The epoch events of the run's history."""
    return [e for e in run.history if e.get("type") == "epoch"]


def best_epoch(run: RunFacts) -> int | None:
    """The epoch whose weights were kept: the best validation score, by training's own rule."""
    from ..stats.metrics import selection_score

    scored = [
        (selection_score(run.task, e["val"]), e["epoch"]) for e in epochs(run) if e.get("val")
    ]
    scored = [(s, epoch) for s, epoch in scored if math.isfinite(s)]
    return max(scored, key=lambda pair: (pair[0], -pair[1]))[1] if scored else None


def load_tuner(run: RunFacts):
    """The saved model, or None (with a note) when it does not load."""
    from ..runs.fitted import load_model

    try:
        return load_model(run.path)
    except FinTuneError as exc:
        run.notes.append(
            f"The saved model could not be loaded ({exc}), so text truncation was not measured."
        )
        return None


def truncation(run: RunFacts) -> tuple[float, int, int] | None:
    """(share of rows whose serialised text exceeds max_length, tokens allowed, rows measured)."""
    tuner = run.tuner
    if tuner is None:
        return None
    frame = run.frame
    if len(frame) > TRUNCATION_SAMPLE:
        frame = frame.sample(TRUNCATION_SAMPLE, random_state=0)
    texts = tuner.preprocessor_.texts(frame)
    encoded = tuner.tokenizer_(texts, truncation=False, verbose=False)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    longer = sum(length > tuner.max_length_ for length in lengths)
    return longer / max(len(lengths), 1), int(tuner.max_length_), len(lengths)


def environment(run: RunFacts) -> list[tuple[str, object]]:
    """Versions of the packages and the machine writing the report."""
    versions = [("python", platform.python_version())]
    for name in PACKAGES:
        versions.append((name, version(name)))
    device, precision = device_here(run.config.train)
    return [
        *versions,
        ("platform", platform.platform()),
        ("machine", f"{platform.machine()}, {os.cpu_count()} CPUs"),
        ("device here", device),
        ("precision here", precision),
    ]


def version(package: str) -> str:
    """The installed version of ``package``, or "not installed"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def device_here(train) -> tuple[str, str]:
    """What the run's device and precision settings resolve to on this machine."""
    import torch

    from ..training.devices import autocast_dtype, device_label, resolve_device

    try:
        device = resolve_device(train.device)
        dtype = autocast_dtype(device, train.precision)
    except ConfigError as exc:
        return f"{train.device} is not available here ({exc})", train.precision
    names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return device_label(device), names.get(dtype, str(dtype))


# ------------------------------------------------------------------- metrics and calibration


def model_scores(metrics: dict) -> dict[str, tuple[dict, dict]]:
    """Test metrics and intervals of the fine-tuned model, then of each baseline that was fitted."""
    models = {"Fine-tuned": (metrics.get("test", {}), metrics.get("test_intervals", {}))}
    parts = metrics.get("parts") or {}
    if parts:
        # A blended model: each part on the same test rows, so the user sees what each brings.
        weight = parts.get("blend_weight", 0.0)
        models[f"· network alone ({weight:.0%} of the blend)"] = (parts.get("network", {}), {})
        models[f"· trees alone ({1 - weight:.0%})"] = (parts.get("trees", {}), {})
    for name, entry in (metrics.get("baselines") or {}).items():
        if isinstance(entry, dict) and entry.get("test"):
            models[name] = (entry["test"], entry.get("test_intervals", {}))
    return models


def test_labels(run: RunFacts):
    """The test rows' class labels as the run's classes spell them (1.0 in the CSV reads as "1")."""
    from ..data.schema import target_labels

    return target_labels(run.predictions[run.target]).to_numpy(dtype=object)


def probabilities(run: RunFacts):
    """Class probabilities of the test rows (N, C), in the order of the run's classes."""
    return run.predictions[[f"prob_{c}" for c in run.spec.classes]].to_numpy(dtype=float)


def threshold_outcome(run: RunFacts) -> dict:
    """Test counts and rates at the saved threshold: as recorded, unless it was changed since."""
    from ..stats.thresholds import outcome_at

    if run.metrics.get("at_threshold") and run.metrics.get("decision") == run.decision.to_dict():
        return run.metrics["at_threshold"]
    positive = run.spec.positive_class
    score = probabilities(run)[:, run.spec.positive_index]
    return outcome_at(test_labels(run) == positive, score, run.decision)


def reliability_bins(run: RunFacts) -> list[dict]:
    """Reliability bins of the test rows: of P(positive) if binary (as recorded), else top class."""
    import numpy as np

    from ..stats.metrics import reliability_table

    stored = (run.metrics.get("diagnostics") or {}).get("reliability")
    if run.task == "binary" and stored:
        return stored
    probs, y = probabilities(run), _class_index(run)
    if run.task == "binary":
        hit, score = y == run.spec.positive_index, probs[:, run.spec.positive_index]
    else:  # multiclass calibration is that of the most probable class, as the ECE in metrics.json
        hit, score = y == probs.argmax(axis=1), probs.max(axis=1)
    return reliability_table(np.asarray(hit), score).to_dict("records")


def recomputed_calibration(run: RunFacts) -> tuple[float, float]:
    """(ECE, Brier) again from predictions.csv: a check that the file agrees with metrics.json."""
    from ..stats.metrics import classification_metrics

    found = classification_metrics(_class_index(run), probabilities(run), run.spec.positive_index)
    return found["ece"], found["brier"]


def _class_index(run: RunFacts):
    import numpy as np

    index = {label: k for k, label in enumerate(run.spec.classes)}
    return np.array([index[label] for label in test_labels(run)])


# --------------------------------------------------------------------------- attributions


@dataclass(frozen=True)
class Attributions:
    """Mean SHAP values of the first test rows, per input column."""

    rows: int
    output: str
    importance: list[tuple[str, float, float]]  # column, mean |SHAP|, mean SHAP; largest first
    seconds: float
    backbone_passes: int
    background: str  # what each row was compared with, e.g. "16 random training rows (seed 0)"


def attributions(run: RunFacts, n_rows: int, progress: Callable[[str], None]) -> Attributions:
    """SHAP attributions of the run's first ``n_rows`` test rows, ranked by mean |SHAP|."""
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
    return Attributions(
        len(rows),
        str(explanation.output_names),
        [(names[i], float(mean_abs[i]), float(mean[i])) for i in order],
        explanation.stats.seconds,
        explanation.stats.backbone_passes,
        explanation.background.description,
    )


# --------------------------------------------------------------------------- limitations


def evidence(run: RunFacts, truncated: tuple[float, int, int] | None) -> Evidence:
    """The plain facts the limitation rules read, gathered from the run."""
    from ..data.schema import target_labels

    metrics, train, decision = run.metrics, run.config.train, run.decision
    headline = run.headline
    scores = model_scores(metrics)
    value, interval = scores["Fine-tuned"][0].get(headline), scores["Fine-tuned"][1].get(headline)
    shares = {}
    if run.task != "regression":
        labels = target_labels(run.frame[run.target]).dropna()
        shares = labels.value_counts(normalize=True).to_dict()
    events = None
    if run.task == "binary":
        events = int((test_labels(run) == run.spec.positive_class).sum())
    history = epochs(run)
    trained = None
    if history:
        trained = Epochs(
            run=len(history),
            last=history[-1]["epoch"],
            last_step=history[-1].get("step", 0),
            best=best_epoch(run),
        )
    stability = metrics.get("stability") or {}
    checks = {part: metrics.get(part) for part in ("stability", "baselines")}
    failed = {
        part: entry["error"]
        for part, entry in checks.items()
        if isinstance(entry, dict) and isinstance(entry.get("error"), str)
    }
    return Evidence(
        task=run.task,
        metric=headline,
        value=value,
        interval=interval,
        n_test=metrics.get("rows", {}).get("test", len(run.predictions)),
        baselines={
            name: (values.get(headline), intervals.get(headline))
            for name, (values, intervals) in list(scores.items())[1:]
        },
        class_shares=shares,
        class_weights=train.class_weights,
        positive=run.spec.positive_class,
        events=events,
        ece=metrics["test"].get("ece"),
        predictions=run.predictions["prediction"].tolist(),
        leakage=[w.get("message", "") for w in metrics.get("warnings") or []],
        split=resolved_split(run),
        date_columns=run.spec.columns("datetime"),
        embargo=run.config.data.embargo,
        truncation=truncated,
        epochs=trained,
        epochs_allowed=train.epochs,
        max_steps=train.max_steps,
        patience=train.patience,
        shifted=[
            (row["input"], row["psi"])
            for row in stability.get("inputs", [])
            if row.get("level") == "shift"
        ],
        failed_checks=failed,
        equal_costs=bool(
            decision is not None
            and decision.method == "cost"
            and decision.cost_fp == decision.cost_fn
        ),
        notes=list(run.notes),
    )
