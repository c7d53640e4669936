"""Model: the backbone, how much of it trains, the hyperparameters, and what the model will read."""

import json

import pandas as pd
import streamlit as st

import core
from dashboard import formatting, state

# (section, field, label, widget options); the default values come from core.default_config.
HYPERPARAMETERS = [
    (
        "train",
        "max_steps",
        "Max steps (optional)",
        {"min_value": 1, "step": 10, "placeholder": "all"},
    ),
    ("train", "batch_size", "Batch size", {"min_value": 1, "max_value": 1024, "step": 8}),
    (
        "train",
        "lr",
        "Backbone learning rate",
        {"min_value": 1e-7, "max_value": 0.1, "step": 1e-5, "format": "%.1e"},
    ),
    ("train", "weight_decay", "Weight decay", {"min_value": 0.0, "max_value": 1.0, "step": 0.01}),
    ("train", "warmup_ratio", "Warm-up ratio", {"min_value": 0.0, "max_value": 0.9, "step": 0.05}),
    (
        "model",
        "max_length",
        "Max tokens per row (optional)",
        {"min_value": 8, "max_value": 4096, "step": 8, "placeholder": "automatic"},
    ),
    ("model", "dropout", "Dropout", {"min_value": 0.0, "max_value": 0.9, "step": 0.05}),
    ("train", "seed", "Seed", {"min_value": 0, "step": 1}),
]


@st.cache_data(ttl=60, show_spinner=False)
def backbones() -> list[core.BackboneInfo]:
    return core.list_backbones()


@st.cache_resource(max_entries=2, show_spinner="Loading the backbone ...")
def backbone(name: str):
    return core.load_backbone(name)


@st.cache_data(max_entries=8, show_spinner=False)
def trainable_by_depth(name: str) -> list[tuple[int, int]]:
    """(trainable, total) backbone parameters for each freeze depth 0..n_layers."""
    model, _ = backbone(name)
    counts = []
    for depth in range(core.describe_backbone(name).n_layers + 1):
        core.freeze(model, depth)
        counts.append(core.count_parameters(model))
    return counts


@st.cache_data(max_entries=32, show_spinner=False)
def lora_parameters(name: str, rank: int, targets: tuple[str, ...] | None, depth: int) -> int:
    model, _ = backbone(name)
    return core.adapter_parameter_count(model, rank=rank, targets=targets, from_layer=depth)


@st.cache_data(ttl=60, max_entries=32, show_spinner=False)
def length_problem(name: str, max_length: int | None) -> str | None:
    """Why ``max_length`` cannot work on this backbone (core reads its config), or None."""
    try:
        core.check_max_length(name, max_length)
    except core.FinTuneError as exc:
        return str(exc)
    return None


@st.cache_data(max_entries=16, show_spinner="Serialising sample rows ...")
def inspect(digest: str, config_json: str, _frame: pd.DataFrame, _tokenizer) -> list[dict]:
    config = core.RunConfig.from_dict(json.loads(config_json))
    return core.inspect_inputs(_frame, config, n_rows=3, tokenizer=_tokenizer)


def resolved_freeze_depth(name: str, setting, layers: int) -> tuple[int, str]:
    """The depth the run will train with, and for "auto" a line saying why (core decides)."""
    if setting != "auto":
        return setting, ""
    lora = core.DEFAULT_LORA_RANK if st.session_state.get(state.LORA_ON) else 0
    model = core.ModelConfig(
        backbone=name,
        table_encoding=st.session_state.get("model.table_encoding", "auto"),
        lora_rank=lora,
    )
    try:
        _, _, _, spec = state.validated()
    except (LookupError, core.FinTuneError):
        return 0, "auto: the whole backbone on tables, none on text-only data (load data to see)."
    depth = core.resolve_freeze_depth(model, spec, layers)
    if depth:
        return depth, (
            f"auto → all {depth} layers frozen: this table is read by its cells, each encoded "
            "once; the epochs train the head."
        )
    # Core's rule keeps every layer for LoRA, for rows read as text, else for text-only data.
    reason = (
        "LoRA adapters"
        if lora
        else "rows read as one text"
        if model.table_encoding == "row_text"
        else "text-only data"
    )
    return 0, f"auto → nothing frozen ({reason}): the whole backbone fine-tunes."


HEAD_LR_BOX = "model_page.head_lr"  # the number box; empty stands for "auto"


def schedule_caption(layers: int) -> str:
    """What "auto" epochs, patience and head rate become for the loaded table and model."""
    try:
        _, _, config, spec = state.validated()
    except (LookupError, core.FinTuneError):
        return (
            "auto: 4 epochs, patience 2, head rate 1e-3; 30, 6 and 3e-4 when only the head "
            "trains (load data to see)."
        )
    head_only = core.trains_head_only(config.model, spec, layers)
    schedule = config.train.resolved(head_only=head_only)
    why = (
        "only the head trains, and each of its epochs takes a moment"
        if head_only
        else "backbone weights train, and each epoch is a pass of the backbone"
    )
    return (
        f"auto → {schedule.epochs} epochs at most, patience {schedule.patience}, head learning "
        f"rate {schedule.head_lr:g}: {why}."
    )


