"""Named session-state keys and the small helpers every page shares.

Session state holds only small values (the file name and digest, the target, role overrides,
widget values, the current run id). The table itself lives in ``st.cache_data`` keyed by the
file's digest, and the job manager in ``st.cache_resource``: one per process, so every tab and
every reload sees the same jobs. The choices named in ``REMEMBERED`` also survive a reload of the
tab (dashboard/saved_session.py), and so do uploaded files (kept by digest under the runs folder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

import core

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- keys

DATA_NAME = "data.name"  # file name shown to the user
DATA_DIGEST = "data.digest"  # sha256 of the file bytes: the cache key of the table
DATA_SAMPLE = "data.sample"  # sample file name when the table is a sample, else None
LAST_UPLOAD = "data.last_upload"  # file_id of the upload already loaded
TARGET = "data.target"
TASK = "data.task"  # "auto" or a task name
ROLES = "data.roles"  # {column: role} overrides of the inferred roles
SPLIT_KIND = "data.split_kind"  # "auto" | "random" | "time"
SPLIT_COLUMN = "data.split_column"
EMBARGO = "data.embargo"  # dates left out between train, validation and test (time splits)
POSITIVE_CLASS = "data.positive_class"  # binary: "auto" (the rarer class) or a label
BACKBONE = "model.backbone"
CURRENT_RUN = "train.run_id"
RESULT_RUN = "results.run"
COMPARE_RUNS = "compare.runs"
PREDICT_RUN = "predict.run"
EXPLAIN_RUN = "explain.run"
EXPLAIN_SOURCE = "explain.source"  # "test" (the run's test rows) | "upload"
EXPLAIN_ROWS = "explain.rows"  # how many rows to explain
EXPLAIN_CLASS = "explain.class"  # multiclass: the label whose probability is explained
EXPLAIN_ROW = "explain.row"  # the row shown in the waterfall

# Hyperparameter widgets are keyed "<section>.<field>" of RunConfig (e.g. "train.epochs").
MODEL_FIELDS = ("freeze_depth", "max_length", "dropout", "table_encoding", "trees")
LORA_FIELDS = core.LORA_FIELDS  # used when LORA_ON is ticked
LORA_ON = "model.lora"
TRAIN_FIELDS = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "head_lr",
    "weight_decay",
    "warmup_ratio",
    "patience",
    "seed",
)
TRAIN_CHOICES = ("class_weights", "loss")  # select boxes on the Model page

# Widgets whose value must survive a visit to another page take persist_state=PERSIST.
PERSIST = "session"

SESSION_ID = "session.id"  # this tab's id, kept in the URL (?session=...): names its saved file
SESSION_NOTES = "session.notes"  # what a reload could not bring back; the Data page shows it

# The choices that describe the table; load_bytes resets them when another table is loaded.
TABLE_CHOICES = (
    DATA_NAME,
    DATA_DIGEST,
    DATA_SAMPLE,
    TARGET,
    TASK,
    ROLES,
    SPLIT_KIND,
    SPLIT_COLUMN,
    EMBARGO,
    POSITIVE_CLASS,
)
# What a reloaded tab gets back (dashboard/saved_session.py), with the JSON types each may hold:
# a saved value of another type is dropped, since a text in a number box would raise.
_TEXT, _NUMBER, _LIST = (str,), (int, float, type(None)), (list,)
REMEMBERED: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(TABLE_CHOICES, _TEXT),
    DATA_SAMPLE: (str, type(None)),
    ROLES: (dict,),
    EMBARGO: _NUMBER,
    BACKBONE: _TEXT,
    "model.freeze_depth": (int, str),  # "auto" or a depth
    "model.max_length": _NUMBER,
    "model.dropout": _NUMBER,
    "model.table_encoding": _TEXT,
    "model.trees": _TEXT,
    LORA_ON: (bool,),
    **{f"model.{field}": _NUMBER for field in LORA_FIELDS if field != "lora_targets"},
    "model.lora_targets": _TEXT,
    **{f"train.{field}": _NUMBER for field in TRAIN_FIELDS},
    "train.epochs": (int, str),  # "auto" or a number of epochs
    "train.patience": (int, str),
    "train.head_lr": (int, float, str),  # "auto" or a rate
    **{f"train.{field}": _TEXT for field in TRAIN_CHOICES},
    CURRENT_RUN: _TEXT,
    RESULT_RUN: _TEXT,
    COMPARE_RUNS: _LIST,
    PREDICT_RUN: _TEXT,
    EXPLAIN_RUN: _TEXT,
    EXPLAIN_SOURCE: _TEXT,
    EXPLAIN_ROWS: _NUMBER,
    EXPLAIN_CLASS: _TEXT,
    EXPLAIN_ROW: (int, str),  # a row's index label
}

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLES = {  # file -> default target, as documented in sample_data/README.md
    "credit_risk.csv": "credit_risk",
    "fin_sentiment.csv": "label",
    "card_fraud.csv": "is_fraud",
    "market_daily.csv": "next_day_direction",
}
DEFAULT_SAMPLE = "credit_risk.csv"


# ----------------------------------------------------------------------------- jobs


def runs_dir() -> Path:
    """Where runs live: ``FINTUNE_RUNS_DIR`` (set by ``fintune dashboard --runs-dir``) or ./runs."""
    return Path(os.environ.get("FINTUNE_RUNS_DIR", "runs")).resolve()


def sessions_dir() -> Path:
    """Where tabs keep their choices and uploads across reloads: ``<runs>/.sessions``."""
    return runs_dir() / ".sessions"


def write_atomically(path: Path, data: bytes) -> None:
    """Write a whole file or nothing (a temp file beside it, then a rename): a reload never reads
    half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@st.cache_resource(show_spinner=False)