st.title("Model")
defaults = state.defaults()
infos = {info.name: info for info in backbones()}
state.init_widget(state.BACKBONE, defaults.model.backbone)
name = st.selectbox(
    "Backbone",
    list(infos),
    key=state.BACKBONE,
    persist_state=state.PERSIST,
    format_func=lambda n: (
        f"{n} · {infos[n].size_label}, {infos[n].n_layers} layers"
        + ("" if infos[n].available else " · needs download")
    ),
)
info = infos[name]
st.caption(f"{info.description}. Source: {info.source}.")
with st.expander("All backbones"):
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "backbone": b.name,
                    "size": b.size_label,
                    "layers": b.n_layers,
                    "available here": b.available,
                    "source": b.source,
                    "about": b.description,
                }
                for b in infos.values()
            ]
        ),
        hide_index=True,
    )
try:
    counts = trainable_by_depth(name)
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

freeze_key = "model.freeze_depth"
state.init_widget(freeze_key, defaults.model.freeze_depth)
state.init_widget("model.table_encoding", defaults.model.table_encoding)
state.init_widget(state.LORA_ON, defaults.model.lora_rank > 0)
chosen = st.session_state[freeze_key]
if chosen != "auto" and chosen > info.n_layers:
    st.session_state[freeze_key] = info.n_layers
left, right = st.columns([3, 2])
left.select_slider(
    "Freeze depth: embeddings + bottom layers frozen",
    ["auto", *range(info.n_layers + 1)],
    key=freeze_key,
    persist_state=state.PERSIST,
    help="auto: the whole backbone on a table (its cells are then encoded once and every epoch "
    "trains only the head, about 10x faster, level with LightGBM on the sample tables); none on "
    "text-only data, where fine-tuning the backbone pays.",
)
depth, why = resolved_freeze_depth(name, st.session_state[freeze_key], info.n_layers)
if why:
    left.caption(why)
trainable, total = counts[depth]
right.metric(
    "Trainable backbone parameters",
    f"{formatting.millions(trainable)} of {formatting.millions(total)}",
    f"{trainable / total:.0%} of the backbone",
    delta_color="off",
    delta_arrow="off",  # a share, not a change: no up arrow
)
TABLE_ENCODINGS = {
    "auto": "By cells (each category value encoded once; numbers embedded per column)",
    "cells": "By cells (always)",
    "row_text": "Whole row as one text (slow on tables; the first version's path)",
}
TREES = {
    "auto": "Blend with LightGBM when it helps on the validation rows",
    "off": "Fine-tuned network alone",
}
state.init_widget("model.trees", defaults.model.trees)
left, right = st.columns(2)
left.selectbox(
    "How a table reaches the backbone",
    list(TABLE_ENCODINGS),
    format_func=TABLE_ENCODINGS.get,
    key="model.table_encoding",
    persist_state=state.PERSIST,
    help="Free-text columns are read per row either way.",
)
right.selectbox(
    "Trees in the model",
    list(TREES),
    format_func=TREES.get,
    key="model.trees",
    persist_state=state.PERSIST,
    help="The blend weight is fitted on the validation rows; the scorecard then shows the "
    "network alone and the trees alone beside the blend.",
)
use_lora = st.toggle(
    "LoRA adapters instead of training the backbone's weights",
    key=state.LORA_ON,
    persist_state=state.PERSIST,
    help="Low-rank adapters (peft) beside the linear layers of every block above the freeze depth; "
    "the pretrained weights stay frozen and the saved run keeps only adapters and head.",
)
if use_lora:
    lora = core.ModelConfig(lora_rank=core.DEFAULT_LORA_RANK)  # the engine's own LoRA defaults
    for key, value in (
        ("model.lora_rank", lora.lora_rank),
        ("model.lora_alpha", 2.0 * lora.lora_rank),
        ("model.lora_dropout", lora.lora_dropout),
        ("model.lora_targets", ""),
    ):
        state.init_widget(key, value)
    c = st.columns(4)
    rank = c[0].number_input(
        "Rank",
        min_value=1,
        max_value=256,
        step=1,
        key="model.lora_rank",
        persist_state=state.PERSIST,
    )
    c[1].number_input(
        "Alpha",
        min_value=0.5,
        max_value=1024.0,
        step=1.0,
        key="model.lora_alpha",
        persist_state=state.PERSIST,
        help="Scale of the update: alpha / rank",
    )
    c[2].number_input(
        "Dropout",
        min_value=0.0,
        max_value=0.9,
        step=0.05,
        key="model.lora_dropout",
        persist_state=state.PERSIST,
    )
    targets_text = c[3].text_input(
        "Target layers",
        key="model.lora_targets",
        persist_state=state.PERSIST,
        placeholder="all linear layers",
        help="Comma-separated, e.g. query,value",
    )
    targets = tuple(t.strip() for t in targets_text.split(",") if t.strip()) or None
    try:
        added = lora_parameters(name, int(rank), targets, depth)
        st.metric(
            "Trainable backbone parameters (adapters)",
            formatting.millions(added),
            f"{added / total:.2%} of the backbone",
            delta_color="off",
            delta_arrow="off",
        )
    except core.FinTuneError as exc:
        st.error(str(exc), icon=":material/error:")
try:
    device = core.device_label(core.resolve_device(defaults.train.device))
except core.FinTuneError as exc:
    device = str(exc)
st.caption(
    f"Training will run on **{device}**. The fusion head (numeric encoder and classifier) always "
    "trains."
)

st.subheader("Hyperparameters")
grid = st.columns(4)
for i, (section, field, label, options) in enumerate(HYPERPARAMETERS):
    key = f"{section}.{field}"
    state.init_widget(key, getattr(getattr(defaults, section), field))
    grid[i % 4].number_input(label, key=key, persist_state=state.PERSIST, **options)
# Epochs, patience, head rate: "auto" or a value (core.TrainConfig.resolved says what auto is).
left, middle, right = st.columns([2, 2, 1])
for column, field, label in (
    (left, "epochs", "Epochs at most (early stopping ends sooner)"),
    (middle, "patience", "Early-stopping patience (epochs)"),
):
    key = f"train.{field}"
    state.init_widget(key, getattr(defaults.train, field))
    column.select_slider(label, ["auto", *range(1, 101)], key=key, persist_state=state.PERSIST)
# The run's setting is "train.head_lr" ("auto" or a rate); the box shows auto as empty.
state.init_widget("train.head_lr", defaults.train.head_lr)
chosen_rate = st.session_state["train.head_lr"]
state.init_widget(HEAD_LR_BOX, None if chosen_rate == "auto" else chosen_rate)
rate = right.number_input(
    "Head learning rate",
    min_value=1e-7,
    max_value=0.1,
    step=1e-4,
    format="%.1e",
    placeholder="auto",
    key=HEAD_LR_BOX,
    persist_state=state.PERSIST,
    help="Empty: auto (1e-3 while backbone weights train, 3e-4 when only the head trains).",
)
st.session_state["train.head_lr"] = "auto" if rate is None else rate
if "auto" in (st.session_state[f"train.{f}"] for f in ("epochs", "patience", "head_lr")):
    left.caption(schedule_caption(info.n_layers))
try:
    _, _, config, spec = state.validated()
    preset = core.matching_preset(config, spec, info.n_layers)
    st.caption(f"Preset (Train page): {preset or 'Custom'}.")
except (LookupError, core.FinTuneError):
    pass
problem = length_problem(name, st.session_state.get("model.max_length"))
if problem:
    st.error(problem, icon=":material/error:")

st.subheader("Imbalanced targets")
left, right = st.columns(2)
for key, value in (
    ("train.class_weights", defaults.train.class_weights),
    ("train.loss", defaults.train.loss),
):
    state.init_widget(key, value)
left.selectbox(
    "Class weights",
    ["auto", "balanced", "none"],
    key="train.class_weights",
    persist_state=state.PERSIST,
    help="auto: softened balanced weights when the rarest class is under 25% of rows",
)
right.selectbox(
    "Loss",
    ["cross_entropy", "focal"],
    key="train.loss",
    persist_state=state.PERSIST,
    format_func={"cross_entropy": "Cross-entropy", "focal": "Focal loss (γ = 2)"}.get,
    help="Focal loss down-weights easy rows so rare, hard ones (fraud) drive learning.",
)

st.subheader("What the model reads")
try:
    _, frame, config, spec = state.validated()
except LookupError:
    st.info("Load a table and choose its target on the Data page to see the model's input.")
    st.stop()
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
st.caption(
    f"Three training rows of **{spec.target}** ({spec.task}), exactly as the backbone and the "
    "numeric encoder receive them."
)
_, tokenizer = backbone(name)
for row in inspect(
    st.session_state[state.DATA_DIGEST], json.dumps(config.to_dict()), frame, tokenizer
):
    with st.container(border=True):
        st.markdown(
            f"**Row {row['row']}** · target `{row['target']}` · {len(row['tokens'])} tokens"
        )
        st.code(
            row["text"] or "(no free text: the backbone reads this row's cells, not a row text)",
            language=None,
            wrap_lines=True,
        )
        if row["cells"]:
            st.caption(
                "Cells, each encoded by the backbone once per distinct value: "
                + " · ".join(row["cells"])
            )
        if row["tokens"]:
            with st.expander("Tokens"):
                st.code(" ".join(row["tokens"]), language=None, wrap_lines=True)
        if row["numeric"]:
            st.dataframe(pd.DataFrame([row["numeric"]]), hide_index=True)