def _manager(directory: str) -> core.JobManager:
    # FINTUNE_WARM_WORKER=0 skips the pre-started spare worker (saves ~1 GB on small machines).
    return core.JobManager(directory, warm_worker=os.environ.get("FINTUNE_WARM_WORKER", "1") != "0")


def manager() -> core.JobManager:
    """The process-wide job manager for the runs folder."""
    return _manager(str(runs_dir()))


@st.cache_resource(show_spinner=False, on_release=lambda jobs: jobs.shutdown())
def explain_jobs() -> core.ExplainJobs:
    """The process-wide explanation jobs: a second visit with the same run and rows is instant.

    The router creates it at start-up, which starts the explainer process (explanations are
    computed there, off this server) and lets it compile shap's kernels meanwhile;
    FINTUNE_WARM_WORKER=0 starts it when the Explain page first needs it instead.
    """
    return core.ExplainJobs(warm_up=os.environ.get("FINTUNE_WARM_WORKER", "1") != "0")


def current_run_id() -> str | None:
    """The run this tab follows: the one it started, else any active one, else the newest."""
    jobs = manager()
    active = jobs.active()
    chosen = st.session_state.get(CURRENT_RUN)
    if chosen and (chosen in active or not active):
        return chosen
    if active:
        return active[0]
    summaries = jobs.list_runs()
    return summaries[0].run_id if summaries else None


# ----------------------------------------------------------------------------- the table


@st.cache_data(max_entries=8, show_spinner="Reading the file ...")
def _table(digest: str, name: str, _raw: bytes | None = None) -> pd.DataFrame:
    # Keyed by digest and name only: later calls without the bytes are served from the cache.
    if _raw is None:
        raise LookupError(digest)
    return core.read_table(_raw, filename=name)


def kept_upload(digest: str) -> Path:
    """Where an uploaded file's bytes are kept, so a reloaded tab can read the table again."""
    return sessions_dir() / "files" / digest


def _keep(raw: bytes, digest: str) -> None:
    path = kept_upload(digest)
    if path.is_file():  # the same bytes, named by their digest: written once
        return
    try:
        write_atomically(path, raw)
    except OSError:  # the table still works in this tab; only a reload would lose it
        logger.warning("could not keep the uploaded file at %s", path, exc_info=True)


def load_bytes(raw: bytes, name: str, *, sample: str | None = None) -> pd.DataFrame:
    """Read a file (raises core.DataError) and make it the current table of this session."""
    digest = hashlib.sha256(raw).hexdigest()
    frame = _table(digest, name, raw)
    if sample is None:  # samples come back by name
        _keep(raw, digest)
    if st.session_state.get(DATA_DIGEST) != digest:
        if st.session_state.get(DATA_DIGEST) is not None:  # one the user chose, not the default
            st.session_state.pop(SESSION_NOTES, None)  # "X was not restored" has done its job
        st.session_state[DATA_DIGEST] = digest
        st.session_state[DATA_NAME] = name
        st.session_state[DATA_SAMPLE] = sample
        st.session_state[ROLES] = {}
        columns = list(frame.columns)
        default = SAMPLES.get(sample or "")
        st.session_state[TARGET] = default if default in columns else columns[-1]
        st.session_state[TASK] = "auto"
        st.session_state[SPLIT_KIND] = "auto"
        st.session_state[EMBARGO] = 0
        st.session_state[POSITIVE_CLASS] = "auto"
        st.session_state.pop(SPLIT_COLUMN, None)
    return frame


def load_sample(name: str) -> pd.DataFrame:
    return load_bytes((SAMPLE_DIR / name).read_bytes(), name, sample=name)


def table() -> tuple[str, pd.DataFrame] | None:
    """(file name, frame) of the current table; the credit sample when nothing was chosen yet."""
    digest = st.session_state.get(DATA_DIGEST)
    if digest is None:
        return DEFAULT_SAMPLE, load_sample(DEFAULT_SAMPLE)
    name = st.session_state[DATA_NAME]
    try:
        return name, _table(digest, name)
    except LookupError:  # evicted from the cache, cleared, or a reloaded tab's first read
        sample = st.session_state.get(DATA_SAMPLE)
        if sample:
            return name, load_sample(sample)
        try:
            return name, _table(digest, name, kept_upload(digest).read_bytes())
        except (OSError, core.DataError):  # its kept copy is gone or damaged
            st.session_state.pop(DATA_DIGEST, None)
            return None


# ----------------------------------------------------------------------------- the config


def split() -> str:
    kind = st.session_state.get(SPLIT_KIND, "auto")
    column = st.session_state.get(SPLIT_COLUMN)
    if kind == "time" and column:
        return f"time:{column}"
    return "random" if kind == "random" else "auto"


def data_config() -> core.DataConfig:
    """The DataConfig chosen on the Data page (raises core.ConfigError)."""
    task = st.session_state.get(TASK, "auto")
    kind = split()
    positive = st.session_state.get(POSITIVE_CLASS, "auto")
    return core.DataConfig(
        target=st.session_state[TARGET],
        roles=dict(st.session_state.get(ROLES, {})),
        task=None if task == "auto" else task,
        split=kind,
        embargo=0 if kind == "random" else int(st.session_state.get(EMBARGO, 0) or 0),
        positive_class=None if positive in (None, "auto") else positive,
    )


def defaults(target: str = "target") -> core.RunConfig:
    """Defaults for the widgets, from the engine's one home of defaults."""
    return core.default_config(
        target, backbone=st.session_state.get(BACKBONE, core.DEFAULT_BACKBONE)
    )


def init_widget(key: str, value) -> None:
    """Give a widget its default once, so it is never created with both a value and a state."""
    if key not in st.session_state:
        st.session_state[key] = value


def run_config() -> core.RunConfig:
    """The full RunConfig from the Data and Model pages' choices (raises core.ConfigError)."""
    data = data_config()
    base = core.default_config(
        data.target, backbone=st.session_state.get(BACKBONE, core.DEFAULT_BACKBONE)
    )
    base = dataclasses.replace(base, data=data)

    def chosen(section: str, names: tuple[str, ...]) -> dict:
        return {
            n: st.session_state[f"{section}.{n}"]
            for n in names
            if f"{section}.{n}" in st.session_state
        }

    model = chosen("model", MODEL_FIELDS)
    if st.session_state.get(LORA_ON):
        model.update(chosen("model", LORA_FIELDS))
        model["lora_targets"] = model.get("lora_targets") or None  # empty text: every linear layer
    return base.replace(model=model, train=chosen("train", TRAIN_FIELDS + TRAIN_CHOICES))


def validated() -> tuple[str, pd.DataFrame, core.RunConfig, core.TableSpec]:
    """The current table, config and validated spec (raises core.FinTuneError or LookupError)."""
    loaded = table()
    if loaded is None:
        raise LookupError("No data loaded.")
    name, frame = loaded
    if st.session_state.get(TARGET) not in frame.columns:
        raise LookupError("No target column chosen.")
    config = run_config()
    key = json.dumps(dataclasses.asdict(config.data), sort_keys=True, default=str)
    return name, frame, config, _described(st.session_state[DATA_DIGEST], key, frame, config.data)


@st.cache_data(max_entries=32, show_spinner=False)
def _described(
    digest: str, data_config: str, _frame: pd.DataFrame, _config: core.DataConfig
) -> core.TableSpec:
    # Role inference reads every column (~70 ms on the credit table); pages rerun often.
    return core.describe_table(_frame, _config)
